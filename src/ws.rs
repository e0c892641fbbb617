//! WebSocket (RFC 6455), sans-IO: classifying an upgrade request, checking a backend's `101`
//! before any tunnel opens, and the frame header codec used by the built-in echo endpoint.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha1::{Digest, Sha1};

use crate::http::has_token;
use crate::http::head::{Request, Response};

const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What a request asks for, as far as WebSockets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade<'b> {
    /// No `Upgrade: websocket`: ordinary HTTP (any other `Upgrade`, e.g. `h2c`, is ignored).
    None,
    /// A valid WebSocket opening handshake; `key` is the client's `Sec-WebSocket-Key`.
    WebSocket { key: &'b [u8] },
    /// An attempted WebSocket upgrade that is invalid: answer with this status (426 carries
    /// `Sec-WebSocket-Version: 13`) and close.
    Invalid { status: u16, reason: &'static str },
}

/// Classifies a request (RFC 6455 §4.2.1).
pub fn classify<'b>(req: &Request<'_, 'b>) -> Upgrade<'b> {
    let wants_ws = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("upgrade"))
        .any(|h| has_token(h.value, b"websocket"));
    if !wants_ws {
        return Upgrade::None;
    }
    let invalid = |status, reason| Upgrade::Invalid { status, reason };
    if req.method != "GET" {
        return invalid(400, "websocket upgrade needs GET");
    }
    if req.minor_version != 1 {
        return invalid(400, "websocket upgrade needs HTTP/1.1");
    }
    let connection_upgrade = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|h| has_token(h.value, b"upgrade"));
    if !connection_upgrade {
        return invalid(400, "websocket upgrade without Connection: upgrade");
    }
    if req.header("sec-websocket-version").map(<[u8]>::trim_ascii) != Some(b"13") {
        return invalid(426, "unsupported Sec-WebSocket-Version");
    }
    match req.header("sec-websocket-key").map(<[u8]>::trim_ascii) {
        Some(key) if valid_key(key) => Upgrade::WebSocket { key },
        _ => invalid(400, "bad Sec-WebSocket-Key"),
    }
}

/// A key is the base64 of 16 bytes: 24 characters ending in "==".
fn valid_key(key: &[u8]) -> bool {
    let mut decoded = [0u8; 18];
    key.len() == 24 && matches!(BASE64.decode_slice(key, &mut decoded), Ok(16))
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key ++ GUID)), always 28 bytes.
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let digest = Sha1::new()
        .chain_update(key)
        .chain_update(ACCEPT_GUID)
        .finalize();
    let mut out = [0u8; 28];
    // 20 bytes encode to exactly 28 characters.
    let n = BASE64.encode_slice(digest, &mut out).unwrap_or(0);
    debug_assert_eq!(n, 28);
    out
}

/// Checks that a backend's answer completes the handshake for `key`. Only then may a tunnel
/// open (CVE-2019-17567: a proxy that tunnels on any answer lets a client smuggle requests).
pub fn check_backend_101(resp: &Response<'_, '_>, key: &[u8]) -> Result<(), &'static str> {
    if resp.code != 101 {
        return Err("backend did not answer 101");
    }
    let upgrade = resp.header("upgrade").unwrap_or_default();
    if !has_token(upgrade, b"websocket") {
        return Err("backend 101 without Upgrade: websocket");
    }
    let connection_upgrade = resp
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|h| has_token(h.value, b"upgrade"));
    if !connection_upgrade {
        return Err("backend 101 without Connection: upgrade");
    }
    match resp.header("sec-websocket-accept") {
        Some(a) if a.trim_ascii() == accept_key(key) => Ok(()),
        _ => Err("backend 101 with a wrong Sec-WebSocket-Accept"),
    }
}

/// Frame opcodes (RFC 6455 §5.2).
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
    /// Bytes of the header itself (2 to 14).
    pub header_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// RSV bits set (no extension negotiated), unknown opcode, bad control frame, 64-bit length
    /// with the top bit set: close with 1002.
    Protocol,
}

impl FrameHeader {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }

    /// Parses a frame header; `Ok(None)` until enough bytes are there.
    pub fn parse(buf: &[u8]) -> Result<Option<FrameHeader>, FrameError> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        let opcode = b0 & 0x0F;
        if b0 & 0x70 != 0 || !matches!(opcode, 0x0..=0x2 | 0x8..=0xA) {
            return Err(FrameError::Protocol);
        }
        let fin = b0 & 0x80 != 0;
        // Control frames: unfragmented, payload at most 125 (RFC 6455 §5.5).
        if opcode & 0x8 != 0 && (!fin || b1 & 0x7F > 125) {
            return Err(FrameError::Protocol);
        }
        let (payload_len, mut header_len) = match b1 & 0x7F {
            126 if buf.len() < 4 => return Ok(None),
            126 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            127 if buf.len() < 10 => return Ok(None),
            127 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(n), 10)
            }
            n => (u64::from(n), 2),
        };
        if payload_len >> 63 != 0 {
            return Err(FrameError::Protocol);
        }
        let mask = if b1 & 0x80 != 0 {
            let Some(m) = buf.get(header_len..header_len + 4) else {
                return Ok(None);
            };
            header_len += 4;
            Some([m[0], m[1], m[2], m[3]])
        } else {
            None
        };
        Ok(Some(FrameHeader {
            fin,
            opcode,
            mask,
            payload_len,
            header_len,
        }))
    }

    /// Writes an unmasked (server) frame header; returns its length.
    pub fn write_unmasked(out: &mut [u8; 14], fin: bool, opcode: u8, payload_len: u64) -> usize {
        out[0] = (u8::from(fin) << 7) | (opcode & 0x0F);
        if payload_len < 126 {
            out[1] = payload_len as u8;
            2
        } else if let Ok(n) = u16::try_from(payload_len) {
            out[1] = 126;
            out[2..4].copy_from_slice(&n.to_be_bytes());
            4
        } else {
            out[1] = 127;
            out[2..10].copy_from_slice(&payload_len.to_be_bytes());
            10
        }
    }
}

/// Unmasks `data` in place; `offset` is the position of `data[0]` within the payload.
pub fn unmask(data: &mut [u8], mask: [u8; 4], offset: u64) {
    let shift = (offset % 4) as usize;
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[(i + shift) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{empty_headers, parse_request, parse_response};

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(&accept_key(KEY.as_bytes()), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    fn classify_text(head: &str) -> Upgrade<'static> {
        let buf: &'static [u8] = Box::leak(head.as_bytes().to_vec().into_boxed_slice());
        let headers = Box::leak(Box::new(empty_headers()));
        let req = parse_request(buf, headers, 1 << 15).unwrap().unwrap();
        classify(&req)
    }

    #[test]
    fn classify_table() {
        let ok = format!(
            "GET /c HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
        );
        assert_eq!(
            classify_text(&ok),
            Upgrade::WebSocket {
                key: KEY.as_bytes()
            }
        );
        let status = |h: String| match classify_text(&h) {
            Upgrade::Invalid { status, .. } => status,
            other => panic!("{other:?} for {h}"),
        };
        assert_eq!(status(ok.replace("Version: 13", "Version: 8")), 426);
        assert_eq!(status(ok.replace("Sec-WebSocket-Version: 13\r\n", "")), 426);
        assert_eq!(status(ok.replace(KEY, "short")), 400);
        assert_eq!(status(ok.replace(KEY, "dGhlIHNhbXBsZSBub25jZQ")), 400);
        assert_eq!(status(ok.replace(KEY, "dGhlIHNhbXBsZSBub25jZXh4eA==")), 400);
        assert_eq!(status(ok.replace("Sec-WebSocket-Key", "X-Key")), 400);
        assert_eq!(status(ok.replace("GET", "POST")), 400);
        assert_eq!(status(ok.replace("keep-alive, Upgrade", "keep-alive")), 400);
        assert_eq!(
            classify_text(&ok.replace("WebSocket", "h2c")),
            Upgrade::None
        );
        assert_eq!(
            classify_text("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Upgrade::None
        );
    }

    fn check(resp: &str) -> Result<(), &'static str> {
        let mut h = empty_headers();
        let r = parse_response(resp.as_bytes(), &mut h, 1 << 15)
            .unwrap()
            .unwrap();
        check_backend_101(&r, KEY.as_bytes())
    }

    #[test]
    fn backend_101_table() {
        let good =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(check(good), Ok(()));
        assert!(check(&good.replace("s3pPLMBi", "AAAAAAAA")).is_err());
        assert!(check(&good.replace("Upgrade: websocket\r\n", "")).is_err());
        assert!(check(&good.replace("Upgrade: websocket", "Upgrade: h2c")).is_err());
        assert!(check(&good.replace("Connection: Upgrade\r\n", "")).is_err());
        assert!(check(&good.replace("101 Switching Protocols", "200 OK")).is_err());
        assert!(check(&good.replace("Sec-WebSocket-Accept", "X-Accept")).is_err());
    }

    #[test]
    fn frame_headers_round_trip() {
        for len in [0u64, 1, 125, 126, 65535, 65536, 1 << 20] {
            let mut out = [0u8; 14];
            let n = FrameHeader::write_unmasked(&mut out, true, opcode::BINARY, len);
            let h = FrameHeader::parse(&out[..n]).unwrap().unwrap();
            assert_eq!(
                (h.fin, h.opcode, h.payload_len, h.header_len, h.mask),
                (true, 2, len, n, None)
            );
            for cut in 0..n {
                assert_eq!(
                    FrameHeader::parse(&out[..cut]),
                    Ok(None),
                    "len {len} cut {cut}"
                );
            }
        }
        let masked = [0x81, 0x85, 1, 2, 3, 4];
        let h = FrameHeader::parse(&masked).unwrap().unwrap();
        assert_eq!(
            (h.mask, h.header_len, h.payload_len),
            (Some([1, 2, 3, 4]), 6, 5)
        );
        assert_eq!(FrameHeader::parse(&masked[..5]), Ok(None));
        for bad in [[0xC1u8, 0x00], [0x83, 0x00], [0x09, 0x00], [0x89, 0x7E]] {
            assert_eq!(
                FrameHeader::parse(&bad),
                Err(FrameError::Protocol),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn unmask_with_offsets() {
        let mask = [1, 2, 3, 4];
        let mut whole = *b"hello world";
        unmask(&mut whole, mask, 0);
        let mut parts = *b"hello world";
        let (a, b) = parts.split_at_mut(3);
        unmask(a, mask, 0);
        unmask(b, mask, 3);
        assert_eq!(whole, parts);
        unmask(&mut whole, mask, 0);
        assert_eq!(&whole, b"hello world");
    }
}
