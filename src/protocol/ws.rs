//! WebSocket (RFC 6455), sans-IO: classifying an upgrade request, checking a backend's `101`
//! before any tunnel opens, and the frame header codec used by the built-in echo endpoint.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha1::{Digest, Sha1};

use crate::protocol::http::has_token;
use crate::protocol::http::head::{Request, Response};

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

/// Checks an `origins` entry: `scheme://host[:port]`, where the host may start with `*.`
/// (one or more labels), or `null` (what browsers send from opaque origins).
pub fn check_origin_pattern(pattern: &str) -> Result<(), String> {
    if pattern == "null" {
        return Ok(());
    }
    let Some((scheme, rest)) = pattern.split_once("://") else {
        return Err(format!("{pattern:?} is not scheme://host[:port]"));
    };
    let host =
        rest.rsplit_once(':').map_or(
            rest,
            |(h, port)| {
                if port.parse::<u16>().is_ok() {
                    h
                } else {
                    rest
                }
            },
        );
    let host = host.strip_prefix("*.").unwrap_or(host);
    let ok_scheme = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let ok_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
        && !host.contains('*');
    if ok_scheme && ok_host && !rest.contains('/') {
        Ok(())
    } else {
        Err(format!(
            "{pattern:?} is not scheme://host[:port] (a host may start with *.)"
        ))
    }
}

/// Whether an upgrade's `Origin` passes a route's `origins` (RFC 6454 serialization, compared
/// case-insensitively). A missing `Origin` passes only with `allow_missing`.
pub fn origin_allowed(origin: Option<&[u8]>, patterns: &[String], allow_missing: bool) -> bool {
    let Some(origin) = origin.map(<[u8]>::trim_ascii) else {
        return allow_missing;
    };
    let Ok(origin) = std::str::from_utf8(origin) else {
        return false;
    };
    let origin = origin.to_ascii_lowercase();
    patterns.iter().any(|p| origin_matches(&origin, p))
}

fn origin_matches(origin: &str, pattern: &str) -> bool {
    let Some((p_scheme, p_rest)) = pattern.split_once("://") else {
        return origin == pattern;
    };
    let Some((o_scheme, o_rest)) = origin.split_once("://") else {
        return false;
    };
    if p_scheme != o_scheme {
        return false;
    }
    match p_rest.strip_prefix("*.") {
        // `*.example.com[:port]` matches `a.example.com[:port]`, `a.b.example.com[:port]`, not
        // `example.com` itself; the port (or its absence) must be the same.
        Some(suffix) => o_rest
            .strip_suffix(suffix)
            .and_then(|head| head.strip_suffix('.'))
            .is_some_and(|labels| !labels.is_empty() && !labels.contains([':', '/'])),
        None => o_rest == p_rest,
    }
}

/// Follows the frame structure of a byte stream passing through a tunnel, without decoding
/// payloads: where frames end (so a Close can be injected between two frames, never inside
/// one), how many messages ended, whether a Close frame went by. Extension bits (RSV, as
/// permessage-deflate sets) and opcodes are not judged: the endpoints negotiated them.
#[derive(Debug, Clone, Default)]
pub struct FrameTracker {
    head: [u8; 14],
    head_len: u8,
    /// Payload bytes of the current frame still to come.
    remaining: u64,
    /// A Close frame's header went by.
    pub close_seen: bool,
}

impl FrameTracker {
    /// Follows `data`, the next bytes of the stream; returns how many data messages ended
    /// (final frames started) in it. (Held per tunnel direction: no counter is kept here.)
    pub fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut messages = 0;
        while !data.is_empty() {
            // Fast path: at a boundary with the whole header in `data` (a tunnel's usual read:
            // one or more whole small frames), the header is read in place, not copied.
            if self.head_len == 0 && self.remaining == 0 {
                if let Some((len, fin_data, close, hl)) = header_in_place(data) {
                    messages += u64::from(fin_data);
                    self.close_seen |= close;
                    data = &data[hl..];
                    let n = data.len().min(usize::try_from(len).unwrap_or(usize::MAX));
                    self.remaining = len - n as u64;
                    data = &data[n..];
                    continue;
                }
            }
            if self.remaining > 0 {
                let n = data
                    .len()
                    .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                self.remaining -= n as u64;
                data = &data[n..];
                continue;
            }
            let have = usize::from(self.head_len);
            let need = header_len(&self.head[..have]).unwrap_or(2);
            let take = (need - have).min(data.len());
            self.head[have..have + take].copy_from_slice(&data[..take]);
            self.head_len += take as u8;
            data = &data[take..];
            let have = usize::from(self.head_len);
            match header_len(&self.head[..have]) {
                Some(n) if n == have => messages += self.frame_started(),
                _ => {}
            }
        }
        messages
    }

    /// A complete header is in `head`: 1 if it starts the final frame of a data message.
    fn frame_started(&mut self) -> u64 {
        let (b0, b1) = (self.head[0], self.head[1]);
        let opcode = b0 & 0x0F;
        let len = match b1 & 0x7F {
            126 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
            127 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&self.head[2..10]);
                u64::from_be_bytes(n)
            }
            n => u64::from(n),
        };
        if opcode == opcode::CLOSE {
            self.close_seen = true;
        }
        self.remaining = len;
        self.head_len = 0;
        u64::from(b0 & 0x80 != 0 && opcode < 0x8)
    }

    /// Between two frames: a frame may be inserted here.
    pub fn at_boundary(&self) -> bool {
        self.head_len == 0 && self.remaining == 0
    }

    /// Payload bytes of the current frame still to come (0 at a boundary or inside a header):
    /// bytes that can pass unseen (spliced), followed with `skip_payload`.
    pub fn payload_left(&self) -> u64 {
        if self.head_len == 0 {
            self.remaining
        } else {
            0
        }
    }

    /// `n` payload bytes (at most `payload_left()`) went by without being fed.
    pub fn skip_payload(&mut self, n: u64) {
        self.remaining -= n.min(self.remaining);
    }

    /// How many more bytes reach the next frame boundary at most (0 at a boundary). A reader
    /// that reads no more than this never passes a boundary.
    pub fn to_boundary(&self) -> usize {
        if self.remaining > 0 {
            return usize::try_from(self.remaining).unwrap_or(usize::MAX);
        }
        if self.head_len == 0 {
            return 0;
        }
        let have = usize::from(self.head_len);
        header_len(&self.head[..have]).unwrap_or(2) - have
    }
}

/// A whole frame header at the start of `data`: (payload length, whether it starts the final
/// frame of a data message, whether it is a Close, header length). `None` if `data` holds less
/// than the whole header.
#[inline]
fn header_in_place(data: &[u8]) -> Option<(u64, bool, bool, usize)> {
    let (b0, b1) = (*data.first()?, *data.get(1)?);
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    let (len, ext) = match b1 & 0x7F {
        126 => (
            u64::from(u16::from_be_bytes([*data.get(2)?, *data.get(3)?])),
            2,
        ),
        127 => {
            let n: [u8; 8] = data.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(n), 8)
        }
        n => (u64::from(n), 0),
    };
    let hl = 2 + ext + mask;
    if data.len() < hl {
        return None;
    }
    let opcode = b0 & 0x0F;
    Some((
        len,
        b0 & 0x80 != 0 && opcode < 0x8,
        opcode == opcode::CLOSE,
        hl,
    ))
}

/// The full header length once its first two bytes are known.
fn header_len(head: &[u8]) -> Option<usize> {
    let b1 = *head.get(1)?;
    let ext = match b1 & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    Some(2 + ext + mask)
}

/// A Close frame with `code` and no reason: unmasked (server to client) when `mask` is
/// `None`, else masked with it (client to server).
pub fn close_frame(code: u16, mask: Option<[u8; 4]>) -> ([u8; 8], usize) {
    let [hi, lo] = code.to_be_bytes();
    match mask {
        None => ([0x88, 0x02, hi, lo, 0, 0, 0, 0], 4),
        Some(m) => (
            [0x88, 0x82, m[0], m[1], m[2], m[3], hi ^ m[0], lo ^ m[1]],
            8,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_allow_list() {
        let list: Vec<String> = [
            "https://app.example.com",
            "https://*.example.com",
            "http://localhost:8080",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let cases: &[(Option<&str>, bool, bool)] = &[
            (Some("https://app.example.com"), false, true),
            (Some("HTTPS://App.Example.COM"), false, true),
            (Some("https://a.b.example.com"), false, true),
            (Some("https://example.com"), false, false),
            (Some("https://evil-example.com"), false, false),
            (Some("https://example.com.evil.net"), false, false),
            (Some("http://app.example.com"), false, false),
            (Some("https://app.example.com:8443"), false, false),
            (Some("http://localhost:8080"), false, true),
            (Some("http://localhost"), false, false),
            (Some("null"), false, false),
            (None, false, false),
            (None, true, true),
        ];
        for (origin, allow_missing, want) in cases {
            assert_eq!(
                origin_allowed(origin.map(str::as_bytes), &list, *allow_missing),
                *want,
                "{origin:?}"
            );
        }
        assert!(origin_allowed(Some(b"null"), &["null".to_string()], false));
        for bad in [
            "app.example.com",
            "https://",
            "https://a/b",
            "https://*",
            "https://a.*.com",
        ] {
            assert!(check_origin_pattern(bad).is_err(), "{bad}");
        }
        for good in [
            "https://*.example.com",
            "http://[::1]:8080",
            "null",
            "https://a.example.com:443",
        ] {
            assert!(check_origin_pattern(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn tracker_follows_frames_split_at_every_byte() {
        // Masked text "hello" (fin), a ping, a 300-byte binary in two fragments, a Close.
        let mut stream = Vec::new();
        let mut frame = |b0: u8, payload: &[u8], masked: bool| {
            let mut h = [0u8; 14];
            let mut n = FrameHeader::write_unmasked(
                &mut h,
                b0 & 0x80 != 0,
                b0 & 0x0F,
                payload.len() as u64,
            );
            if masked {
                h[1] |= 0x80;
                h[n..n + 4].copy_from_slice(&[1, 2, 3, 4]);
                n += 4;
            }
            stream.extend_from_slice(&h[..n]);
            stream.extend_from_slice(payload);
            stream.len()
        };
        let ends = [
            frame(0x81, b"hello", true),
            frame(0x89, b"", true),
            frame(0x02, &[7u8; 200], false),
            frame(0x80, &[7u8; 100], false),
            // RSV1 (permessage-deflate) is followed, not judged.
            frame(0xC1, &[9u8; 70_000], false),
            frame(0x88, &[0x03, 0xE8], true),
        ];
        for split in 0..stream.len() {
            let mut t = FrameTracker::default();
            let messages = t.feed(&stream[..split]) + t.feed(&stream[split..]);
            assert!(t.at_boundary(), "split {split}");
            assert_eq!(messages, 3, "split {split}");
            assert!(t.close_seen);
        }
        // Byte by byte: at a boundary exactly at frame ends, and `to_boundary` never
        // overshoots the next one.
        let mut t = FrameTracker::default();
        for (i, b) in stream.iter().enumerate() {
            let next_end = *ends.iter().find(|&&e| e > i).unwrap();
            assert!(t.to_boundary() <= next_end - i || t.at_boundary(), "at {i}");
            t.feed(&[*b]);
            assert_eq!(t.at_boundary(), ends.contains(&(i + 1)), "after byte {i}");
        }
        // Reading exactly `to_boundary` bytes at a time lands on every boundary.
        let mut t = FrameTracker::default();
        let mut at = 0;
        let mut landed = Vec::new();
        while at < stream.len() {
            let n = if t.at_boundary() { 1 } else { t.to_boundary() };
            t.feed(&stream[at..at + n]);
            at += n;
            if t.at_boundary() {
                landed.push(at);
            }
        }
        assert_eq!(landed, ends);
    }

    #[test]
    fn tracker_reads_whole_headers_in_place_as_it_does_byte_by_byte() {
        // Many small frames (the fast path: whole headers in one read) mixed with 16- and
        // 64-bit lengths, masked and not, fed in chunks of every size from 1 to 40: after
        // each chunk the state matches a tracker fed the same bytes one at a time.
        let mut stream = Vec::new();
        for i in 0..40u8 {
            let len = match i % 5 {
                0 => 0,
                1 => 64,
                2 => 125,
                3 => 126,
                _ => 300,
            };
            stream.push(if i % 7 == 6 { 0x88 } else { 0x80 | (i % 3) });
            let masked = if i % 2 == 0 { 0x80 } else { 0 };
            if i == 13 {
                stream.push(masked | 127);
                stream.extend_from_slice(&(len as u64).to_be_bytes());
            } else if len >= 126 {
                stream.push(masked | 126);
                stream.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                stream.push(masked | len as u8);
            }
            if masked != 0 {
                stream.extend_from_slice(&[1, 2, 3, 4]);
            }
            stream.extend(std::iter::repeat_n(i, len));
        }
        for chunk in 1..=40 {
            let (mut fast, mut slow) = (FrameTracker::default(), FrameTracker::default());
            let (mut m_fast, mut m_slow) = (0, 0);
            for part in stream.chunks(chunk) {
                m_fast += fast.feed(part);
                m_slow += part.iter().map(|b| slow.feed(&[*b])).sum::<u64>();
                assert_eq!(fast.at_boundary(), slow.at_boundary(), "chunk {chunk}");
                assert_eq!(fast.to_boundary(), slow.to_boundary(), "chunk {chunk}");
                assert_eq!(fast.close_seen, slow.close_seen, "chunk {chunk}");
                assert_eq!(m_fast, m_slow, "chunk {chunk}");
            }
            assert!(fast.at_boundary());
            // Final data frames: every frame but the Closes (i % 7 == 6) has FIN and opcode < 8.
            assert_eq!(m_fast, 40 - (0..40).filter(|i| i % 7 == 6).count() as u64);
        }
    }

    #[test]
    fn close_frames() {
        assert_eq!(
            close_frame(1001, None),
            ([0x88, 0x02, 0x03, 0xE9, 0, 0, 0, 0], 4)
        );
        let (f, n) = close_frame(1001, Some([0xA, 0xB, 0xC, 0xD]));
        let h = FrameHeader::parse(&f[..n]).unwrap().unwrap();
        assert_eq!(
            (h.opcode, h.fin, h.payload_len, h.header_len),
            (opcode::CLOSE, true, 2, 6)
        );
        let mut payload = [f[6], f[7]];
        unmask(&mut payload, h.mask.unwrap(), 0);
        assert_eq!(u16::from_be_bytes(payload), 1001);
    }
    use crate::protocol::http::head::{empty_headers, parse_request, parse_response};

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
