//! WebSocket frame encoding and a streaming, zero-copy decoder (RFC 6455 §5).
//!
//! The decoder never buffers data payloads: it reports them as they arrive (unmasked in place),
//! so messages of any size cost no per-connection memory. Control frames (≤ 125 bytes) are
//! collected and reported whole.

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Largest frame header: 2 + 8 (64-bit length) + 4 (mask).
pub const MAX_HEADER: usize = 14;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub len: u64,
    /// Bytes the header itself took on the wire.
    pub header_len: usize,
}

impl Header {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// RSV1-3 set (no extension was negotiated).
    Reserved,
    /// Opcode 3-7 or 0xB-0xF.
    BadOpcode(u8),
    /// Control frame longer than 125 bytes or fragmented.
    BadControl,
    /// 64-bit length with the most significant bit set.
    BadLength,
    /// A frame masked when it must not be, or unmasked when it must be.
    Masking,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Reserved => write!(f, "reserved bits set"),
            FrameError::BadOpcode(o) => write!(f, "unknown opcode {o:#x}"),
            FrameError::BadControl => {
                write!(f, "control frame fragmented or longer than 125 bytes")
            }
            FrameError::BadLength => write!(f, "payload length has the most significant bit set"),
            FrameError::Masking => write!(f, "frame masking does not match the peer's role"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Writes a frame header into `buf` and returns its length.
pub fn encode_header(
    buf: &mut [u8; MAX_HEADER],
    fin: bool,
    opcode: u8,
    len: u64,
    mask: Option<[u8; 4]>,
) -> usize {
    buf[0] = (if fin { 0x80 } else { 0 }) | (opcode & 0x0F);
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    let mut n = if len < 126 {
        buf[1] = mbit | len as u8;
        2
    } else if len <= u16::MAX as u64 {
        buf[1] = mbit | 126;
        buf[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        buf[1] = mbit | 127;
        buf[2..10].copy_from_slice(&len.to_be_bytes());
        10
    };
    if let Some(m) = mask {
        buf[n..n + 4].copy_from_slice(&m);
        n += 4;
    }
    n
}

/// Appends a complete frame to `out`, masking the payload when `mask` is given.
pub fn encode_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    let mut h = [0u8; MAX_HEADER];
    let n = encode_header(&mut h, fin, opcode, payload.len() as u64, mask);
    out.extend_from_slice(&h[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(m) = mask {
        apply_mask(&mut out[start..], m, 0);
    }
}

/// XORs `data` with `mask`, where `data` starts at byte `offset` of the payload.
/// Masking and unmasking are the same operation.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut m = [0u8; 4];
    for (i, b) in m.iter_mut().enumerate() {
        *b = mask[(offset + i) & 3];
    }
    let mut m8 = [0u8; 8];
    m8[..4].copy_from_slice(&m);
    m8[4..].copy_from_slice(&m);
    let m64 = u64::from_ne_bytes(m8);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().unwrap()) ^ m64;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    // The chunks above consumed a multiple of 8 bytes, so the mask phase is unchanged.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i & 3];
    }
}

/// Parses a frame header from the start of `buf`. `Ok(None)` means more bytes are needed.
pub fn parse_header(buf: &[u8]) -> Result<Option<Header>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b0 & 0x70 != 0 {
        return Err(FrameError::Reserved);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    match opcode {
        OP_CONT | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG => {}
        o => return Err(FrameError::BadOpcode(o)),
    }
    let masked = b1 & 0x80 != 0;
    let (len, mut n) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let l = u64::from_be_bytes(buf[2..10].try_into().unwrap());
            if l >> 63 != 0 {
                return Err(FrameError::BadLength);
            }
            (l, 10)
        }
        l => (l as u64, 2),
    };
    if opcode & 0x8 != 0 && (len > 125 || !fin) {
        return Err(FrameError::BadControl);
    }
    let mask = if masked {
        if buf.len() < n + 4 {
            return Ok(None);
        }
        let m = [buf[n], buf[n + 1], buf[n + 2], buf[n + 3]];
        n += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        len,
        header_len: n,
    }))
}

/// What the decoder reports, in wire order.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A data frame (text, binary or continuation) begins.
    FrameStart(Header),
    /// Part of the current data frame's payload, already unmasked.
    Payload(&'a [u8]),
    /// The current data frame is complete (`Header::fin` tells whether the message is).
    FrameEnd(Header),
    /// A complete control frame: opcode and unmasked payload.
    Control(u8, &'a [u8]),
}

/// Which masking the peer must use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We are the server: frames must be masked.
    Server,
    /// We are the client: frames must not be masked.
    Client,
    /// Accept both.
    Any,
}

/// Streaming frame decoder. Keeps at most one partial header and one control payload.
pub struct Decoder {
    role: Role,
    hdr: [u8; MAX_HEADER],
    hdr_len: u8,
    cur: Option<Header>,
    remaining: u64,
    mask_pos: usize,
    ctrl: [u8; 125],
    ctrl_len: u8,
}

impl Decoder {
    pub fn new(role: Role) -> Self {
        Decoder {
            role,
            hdr: [0; MAX_HEADER],
            hdr_len: 0,
            cur: None,
            remaining: 0,
            mask_pos: 0,
            ctrl: [0; 125],
            ctrl_len: 0,
        }
    }

    /// True when the decoder stands between frames (no partial header or payload).
    pub fn is_idle(&self) -> bool {
        self.cur.is_none() && self.hdr_len == 0
    }

    /// Consumes all of `data` (unmasking payloads in place) and reports events to `f`.
    pub fn feed<F: FnMut(Event<'_>)>(
        &mut self,
        data: &mut [u8],
        mut f: F,
    ) -> Result<(), FrameError> {
        let mut pos = 0;
        while pos < data.len() {
            match self.cur {
                None => {
                    let h = if self.hdr_len == 0 {
                        match parse_header(&data[pos..])? {
                            Some(h) => {
                                pos += h.header_len;
                                h
                            }
                            None => {
                                let rest = data.len() - pos;
                                self.hdr[..rest].copy_from_slice(&data[pos..]);
                                self.hdr_len = rest as u8;
                                return Ok(());
                            }
                        }
                    } else {
                        let had = self.hdr_len as usize;
                        let take = (MAX_HEADER - had).min(data.len() - pos);
                        self.hdr[had..had + take].copy_from_slice(&data[pos..pos + take]);
                        match parse_header(&self.hdr[..had + take])? {
                            Some(h) => {
                                pos += h.header_len - had;
                                self.hdr_len = 0;
                                h
                            }
                            None => {
                                self.hdr_len = (had + take) as u8;
                                pos += take;
                                continue;
                            }
                        }
                    };
                    match (self.role, h.mask.is_some()) {
                        (Role::Server, false) | (Role::Client, true) => {
                            return Err(FrameError::Masking)
                        }
                        _ => {}
                    }
                    self.cur = Some(h);
                    self.remaining = h.len;
                    self.mask_pos = 0;
                    self.ctrl_len = 0;
                    if !h.is_control() {
                        f(Event::FrameStart(h));
                    }
                    if h.len == 0 {
                        self.finish(&mut f);
                    }
                }
                Some(h) => {
                    let n = (self.remaining.min((data.len() - pos) as u64)) as usize;
                    let chunk = &mut data[pos..pos + n];
                    if let Some(m) = h.mask {
                        apply_mask(chunk, m, self.mask_pos);
                    }
                    self.mask_pos += n;
                    self.remaining -= n as u64;
                    pos += n;
                    if h.is_control() {
                        let c = self.ctrl_len as usize;
                        self.ctrl[c..c + n].copy_from_slice(chunk);
                        self.ctrl_len += n as u8;
                    } else {
                        f(Event::Payload(chunk));
                    }
                    if self.remaining == 0 {
                        self.finish(&mut f);
                    }
                }
            }
        }
        Ok(())
    }

    fn finish<F: FnMut(Event<'_>)>(&mut self, f: &mut F) {
        let h = self.cur.take().expect("frame in progress");
        if h.is_control() {
            f(Event::Control(
                h.opcode,
                &self.ctrl[..self.ctrl_len as usize],
            ));
        } else {
            f(Event::FrameEnd(h));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_examples_encode() {
        // RFC 6455 §5.7: single-frame unmasked text "Hello".
        let mut out = Vec::new();
        encode_frame(&mut out, true, OP_TEXT, b"Hello", None);
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        // Single-frame masked text "Hello".
        out.clear();
        encode_frame(
            &mut out,
            true,
            OP_TEXT,
            b"Hello",
            Some([0x37, 0xfa, 0x21, 0x3d]),
        );
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        // Unmasked ping "Hello".
        out.clear();
        encode_frame(&mut out, true, OP_PING, b"Hello", None);
        assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    #[test]
    fn length_encodings() {
        let mut h = [0u8; MAX_HEADER];
        assert_eq!(encode_header(&mut h, true, OP_BINARY, 125, None), 2);
        assert_eq!(h[1], 125);
        // 256 bytes: 16-bit length (RFC example 0x82 0x7E 0x0100).
        assert_eq!(encode_header(&mut h, true, OP_BINARY, 256, None), 4);
        assert_eq!(&h[..4], &[0x82, 0x7E, 0x01, 0x00]);
        // 64 KiB: 64-bit length (RFC example 0x82 0x7F 0x0000000000010000).
        assert_eq!(encode_header(&mut h, true, OP_BINARY, 65536, None), 10);
        assert_eq!(&h[..10], &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(
            encode_header(&mut h, false, OP_BINARY, 65535, Some([1, 2, 3, 4])),
            8
        );
        assert_eq!(&h[..8], &[0x02, 0xFE, 0xFF, 0xFF, 1, 2, 3, 4]);
        for len in [0u64, 1, 125, 126, 65535, 65536, 1 << 20] {
            let n = encode_header(&mut h, true, OP_BINARY, len, Some([9, 8, 7, 6]));
            let p = parse_header(&h[..n]).unwrap().unwrap();
            assert_eq!((p.len, p.header_len, p.mask), (len, n, Some([9, 8, 7, 6])));
            // One byte short is incomplete, never an error.
            assert_eq!(parse_header(&h[..n - 1]).unwrap(), None);
        }
    }

    #[test]
    fn mask_any_offset_matches_bytewise() {
        let mask = [0xA1, 0xB2, 0xC3, 0xD4];
        let orig: Vec<u8> = (0..103u32).map(|i| (i * 7) as u8).collect();
        for off in 0..4 {
            for split in [0usize, 1, 5, 8, 13, 64, 103] {
                let mut d = orig.clone();
                apply_mask(&mut d[..split], mask, off);
                apply_mask(&mut d[split..], mask, off + split);
                for (i, (a, b)) in d.iter().zip(&orig).enumerate() {
                    assert_eq!(
                        *a,
                        b ^ mask[(off + i) % 4],
                        "off {off} split {split} byte {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn header_errors() {
        assert_eq!(parse_header(&[0xC2, 0x00]), Err(FrameError::Reserved));
        assert_eq!(parse_header(&[0x83, 0x00]), Err(FrameError::BadOpcode(3)));
        assert_eq!(
            parse_header(&[0x89, 126, 0, 200]),
            Err(FrameError::BadControl)
        );
        assert_eq!(parse_header(&[0x08, 0x00]), Err(FrameError::BadControl));
        let mut big = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(parse_header(&big), Err(FrameError::BadLength));
        big[2] = 0;
        assert_eq!(parse_header(&big).unwrap().unwrap().len, 1);
    }

    /// (opcode, fin, payload) of each data frame.
    type Frames = Vec<(u8, bool, Vec<u8>)>;
    /// (opcode, payload) of each control frame.
    type Controls = Vec<(u8, Vec<u8>)>;

    /// Collects decoder events into owned values.
    fn decode_all(dec: &mut Decoder, wire: &[u8], step: usize) -> (Frames, Controls) {
        let mut frames: Frames = Vec::new();
        let mut controls = Vec::new();
        let mut buf = wire.to_vec();
        for chunk in buf.chunks_mut(step) {
            dec.feed(chunk, |ev| match ev {
                Event::FrameStart(h) => frames.push((h.opcode, h.fin, Vec::new())),
                Event::Payload(p) => frames.last_mut().unwrap().2.extend_from_slice(p),
                Event::FrameEnd(h) => assert_eq!(frames.last().unwrap().2.len() as u64, h.len),
                Event::Control(op, p) => controls.push((op, p.to_vec())),
            })
            .unwrap();
        }
        (frames, controls)
    }

    #[test]
    fn decoder_streams_across_any_split() {
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = Vec::new();
        encode_frame(&mut wire, false, OP_BINARY, b"frag-one", Some([1, 2, 3, 4]));
        encode_frame(
            &mut wire,
            true,
            OP_PING,
            b"are you there",
            Some([5, 6, 7, 8]),
        );
        encode_frame(&mut wire, true, OP_CONT, b"frag-two", Some([9, 9, 9, 9]));
        encode_frame(
            &mut wire,
            true,
            OP_BINARY,
            &big,
            Some([0xde, 0xad, 0xbe, 0xef]),
        );
        encode_frame(&mut wire, true, OP_TEXT, b"", Some([1, 1, 1, 1]));
        encode_frame(&mut wire, true, OP_CLOSE, &[0x03, 0xE8], Some([4, 3, 2, 1]));
        for step in [1usize, 2, 3, 7, 13, 14, 15, 1000, wire.len()] {
            let mut dec = Decoder::new(Role::Server);
            let (frames, controls) = decode_all(&mut dec, &wire, step);
            assert!(dec.is_idle(), "step {step}");
            assert_eq!(frames.len(), 4, "step {step}");
            assert_eq!(frames[0], (OP_BINARY, false, b"frag-one".to_vec()));
            assert_eq!(frames[1], (OP_CONT, true, b"frag-two".to_vec()));
            assert_eq!(frames[2].0, OP_BINARY);
            assert!(frames[2].2 == big, "large payload corrupted at step {step}");
            assert_eq!(frames[3], (OP_TEXT, true, Vec::new()));
            assert_eq!(
                controls,
                vec![
                    (OP_PING, b"are you there".to_vec()),
                    (OP_CLOSE, vec![0x03, 0xE8])
                ]
            );
        }
    }

    #[test]
    fn decoder_enforces_role_masking() {
        let mut wire = Vec::new();
        encode_frame(&mut wire, true, OP_BINARY, b"x", None);
        assert_eq!(
            Decoder::new(Role::Server).feed(&mut wire.clone(), |_| {}),
            Err(FrameError::Masking)
        );
        assert!(Decoder::new(Role::Client)
            .feed(&mut wire.clone(), |_| {})
            .is_ok());
        wire.clear();
        encode_frame(&mut wire, true, OP_BINARY, b"x", Some([1, 2, 3, 4]));
        assert_eq!(
            Decoder::new(Role::Client).feed(&mut wire.clone(), |_| {}),
            Err(FrameError::Masking)
        );
        assert!(Decoder::new(Role::Any).feed(&mut wire, |_| {}).is_ok());
    }
}
