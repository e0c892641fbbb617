//! The HTTP side of an OCSP fetch (RFC 6960 appendix A.1), as bytes only.

use super::error::OcspError;

/// The most bytes of HTTP response (headers and body) worth reading; larger
/// answers are rejected by [`parse_http_response`].
pub const MAX_HTTP_RESPONSE: usize = 1 << 20;

/// Where to connect and what to write for one OCSP POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// Host name or IP address to connect to (IPv6 without brackets).
    pub host: String,
    /// TCP port (80 unless the URL says otherwise).
    pub port: u16,
    /// The complete HTTP/1.0 request: headers and the DER body.
    pub request_bytes: Vec<u8>,
}

/// The parts of an `http://` URL.
#[derive(Debug, PartialEq, Eq)]
struct Url<'u> {
    host: &'u str,
    port: u16,
    /// Value for the Host header (brackets kept, port only when not 80).
    authority: String,
    /// Path and query, starting with `/`.
    path: String,
}

fn url_err(url: &str, why: &str) -> OcspError {
    OcspError::Url(format!("{url:?}: {why}"))
}

fn split_host_port<'u>(
    url: &str,
    hostport: &'u str,
) -> Result<(&'u str, Option<&'u str>), OcspError> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| url_err(url, "unclosed '[' in host"))?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(url_err(url, "junk after IPv6 address")),
            },
        };
    }
    match hostport.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => Err(url_err(url, "IPv6 address needs brackets")),
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((hostport, None)),
    }
}

fn parse_url(url: &str) -> Result<Url<'_>, OcspError> {
    if url.bytes().any(|b| b <= b' ' || b == 0x7f || !b.is_ascii()) {
        return Err(url_err(
            url,
            "contains spaces, control or non-ASCII characters",
        ));
    }
    let scheme_end = url.find("://").ok_or_else(|| url_err(url, "no scheme"))?;
    let scheme = &url[..scheme_end];
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(url_err(url, "only http:// responders are supported"));
    }
    let rest = &url[scheme_end + 3..];
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (hostport, path) = rest.split_at(auth_end);
    if hostport.contains('@') {
        return Err(url_err(url, "user information is not supported"));
    }
    let (host, port) = split_host_port(url, hostport)?;
    if host.is_empty() {
        return Err(url_err(url, "empty host"));
    }
    let port = match port {
        None | Some("") => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 => n,
            _ => return Err(url_err(url, "bad port")),
        },
    };
    let bracketed = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let authority = match port {
        80 => bracketed,
        p => format!("{bracketed}:{p}"),
    };
    let path = match path.strip_prefix('/') {
        Some(_) => path.to_owned(),
        None => format!("/{path}"),
    };
    Ok(Url {
        host,
        port,
        authority,
        path,
    })
}

/// The HTTP request that POSTs `body` (a DER OCSPRequest) to `url`.
/// Only `http://` URLs are accepted: OCSP responses are signed, and responders
/// serve plain HTTP (RFC 6960 A.1). The request is HTTP/1.0 with
/// `Connection: close`, so the response ends when the responder closes.
pub fn http_post(url: &str, body: &[u8]) -> Result<HttpTarget, OcspError> {
    let u = parse_url(url)?;
    let head = format!(
        "POST {} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/ocsp-request\r\n\
         Accept: application/ocsp-response\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        u.path,
        u.authority,
        body.len()
    );
    let mut request_bytes = head.into_bytes();
    request_bytes.extend_from_slice(body);
    Ok(HttpTarget {
        host: u.host.to_owned(),
        port: u.port,
        request_bytes,
    })
}

fn http_err(msg: impl Into<String>) -> OcspError {
    OcspError::Http(msg.into())
}

/// The body of a complete HTTP response (everything read until the responder
/// closed). Requires status 200; honours Content-Length, then chunked
/// Transfer-Encoding, else takes everything after the headers.
pub fn parse_http_response(bytes: &[u8]) -> Result<Vec<u8>, OcspError> {
    if bytes.len() > MAX_HTTP_RESPONSE {
        return Err(http_err(format!(
            "response larger than {MAX_HTTP_RESPONSE} bytes"
        )));
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(http_err("response headers incomplete")),
        Err(e) => return Err(http_err(format!("bad response head: {e}"))),
    };
    let code = resp.code.unwrap_or(0);
    if code != 200 {
        let reason = resp.reason.unwrap_or("");
        return Err(http_err(format!("responder answered HTTP {code} {reason}")));
    }
    let rest = &bytes[head_len..];
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    if let Some(te) = header("transfer-encoding") {
        if te != "identity" {
            if te != "chunked" {
                return Err(http_err(format!("unsupported transfer-encoding {te}")));
            }
            return decode_chunked(rest);
        }
    }
    match header("content-length") {
        Some(len) => {
            let len: usize = len
                .parse()
                .map_err(|_| http_err(format!("bad content-length {len:?}")))?;
            rest.get(..len)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| http_err(format!("body truncated: {} of {len} bytes", rest.len())))
        }
        None => Ok(rest.to_vec()),
    }
}

/// Decodes a chunked body; trailers after the last chunk are ignored.
fn decode_chunked(mut rest: &[u8]) -> Result<Vec<u8>, OcspError> {
    let mut body = Vec::new();
    loop {
        let (skip, size) = match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete(v)) => v,
            Ok(httparse::Status::Partial) => return Err(http_err("chunked body truncated")),
            Err(_) => return Err(http_err("bad chunk size")),
        };
        if size == 0 {
            return Ok(body);
        }
        let data = &rest[skip..];
        let size = usize::try_from(size).map_err(|_| http_err("chunk too large"))?;
        let chunk = data
            .get(..size)
            .ok_or_else(|| http_err("chunked body truncated"))?;
        body.extend_from_slice(chunk);
        rest = data
            .get(size..)
            .and_then(|r| r.strip_prefix(b"\r\n"))
            .ok_or_else(|| http_err("chunk not followed by CRLF"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(t: &HttpTarget) -> String {
        let s = String::from_utf8_lossy(&t.request_bytes);
        s.split("\r\n\r\n").next().unwrap().to_owned()
    }

    #[test]
    fn post_to_default_port_and_path() {
        let t = http_post("http://ocsp.example.com", b"\x30\x00").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("ocsp.example.com", 80));
        let h = head(&t);
        assert!(h.starts_with("POST / HTTP/1.0\r\n"), "{h}");
        assert!(h.contains("\r\nHost: ocsp.example.com\r\n"), "{h}");
        assert!(h.contains("\r\nContent-Type: application/ocsp-request\r\n"));
        assert!(h.contains("\r\nContent-Length: 2\r\n"));
        assert!(h.contains("\r\nConnection: close"));
        assert!(t.request_bytes.ends_with(b"\r\n\r\n\x30\x00"));
    }

    #[test]
    fn post_with_port_path_and_query() {
        let t = http_post("HTTP://127.0.0.1:8888/ocsp/x?a=b#frag", b"x").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 8888));
        let h = head(&t);
        assert!(h.starts_with("POST /ocsp/x?a=b HTTP/1.0\r\n"), "{h}");
        assert!(h.contains("\r\nHost: 127.0.0.1:8888\r\n"), "{h}");
        let t = http_post("http://h?q", b"x").unwrap();
        assert!(head(&t).starts_with("POST /?q HTTP/1.0\r\n"));
    }

    #[test]
    fn post_to_ipv6() {
        let t = http_post("http://[::1]:9000/", b"x").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert!(head(&t).contains("\r\nHost: [::1]:9000\r\n"));
        let t = http_post("http://[::1]/", b"x").unwrap();
        assert_eq!(t.port, 80);
        assert!(head(&t).contains("\r\nHost: [::1]\r\n"));
    }

    #[test]
    fn bad_urls_are_rejected() {
        for url in [
            "https://ocsp.example.com/",
            "ocsp.example.com",
            "ftp://x/",
            "http:///path",
            "http://h:0/",
            "http://h:99999/",
            "http://h:x/",
            "http://user@h/",
            "http://h/a b",
            "http://h/\r\nX-Evil: 1",
            "http://[::1/",
            "http://[::1]x/",
            "http://::1/",
        ] {
            match http_post(url, b"x") {
                Err(OcspError::Url(_)) => {}
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn response_with_content_length() {
        let r = b"HTTP/1.0 200 OK\r\nContent-Type: application/ocsp-response\r\n\
                  Content-Length: 3\r\n\r\nabcEXTRA";
        assert_eq!(parse_http_response(r).unwrap(), b"abc");
        let short = b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nabc";
        assert!(matches!(
            parse_http_response(short),
            Err(OcspError::Http(_))
        ));
        let bad = b"HTTP/1.0 200 OK\r\nContent-Length: x\r\n\r\nabc";
        assert!(matches!(parse_http_response(bad), Err(OcspError::Http(_))));
    }

    #[test]
    fn response_read_to_close() {
        let r = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody bytes";
        assert_eq!(parse_http_response(r).unwrap(), b"body bytes");
    }

    #[test]
    fn response_chunked() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  3\r\nabc\r\nA;ext=1\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n";
        assert_eq!(parse_http_response(r).unwrap(), b"abc0123456789");
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab";
        assert!(matches!(parse_http_response(cut), Err(OcspError::Http(_))));
        let gzip = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx";
        assert!(matches!(parse_http_response(gzip), Err(OcspError::Http(_))));
    }

    #[test]
    fn non_200_and_garbage_are_http_errors() {
        let cases: [&[u8]; 4] = [
            b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.0 500 Internal Server Error\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nContent-Le",
            b"\x30\x03\x0a\x01\x03",
        ];
        for r in cases {
            match parse_http_response(r) {
                Err(OcspError::Http(m)) => assert!(!m.is_empty()),
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(r)),
            }
        }
        let e = parse_http_response(cases[0]).unwrap_err().to_string();
        assert!(e.contains("404"), "{e}");
    }

    #[test]
    fn oversized_response_is_rejected() {
        let mut r = b"HTTP/1.0 200 OK\r\n\r\n".to_vec();
        r.resize(MAX_HTTP_RESPONSE + 1, b'x');
        assert!(matches!(parse_http_response(&r), Err(OcspError::Http(_))));
    }
}
