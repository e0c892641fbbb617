//! The server end of a WebSocket, sans-IO: tunnel mode (`mode = "tunnel"`) terminates the
//! client's frames here and passes only message payloads to a raw TCP backend.
//!
//! `Decoder` takes the client's bytes and yields one `Event` at a time: a complete data message
//! (reassembled from fragments up to `max_message`), a ping, a pong or a close. Everything RFC
//! 6455 forbids is a `Violation` with the close code to send: 1002 for protocol errors (an
//! unmasked frame, reserved bits, an unknown opcode, a fragmented or oversized control frame, a
//! continuation with no message, a new message inside a fragmented one, a bad close payload),
//! 1007 for a text message (or close reason) that is not UTF-8, 1009 for a message over
//! `max_message`. UTF-8 is checked as fragments arrive, so an invalid message fails at the
//! fragment that breaks it.
//!
//! A message that arrives whole in the caller's buffer is unmasked in place and handed out
//! from there (no copy); only fragmented messages and frames larger than the buffer are
//! gathered in the decoder's own buffer, which is freed once the message is out.
//!
//! The other direction: `frame_header` for the frames Ringway sends, and `utf8_prefix` to cut
//! a backend's byte stream into text frames at character boundaries.

use crate::protocol::ws::{opcode, unmask, FrameHeader};

/// Close codes Ringway sends (RFC 6455 §7.4.1).
pub mod code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
}

/// Why the connection must be failed; `code()` is the Close code to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    Protocol,
    InvalidData,
    TooBig,
}

impl Violation {
    pub fn code(self) -> u16 {
        match self {
            Violation::Protocol => code::PROTOCOL,
            Violation::InvalidData => code::INVALID_DATA,
            Violation::TooBig => code::TOO_BIG,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete data message's payload (text already checked as UTF-8).
    Message {
        text: bool,
        payload: &'a [u8],
    },
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// The client's Close: its code (none when the payload was empty) and reason.
    Close {
        code: Option<u16>,
        reason: &'a [u8],
    },
}

/// The frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
struct Frame {
    mask: [u8; 4],
    left: u64,
    done: u64,
    fin: bool,
}

#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// A data message in progress (after a first fragment, or a frame larger than the
    /// buffer): its opcode, and the payload so far.
    msg_text: Option<bool>,
    msg: Vec<u8>,
    /// `msg[..checked]` is valid UTF-8 (text messages); the rest is at most an incomplete
    /// character.
    checked: usize,
    frame: Option<Frame>,
    /// The client's Close was decoded: nothing after it is read.
    closed: bool,
}

impl Decoder {
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            max_message,
            msg_text: None,
            msg: Vec::new(),
            checked: 0,
            frame: None,
            closed: false,
        }
    }

    /// A message is partly received (a drain waits for its end before Close 1001).
    pub fn in_message(&self) -> bool {
        self.msg_text.is_some() || self.frame.is_some()
    }

    /// Bytes this decoder holds (reassembly), for the caller's accounting.
    pub fn held(&self) -> usize {
        self.msg.capacity()
    }

    /// Decodes from the start of `buf` (unmasking in place). Returns how many bytes were used
    /// and at most one event; `(0, None)` means more bytes are needed (the caller must offer
    /// at least `HEADER_MAX + 125` bytes of room, the largest control frame). After an event
    /// the caller handles it before calling again.
    pub fn decode<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> Result<(usize, Option<Event<'a>>), Violation> {
        if self.closed {
            return Ok((buf.len(), None));
        }
        if let Some(f) = self.frame {
            // A data frame's payload, streaming into `msg`.
            let take = f.left.min(buf.len() as u64) as usize;
            if take == 0 {
                return Ok((0, None));
            }
            unmask(&mut buf[..take], f.mask, f.done);
            self.append(&buf[..take])?;
            let left = f.left - take as u64;
            if left > 0 {
                self.frame = Some(Frame {
                    left,
                    done: f.done + take as u64,
                    ..f
                });
                return Ok((take, None));
            }
            self.frame = None;
            if !f.fin {
                return Ok((take, None));
            }
            return self.finish(take);
        }
        let Some(h) = FrameHeader::parse(buf).map_err(|_| Violation::Protocol)? else {
            return Ok((0, None));
        };
        // Clients must mask every frame (RFC 6455 §5.1).
        let Some(mask) = h.mask else {
            return Err(Violation::Protocol);
        };
        let total = h.header_len as u64 + h.payload_len;
        if h.is_control() {
            // At most 125 bytes (checked by the parser): wait until it is all here.
            if (buf.len() as u64) < total {
                return Ok((0, None));
            }
            let total = total as usize;
            let payload = &mut buf[h.header_len..total];
            unmask(payload, mask, 0);
            let ev = match h.opcode {
                opcode::PING => Event::Ping(payload),
                opcode::PONG => Event::Pong(payload),
                _ => {
                    let (code, reason) = close_payload(payload)?;
                    self.closed = true;
                    Event::Close { code, reason }
                }
            };
            return Ok((total, Some(ev)));
        }
        let text = match (h.opcode, self.msg_text) {
            (opcode::CONTINUATION, Some(text)) => text,
            (opcode::TEXT, None) => true,
            (opcode::BINARY, None) => false,
            // A continuation with no message, or a new message inside a fragmented one.
            _ => return Err(Violation::Protocol),
        };
        if self.msg.len() as u64 + h.payload_len > self.max_message as u64 {
            return Err(Violation::TooBig);
        }
        if h.fin && self.msg_text.is_none() && (buf.len() as u64) >= total {
            // The common case: a whole message in the buffer, handed out from there.
            let total = total as usize;
            let payload = &mut buf[h.header_len..total];
            unmask(payload, mask, 0);
            if text && std::str::from_utf8(payload).is_err() {
                return Err(Violation::InvalidData);
            }
            return Ok((total, Some(Event::Message { text, payload })));
        }
        self.msg_text = Some(text);
        if h.payload_len == 0 {
            return if h.fin {
                self.finish(h.header_len)
            } else {
                Ok((h.header_len, None))
            };
        }
        self.frame = Some(Frame {
            mask,
            left: h.payload_len,
            done: 0,
            fin: h.fin,
        });
        Ok((h.header_len, None))
    }

    /// Releases the reassembly buffer once the caller has used the last message from it.
    pub fn release(&mut self) {
        if self.msg_text.is_none() && self.frame.is_none() {
            self.msg = Vec::new();
            self.checked = 0;
        }
    }

    fn append(&mut self, data: &[u8]) -> Result<(), Violation> {
        self.msg.extend_from_slice(data);
        if self.msg_text == Some(true) {
            self.check_utf8(false)?;
        }
        Ok(())
    }

    /// Checks the text received so far; `end`: the message is complete, so an unfinished
    /// character is an error too.
    fn check_utf8(&mut self, end: bool) -> Result<(), Violation> {
        match std::str::from_utf8(&self.msg[self.checked..]) {
            Ok(_) => self.checked = self.msg.len(),
            Err(e) if e.error_len().is_none() && !end => self.checked += e.valid_up_to(),
            Err(_) => return Err(Violation::InvalidData),
        }
        Ok(())
    }

    fn finish(&mut self, used: usize) -> Result<(usize, Option<Event<'_>>), Violation> {
        let text = self.msg_text.take().unwrap_or(false);
        if text {
            self.check_utf8(true)?;
        }
        self.checked = 0;
        let payload = &self.msg[..];
        Ok((used, Some(Event::Message { text, payload })))
    }
}

/// A Close payload: empty, or a valid code then a UTF-8 reason (RFC 6455 §5.5.1, §7.4).
fn close_payload(p: &[u8]) -> Result<(Option<u16>, &[u8]), Violation> {
    match p {
        [] => Ok((None, &[])),
        [_] => Err(Violation::Protocol),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close_code_valid(code) {
                return Err(Violation::Protocol);
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(Violation::InvalidData);
            }
            Ok((Some(code), reason))
        }
    }
}

/// Codes a peer may send: the defined ones (1004-1006 and 1015 are never sent on the wire),
/// and the ranges for libraries and applications (3000-4999).
pub fn close_code_valid(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// An unmasked frame header for `len` payload bytes; returns the header bytes and length.
pub fn frame_header(op: u8, len: usize) -> ([u8; 14], usize) {
    let mut out = [0u8; 14];
    let n = FrameHeader::write_unmasked(&mut out, true, op, len as u64);
    (out, n)
}

/// An unmasked control frame (ping, pong, close) with `payload` (at most 125 bytes, cut
/// otherwise) into `out`.
pub fn control_frame(out: &mut Vec<u8>, op: u8, payload: &[u8]) {
    let payload = &payload[..payload.len().min(125)];
    let (h, n) = frame_header(op, payload.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(payload);
}

/// An unmasked Close frame with `code` (no reason) into `out`.
pub fn close(out: &mut Vec<u8>, code: u16) {
    control_frame(out, opcode::CLOSE, &code.to_be_bytes());
}

/// Bytes that cannot be sent in a text frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUtf8;

/// For text frames from a byte stream: how much of `data` ends on a character boundary.
/// `Ok(n)` with `data.len() - n` at most 3 (an unfinished character, kept for the next read);
/// `Err` when the bytes are not UTF-8 at all.
pub fn utf8_prefix(data: &[u8]) -> Result<usize, NotUtf8> {
    match std::str::from_utf8(data) {
        Ok(_) => Ok(data.len()),
        Err(e) if e.error_len().is_none() => Ok(e.valid_up_to()),
        Err(_) => Err(NotUtf8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

    /// A masked client frame; `b0` is the first byte as sent (FIN, RSV, opcode).
    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![b0];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&MASK);
        let mut p = payload.to_vec();
        unmask(&mut p, MASK, 0);
        f.extend_from_slice(&p);
        f
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Got {
        Msg(bool, Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<u16>),
        Fail(u16),
    }

    /// Feeds `wire` in pieces of `step` bytes (a buffer that holds what was not used yet, as
    /// the glue's read buffer does) and collects the events.
    fn run(wire: &[u8], step: usize, max: usize) -> Vec<Got> {
        let mut d = Decoder::new(max);
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        let mut fed = 0;
        loop {
            match d.decode(&mut buf) {
                Err(v) => {
                    out.push(Got::Fail(v.code()));
                    return out;
                }
                Ok((n, ev)) => {
                    let progressed = n > 0 || ev.is_some();
                    if let Some(ev) = ev {
                        out.push(match ev {
                            Event::Message { text, payload } => Got::Msg(text, payload.to_vec()),
                            Event::Ping(p) => Got::Ping(p.to_vec()),
                            Event::Pong(p) => Got::Pong(p.to_vec()),
                            Event::Close { code, .. } => Got::Close(code),
                        });
                    }
                    buf.drain(..n);
                    d.release();
                    if !progressed || buf.is_empty() {
                        if fed == wire.len() {
                            return out;
                        }
                        let end = (fed + step).min(wire.len());
                        buf.extend_from_slice(&wire[fed..end]);
                        fed = end;
                    }
                }
            }
        }
    }

    fn cat(frames: &[Vec<u8>]) -> Vec<u8> {
        frames.concat()
    }

    /// The Autobahn cases that apply to a server endpoint and can be scripted (framing,
    /// fragmentation, UTF-8, close codes), by their Autobahn section, each fed whole, byte by
    /// byte and in 7-byte pieces.
    #[test]
    fn autobahn_style_cases() {
        let big = vec![b'x'; 70_000];
        let cases: Vec<(&str, Vec<u8>, Vec<Got>)> = vec![
            (
                "1.1.1 empty text",
                frame(0x81, b""),
                vec![Got::Msg(true, vec![])],
            ),
            (
                "1.1.2 text 125",
                frame(0x81, &[b'a'; 125]),
                vec![Got::Msg(true, vec![b'a'; 125])],
            ),
            (
                "1.1.3 text 126",
                frame(0x81, &[b'a'; 126]),
                vec![Got::Msg(true, vec![b'a'; 126])],
            ),
            (
                "1.1.6 text 65536+",
                frame(0x81, &big),
                vec![Got::Msg(true, big.clone())],
            ),
            (
                "1.2.1 empty binary",
                frame(0x82, b""),
                vec![Got::Msg(false, vec![])],
            ),
            (
                "1.2.3 binary 0xfe",
                frame(0x82, &[0xFE; 300]),
                vec![Got::Msg(false, vec![0xFE; 300])],
            ),
            (
                "2.2 ping with payload",
                frame(0x89, b"hi"),
                vec![Got::Ping(b"hi".to_vec())],
            ),
            (
                "2.4 ping 125",
                frame(0x89, &[1; 125]),
                vec![Got::Ping(vec![1; 125])],
            ),
            (
                "2.5 ping 126",
                frame(0x89, &[1; 126]),
                vec![Got::Fail(1002)],
            ),
            (
                "2.10 pongs",
                cat(&[frame(0x8A, b"a"), frame(0x8A, b"")]),
                vec![Got::Pong(b"a".to_vec()), Got::Pong(vec![])],
            ),
            ("3.1 RSV1", frame(0xC1, b"x"), vec![Got::Fail(1002)]),
            (
                "3.2 RSV2 after a good one",
                cat(&[frame(0x81, b"ok"), frame(0xA1, b"x")]),
                vec![Got::Msg(true, b"ok".to_vec()), Got::Fail(1002)],
            ),
            ("3.7 RSV on close", frame(0xF8, b""), vec![Got::Fail(1002)]),
            ("4.1.1 opcode 3", frame(0x83, b""), vec![Got::Fail(1002)]),
            ("4.2.1 opcode 11", frame(0x8B, b""), vec![Got::Fail(1002)]),
            (
                "5.1 fragmented ping",
                cat(&[frame(0x09, b"a"), frame(0x80, b"b")]),
                vec![Got::Fail(1002)],
            ),
            (
                "5.3 text in two fragments",
                cat(&[frame(0x01, b"frag"), frame(0x80, b"ment")]),
                vec![Got::Msg(true, b"fragment".to_vec())],
            ),
            (
                "5.6 ping between fragments",
                cat(&[frame(0x01, b"fr"), frame(0x89, b"p"), frame(0x80, b"ag")]),
                vec![Got::Ping(b"p".to_vec()), Got::Msg(true, b"frag".to_vec())],
            ),
            (
                "5.9 continuation with no message",
                cat(&[frame(0x80, b"x"), frame(0x81, b"y")]),
                vec![Got::Fail(1002)],
            ),
            (
                "5.18 text inside a fragmented message",
                cat(&[frame(0x01, b"a"), frame(0x81, b"b")]),
                vec![Got::Fail(1002)],
            ),
            (
                "5.19 many fragments with pings",
                cat(&[
                    frame(0x01, b"a"),
                    frame(0x00, b"b"),
                    frame(0x89, b"1"),
                    frame(0x00, b""),
                    frame(0x89, b"2"),
                    frame(0x80, b"c"),
                ]),
                vec![
                    Got::Ping(b"1".to_vec()),
                    Got::Ping(b"2".to_vec()),
                    Got::Msg(true, b"abc".to_vec()),
                ],
            ),
            (
                "6.2.3 utf-8 valid",
                frame(0x81, "κόσμε".as_bytes()),
                vec![Got::Msg(true, "κόσμε".as_bytes().to_vec())],
            ),
            (
                "6.2.4 utf-8 split inside a character",
                cat(&[
                    frame(0x01, &"κόσμε".as_bytes()[..3]),
                    frame(0x80, &"κόσμε".as_bytes()[3..]),
                ]),
                vec![Got::Msg(true, "κόσμε".as_bytes().to_vec())],
            ),
            (
                "6.3.1 invalid utf-8",
                frame(
                    0x81,
                    &[
                        0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xED,
                        0xA0, 0x80, 0x65, 0x64, 0x69, 0x74, 0x65, 0x64,
                    ],
                ),
                vec![Got::Fail(1007)],
            ),
            (
                "6.4.1 fail fast in the first fragment",
                cat(&[
                    frame(0x01, &[0xCE, 0xBA, 0xF4, 0x90]),
                    frame(0x80, b"never"),
                ]),
                vec![Got::Fail(1007)],
            ),
            (
                "6.6 truncated character at the end",
                frame(0x81, &[0xCE]),
                vec![Got::Fail(1007)],
            ),
            (
                "6.x binary is not checked",
                frame(0x82, &[0xFF, 0xFE]),
                vec![Got::Msg(false, vec![0xFF, 0xFE])],
            ),
            (
                "7.1.1 close then nothing",
                cat(&[frame(0x88, &1000u16.to_be_bytes()), frame(0x81, b"late")]),
                vec![Got::Close(Some(1000))],
            ),
            (
                "7.3.1 close empty",
                frame(0x88, b""),
                vec![Got::Close(None)],
            ),
            (
                "7.3.2 close with 1 byte",
                frame(0x88, b"\x03"),
                vec![Got::Fail(1002)],
            ),
            (
                "7.3.5 close with reason",
                frame(0x88, b"\x03\xe8Hello World!"),
                vec![Got::Close(Some(1000))],
            ),
            (
                "7.5.1 close reason not utf-8",
                frame(
                    0x88,
                    b"\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80",
                ),
                vec![Got::Fail(1007)],
            ),
            (
                "7.7.x close 3000",
                frame(0x88, &3000u16.to_be_bytes()),
                vec![Got::Close(Some(3000))],
            ),
            (
                "7.7.x close 4999",
                frame(0x88, &4999u16.to_be_bytes()),
                vec![Got::Close(Some(4999))],
            ),
            (
                "unmasked frame",
                vec![0x81, 0x01, b'x'],
                vec![Got::Fail(1002)],
            ),
        ];
        for (name, wire, want) in &cases {
            for step in [wire.len().max(1), 1, 7] {
                assert_eq!(&run(wire, step, 1 << 20), want, "{name}, pieces of {step}");
            }
        }
        // 7.9.x: codes a peer must not send.
        for bad in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert_eq!(
                run(&frame(0x88, &bad.to_be_bytes()), 64, 1024),
                vec![Got::Fail(1002)],
                "close code {bad}"
            );
        }
    }

    #[test]
    fn max_message_counts_whole_messages_and_fragments() {
        assert_eq!(
            run(&frame(0x82, &[0; 100]), 200, 100),
            vec![Got::Msg(false, vec![0; 100])]
        );
        assert_eq!(
            run(&frame(0x82, &[0; 101]), 200, 100),
            vec![Got::Fail(1009)]
        );
        // Too big is known from the header: no payload byte need arrive.
        assert_eq!(
            run(&frame(0x82, &[0; 101])[..8], 200, 100),
            vec![Got::Fail(1009)]
        );
        let two = cat(&[frame(0x02, &[1; 60]), frame(0x80, &[2; 41])]);
        assert_eq!(run(&two, 1000, 100), vec![Got::Fail(1009)]);
        let fits = cat(&[frame(0x02, &[1; 60]), frame(0x80, &[2; 40])]);
        let mut want = vec![1; 60];
        want.extend_from_slice(&[2; 40]);
        assert_eq!(run(&fits, 1000, 100), vec![Got::Msg(false, want)]);
    }

    #[test]
    fn reassembly_buffer_is_released_after_the_message() {
        let mut d = Decoder::new(1 << 20);
        let mut a = frame(0x02, &[1; 1000]);
        assert_eq!(d.decode(&mut a).unwrap().0, 8);
        let mut rest = a[8..].to_vec();
        assert_eq!(d.decode(&mut rest).unwrap().0, 1000);
        assert!(d.in_message());
        let mut b = frame(0x80, &[2; 10]);
        let (n, ev) = d.decode(&mut b).unwrap();
        assert_eq!(n, 6);
        assert_eq!(ev, None);
        let mut tail = b[6..].to_vec();
        let (_, ev) = d.decode(&mut tail).unwrap();
        assert!(matches!(ev, Some(Event::Message { payload, .. }) if payload.len() == 1010));
        d.release();
        assert_eq!(d.held(), 0);
        assert!(!d.in_message());
    }

    #[test]
    fn utf8_prefix_keeps_unfinished_characters_and_rejects_garbage() {
        let s = "aé€😀".as_bytes(); // 1 + 2 + 3 + 4 bytes
        assert_eq!(utf8_prefix(s), Ok(10));
        assert_eq!(utf8_prefix(&s[..2]), Ok(1));
        assert_eq!(utf8_prefix(&s[..5]), Ok(3));
        assert_eq!(utf8_prefix(&s[..9]), Ok(6));
        assert_eq!(utf8_prefix(&[b'a', 0xFF, b'b']), Err(NotUtf8));
        assert_eq!(utf8_prefix(&[0xC3, 0x28]), Err(NotUtf8));
    }

    #[test]
    fn frames_ringway_sends() {
        let mut out = Vec::new();
        close(&mut out, 1009);
        assert_eq!(out, [0x88, 0x02, 0x03, 0xF1]);
        out.clear();
        control_frame(&mut out, opcode::PING, b"r1");
        assert_eq!(out, [0x89, 0x02, b'r', b'1']);
        assert_eq!(frame_header(opcode::TEXT, 126).1, 4);
        assert_eq!(frame_header(opcode::BINARY, 70_000).1, 10);
    }
}
