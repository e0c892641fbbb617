//! HTTP/2 to HTTP/1.1 mapping, sans-IO: what the HTTP/2 front end needs besides the `h2`
//! codec. The connection preface (h2c prior knowledge, and `PrefaceScan`: when the client's
//! whole preface, magic and first SETTINGS frame, has been read), which fields cross between the
//! two versions (RFC 9113 §8.2.2: HTTP/2 has no connection-specific fields), and chunked trailer
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

/// Where a client's connection preface stands (see `PrefaceScan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefaceState {
    /// The magic or the first frame is not all read yet.
    Pending,
    /// The magic and a whole SETTINGS frame (not an ACK) were read.
    Complete,
    /// The first frame after the magic is not SETTINGS (or is a SETTINGS ACK): a connection
    /// error (RFC 9113 §3.4).
    NotSettings,
}

/// Frame header length (RFC 9113 §4.1), and the SETTINGS type and its ACK flag (§6.5).
const FRAME_HEADER: usize = 9;
const SETTINGS: u8 = 0x4;
const ACK: u8 = 0x1;

/// Watches the bytes a server reads from the start of an HTTP/2 connection and tells when the
/// client's preface (RFC 9113 §3.4: the 24-octet magic, then a SETTINGS frame, which must be
/// the first frame) is complete. The magic's bytes themselves are the codec's to check; this
/// only counts them, then reads the first frame's header and counts its payload.
#[derive(Debug, Clone)]
pub struct PrefaceScan {
    /// Bytes fed so far.
    seen: usize,
    header: [u8; FRAME_HEADER],
    state: PrefaceState,
}

impl Default for PrefaceScan {
    fn default() -> Self {
        PrefaceScan::new()
    }
}

impl PrefaceScan {
    pub fn new() -> PrefaceScan {
        PrefaceScan {
            seen: 0,
            header: [0; FRAME_HEADER],
            state: PrefaceState::Pending,
        }
    }

    pub fn state(&self) -> PrefaceState {
        self.state
    }

    /// The next bytes read from the connection, in order. Once the state is not `Pending` it
    /// no longer changes, and further bytes are not looked at.
    pub fn feed(&mut self, bytes: &[u8]) -> PrefaceState {
        if self.state != PrefaceState::Pending {
            return self.state;
        }
        let start = self.seen;
        self.seen = self.seen.saturating_add(bytes.len());
        // The first frame's header: connection offsets PREFACE.len() .. PREFACE.len() + 9.
        let h0 = PREFACE.len();
        let h1 = h0 + FRAME_HEADER;
        let (from, to) = (start.max(h0), self.seen.min(h1));
        if from < to {
            self.header[from - h0..to - h0].copy_from_slice(&bytes[from - start..to - start]);
        }
        if self.seen < h1 {
            return self.state;
        }
        let h = &self.header;
        if h[3] != SETTINGS || h[4] & ACK != 0 {
            self.state = PrefaceState::NotSettings;
            return self.state;
        }
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        if self.seen >= h1 + len {
            self.state = PrefaceState::Complete;
        }
        self.state
    }
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

    /// A preface fed whole, byte by byte and in 5-byte pieces: the state after all of it, and
    /// that it was `Pending` until the last byte.
    #[test]
    fn preface_scan_needs_the_magic_and_a_whole_settings_frame() {
        let settings = |payload: &[u8], flags: u8| {
            let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
            f.extend_from_slice(&[SETTINGS, flags, 0, 0, 0, 0]);
            f.extend_from_slice(payload);
            f
        };
        let with = |frame: Vec<u8>| [PREFACE, &frame].concat();
        let table: [(Vec<u8>, PrefaceState); 5] = [
            (with(settings(&[], 0)), PrefaceState::Complete),
            (
                with(settings(&[0, 3, 0, 0, 0, 100], 0)),
                PrefaceState::Complete,
            ),
            // A SETTINGS ACK first, or a HEADERS frame first.
            (with(settings(&[], ACK)), PrefaceState::NotSettings),
            (
                with(vec![0, 0, 0, 0x1, 0x5, 0, 0, 0, 1]),
                PrefaceState::NotSettings,
            ),
            // The magic alone.
            (PREFACE.to_vec(), PrefaceState::Pending),
        ];
        for (wire, want) in &table {
            for step in [wire.len(), 1, 5] {
                let mut scan = PrefaceScan::new();
                let mut got = PrefaceState::Pending;
                for (i, piece) in wire.chunks(step).enumerate() {
                    assert_eq!(
                        got,
                        PrefaceState::Pending,
                        "{want:?} step {step}: early at {i}"
                    );
                    got = scan.feed(piece);
                }
                assert_eq!(got, *want, "step {step}");
                // Later bytes change nothing.
                assert_eq!(scan.feed(b"anything"), *want);
            }
        }
        // A SETTINGS frame whose payload is still coming.
        let mut scan = PrefaceScan::new();
        let wire = with(settings(&[0, 4, 0, 1, 0, 0], 0));
        assert_eq!(scan.feed(&wire[..wire.len() - 1]), PrefaceState::Pending);
        assert_eq!(scan.feed(&wire[wire.len() - 1..]), PrefaceState::Complete);
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
