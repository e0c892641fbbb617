//! WebSocket opening handshake (RFC 6455 §4): client request, server response, verification.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha1::{Digest, Sha1};

pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(GUID.as_bytes());
    B64.encode(h.finalize())
}

/// A `Sec-WebSocket-Key`: base64 of 16 bytes derived from `seed` (splitmix64, deterministic).
pub fn make_key(seed: u64) -> String {
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&next().to_le_bytes());
    raw[8..].copy_from_slice(&next().to_le_bytes());
    B64.encode(raw)
}

/// The client's upgrade request.
pub fn client_request(host: &str, path: &str, key: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// The server's 101 answer.
pub fn server_response(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

/// Offset just past the `\r\n\r\n` ending a head, if `buf` holds one.
pub fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The head did not parse as an HTTP response.
    Malformed,
    /// A status other than 101.
    Status(u16),
    /// 101 but without `Upgrade: websocket` / `Connection: upgrade`.
    MissingUpgrade,
    /// 101 with a missing or wrong `Sec-WebSocket-Accept`.
    BadAccept,
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Malformed => write!(f, "malformed response head"),
            HandshakeError::Status(s) => write!(f, "status {s} instead of 101"),
            HandshakeError::MissingUpgrade => write!(f, "101 without Upgrade/Connection"),
            HandshakeError::BadAccept => write!(f, "wrong Sec-WebSocket-Accept"),
        }
    }
}

/// Checks a complete response head (through `\r\n\r\n`): status line 101 first, then the
/// upgrade fields and the accept key.
pub fn check_response(head: &[u8], expected_accept: &str) -> Result<(), HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(HandshakeError::Malformed),
    }
    let code = resp.code.ok_or(HandshakeError::Malformed)?;
    if code != 101 {
        return Err(HandshakeError::Status(code));
    }
    let mut upgrade = false;
    let mut connection = false;
    let mut accept = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade |= h.value.eq_ignore_ascii_case(b"websocket");
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection |= h
                .value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
        } else if h.name.eq_ignore_ascii_case("sec-websocket-accept") {
            accept = h.value.trim_ascii() == expected_accept.as_bytes();
        }
    }
    if !upgrade || !connection {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !accept {
        return Err(HandshakeError::BadAccept);
    }
    Ok(())
}

/// What a server needs from an upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    pub key: String,
}

/// Returns the key when the request is a WebSocket upgrade (GET, `Upgrade: websocket`,
/// `Connection` containing `upgrade`, version 13, a key).
pub fn parse_upgrade(req: &httparse::Request<'_, '_>) -> Option<UpgradeRequest> {
    if req.method != Some("GET") {
        return None;
    }
    let mut upgrade = false;
    let mut connection = false;
    let mut version = false;
    let mut key = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade |= h.value.trim_ascii().eq_ignore_ascii_case(b"websocket");
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection |= h
                .value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
        } else if h.name.eq_ignore_ascii_case("sec-websocket-version") {
            version = h.value.trim_ascii() == b"13";
        } else if h.name.eq_ignore_ascii_case("sec-websocket-key") {
            key = std::str::from_utf8(h.value.trim_ascii())
                .ok()
                .map(str::to_owned);
        }
    }
    if upgrade && connection && version {
        key.map(|key| UpgradeRequest { key })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_accept_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn keys_are_16_bytes_and_distinct() {
        let a = make_key(1);
        let b = make_key(2);
        assert_ne!(a, b);
        assert_eq!(make_key(1), a);
        assert_eq!(B64.decode(&a).unwrap().len(), 16);
        assert_eq!(a.len(), 24);
    }

    #[test]
    fn request_roundtrip_through_server_parser() {
        let key = make_key(42);
        let req = client_request("127.0.0.1:9001", "/ws", &key);
        assert_eq!(find_head_end(&req), Some(req.len()));
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Request::new(&mut headers);
        assert_eq!(
            r.parse(&req).unwrap(),
            httparse::Status::Complete(req.len())
        );
        assert_eq!(r.path, Some("/ws"));
        assert_eq!(parse_upgrade(&r), Some(UpgradeRequest { key: key.clone() }));
        // The server's answer passes the client's check, and only for the right key.
        let resp = server_response(&accept_key(key.as_bytes()));
        assert_eq!(check_response(&resp, &accept_key(key.as_bytes())), Ok(()));
        assert_eq!(
            check_response(&resp, &accept_key(b"other")),
            Err(HandshakeError::BadAccept)
        );
    }

    #[test]
    fn plain_get_is_not_an_upgrade() {
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Request::new(&mut headers);
        r.parse(req).unwrap();
        assert_eq!(parse_upgrade(&r), None);
        let req = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: abc\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Request::new(&mut headers);
        r.parse(req).unwrap();
        assert_eq!(parse_upgrade(&r), None, "version 13 missing");
    }

    #[test]
    fn response_checks() {
        let acc = accept_key(b"k");
        assert_eq!(
            check_response(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n",
                &acc
            ),
            Err(HandshakeError::Status(502))
        );
        assert_eq!(
            check_response(
                b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\n\r\n",
                &acc
            ),
            Err(HandshakeError::MissingUpgrade)
        );
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\nsec-websocket-accept: {acc}\r\n\r\n"
        );
        assert_eq!(check_response(ok.as_bytes(), &acc), Ok(()));
        assert_eq!(
            check_response(b"garbage\r\n\r\n", &acc),
            Err(HandshakeError::Malformed)
        );
        assert_eq!(find_head_end(b"HTTP/1.1 101 X\r\n\r\n\x82\x00"), Some(18));
        assert_eq!(find_head_end(b"HTTP/1.1 101 X\r\n\r"), None);
    }
}
