//! HTTP/2 to HTTP/1.1 mapping, sans-IO: what the HTTP/2 front end needs besides the `h2`
//! codec. The connection preface (h2c prior knowledge), which fields cross between the two
//! versions (RFC 9113 §8.2.2: HTTP/2 has no connection-specific fields), and chunked trailer
//! lines turned into trailer fields.

/// The client connection preface (RFC 9113 §3.4): how an h2c prior-knowledge client starts.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a connection's first bytes are the HTTP/2 preface: `Some(true)` once all 24 are
/// there, `Some(false)` as soon as they differ, `None` while a prefix of it is all that came.
pub fn judge_preface(bytes: &[u8]) -> Option<bool> {
    let n = bytes.len().min(PREFACE.len());
    if bytes[..n] != PREFACE[..n] {
        return Some(false);
    }
    (n == PREFACE.len()).then_some(true)
}

/// Connection-specific fields (RFC 9113 §8.2.2, RFC 9110 §7.6.1) and `Trailer`, which
/// describes a chunked coding the other side does not use.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
];

/// A client's HTTP/2 request field goes to the HTTP/1.1 backend (`name` lower-case, as HTTP/2
/// carries it). `host` is written by Ringway from `:authority`.
pub fn request_field_forwarded(name: &str) -> bool {
    !HOP_BY_HOP.contains(&name) && name != "host"
}

/// A backend's HTTP/1.1 response field goes into the HTTP/2 response: not connection-specific,
/// and not named by the response's `Connection` (`connection_names`).
pub fn response_field_forwarded(name: &str, connection_names: &[&[u8]]) -> bool {
    !HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        && !connection_names
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name.as_bytes()))
}

/// The fields of a chunked body's trailer section (raw lines, CRLF-separated, as
/// `ChunkedDecoder::feed_parts` collects them): `(name, value)` with the value trimmed; lines
/// without a name and connection-specific fields are dropped.
pub fn trailer_fields(raw: &[u8]) -> Vec<(&[u8], &[u8])> {
    raw.split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':')?;
            let name = line[..colon].trim_ascii();
            let value = line[colon + 1..].trim_ascii();
            let keep = !name.is_empty()
                && std::str::from_utf8(name).is_ok_and(|n| response_field_forwarded(n, &[]));
            keep.then_some((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preface_is_judged_from_its_first_differing_byte() {
        let table: [(&[u8], Option<bool>); 6] = [
            (b"GET / HTTP/1.1\r\n", Some(false)),
            (b"PRI * HTTP/2.0\r\n", None),
            (b"P", None),
            (PREFACE, Some(true)),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00", Some(true)),
            (b"PRI * HTTP/1.1\r\n\r\n", Some(false)),
        ];
        for (bytes, want) in table {
            assert_eq!(
                judge_preface(bytes),
                want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn fields_that_cross_between_versions() {
        // (name, request field forwarded, response field forwarded)
        let table = [
            ("content-type", true, true),
            ("cookie", true, true),
            ("connection", false, false),
            ("keep-alive", false, false),
            ("transfer-encoding", false, false),
            ("te", false, false),
            ("upgrade", false, false),
            ("trailer", false, false),
            ("proxy-connection", false, false),
            ("host", false, true),
        ];
        for (name, request, response) in table {
            assert_eq!(request_field_forwarded(name), request, "request {name}");
            assert_eq!(
                response_field_forwarded(name, &[]),
                response,
                "response {name}"
            );
        }
        assert!(!response_field_forwarded("X-Hop", &[b"x-hop"]));
        assert!(!response_field_forwarded("Transfer-Encoding", &[]));
    }

    #[test]
    fn trailer_lines_become_fields() {
        let raw = b"X-Checksum: abc\r\nServer-Timing:db;dur=5 \r\nConnection: x\r\nbad line\r\n: empty\r\n";
        assert_eq!(
            trailer_fields(raw),
            vec![
                (b"X-Checksum".as_slice(), b"abc".as_slice()),
                (b"Server-Timing".as_slice(), b"db;dur=5".as_slice()),
            ]
        );
        assert!(trailer_fields(b"").is_empty());
    }
}
