//! Content codings (RFC 9110 §8.4.1, §12.5.3), sans-IO: the client's `Accept-Encoding` parsed
//! and matched against the codings a route offers, and the streaming gzip / brotli encoder that
//! compresses a body piece by piece into a buffer the caller drains (no socket, no clock).
//!
//! Negotiation (`Accept::choose`):
//! - No `Accept-Encoding` at all: identity (RFC 9110 allows any coding, but clients that send no
//!   header are scripts and old tools; nginx and Caddy compress nothing for them either).
//! - Each offered coding gets the q-value of its own entry, else of `*`, else 0 (not acceptable).
//!   `x-gzip` counts as `gzip` (RFC 9110 §8.4.1.3). The highest q above 0 wins; on a tie the
//!   route's order (`compress = ["br", "gzip"]`: br first) decides.
//! - Identity stays acceptable unless `identity;q=0`, or `*;q=0` without an `identity` entry.
//!   When `identity` (or `*`) is listed with a q above the best coding's, identity is sent.
//!   [`Accept::identity_refused`] tells a caller that it should compress even a small body.
//!
//! Encoder levels (fixed, for sane CPU per response): gzip level [`GZIP_LEVEL`], brotli quality
//! [`BROTLI_QUALITY`] with a [`BROTLI_LGWIN`]-bit window (256 KiB: bounded memory per response).

use std::io::{self, Write};

/// gzip level for on-the-fly compression (zlib scale 1–9).
pub const GZIP_LEVEL: u32 = 5;
/// brotli quality for on-the-fly compression (0–11).
pub const BROTLI_QUALITY: u32 = 4;
/// brotli window: 2^18 bytes.
pub const BROTLI_LGWIN: u32 = 18;

/// A content coding Ringway can produce or serve precompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    Br,
    Gzip,
}

impl Coding {
    /// The token in `Content-Encoding` / `Accept-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }

    /// The suffix of a precompressed file (`app.js.br`, `app.js.gz`).
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Gzip => ".gz",
        }
    }

    /// `"br"` or `"gzip"` (as written in the configuration).
    pub fn parse(name: &str) -> Option<Coding> {
        match name {
            "br" => Some(Coding::Br),
            "gzip" => Some(Coding::Gzip),
            _ => None,
        }
    }
}

/// The client's `Accept-Encoding`, as q-values in thousandths (`None`: not listed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accept {
    present: bool,
    br: Option<u16>,
    gzip: Option<u16>,
    identity: Option<u16>,
    star: Option<u16>,
}

impl Accept {
    /// Parses an `Accept-Encoding` value (`None`: no header). Malformed members are skipped.
    pub fn parse(value: Option<&[u8]>) -> Accept {
        let mut a = Accept::default();
        let Some(value) = value else {
            return a;
        };
        a.present = true;
        for member in value.split(|&b| b == b',') {
            let mut parts = member.split(|&b| b == b';');
            let name = parts.next().unwrap_or_default().trim_ascii();
            if name.is_empty() {
                continue;
            }
            let mut q = Some(1000);
            for param in parts {
                let param = param.trim_ascii();
                if param.len() >= 2 && param[..2].eq_ignore_ascii_case(b"q=") {
                    q = qvalue(&param[2..]);
                }
            }
            let Some(q) = q else {
                continue;
            };
            let slot = if name.eq_ignore_ascii_case(b"br") {
                &mut a.br
            } else if name.eq_ignore_ascii_case(b"gzip") || name.eq_ignore_ascii_case(b"x-gzip") {
                &mut a.gzip
            } else if name.eq_ignore_ascii_case(b"identity") {
                &mut a.identity
            } else if name == b"*" {
                &mut a.star
            } else {
                continue;
            };
            // A coding listed twice: the higher weight stands.
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
        a
    }

    /// The q-value (thousandths) of `coding`; 0 when not acceptable.
    pub fn q(&self, coding: Coding) -> u16 {
        let own = match coding {
            Coding::Br => self.br,
            Coding::Gzip => self.gzip,
        };
        own.or(self.star).unwrap_or(0)
    }

    /// True when the client ruled identity out (`identity;q=0`, or `*;q=0` without `identity`).
    pub fn identity_refused(&self) -> bool {
        self.present && self.identity.or(self.star) == Some(0)
    }

    /// The best of `offered` (in the route's order of preference), or `None` for identity.
    pub fn choose(&self, offered: &[Coding]) -> Option<Coding> {
        if !self.present {
            return None;
        }
        let mut best: Option<(Coding, u16)> = None;
        for &c in offered {
            let q = self.q(c);
            if q > 0 && best.is_none_or(|(_, bq)| q > bq) {
                best = Some((c, q));
            }
        }
        let (coding, q) = best?;
        match self.identity.or(self.star) {
            Some(iq) if iq > q => None,
            _ => Some(coding),
        }
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` in thousandths.
fn qvalue(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// A streaming compressor: `write` input pieces, drain [`Encoder::output`] after each, `flush`
/// to make everything so far decodable (a streamed response's pieces), `finish` once.
pub struct Encoder {
    state: State,
}

enum State {
    Gzip(Box<flate2::write::GzEncoder<Vec<u8>>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    /// After `finish` of a brotli stream: its last bytes.
    Done(Vec<u8>),
}

impl Encoder {
    pub fn new(coding: Coding) -> Encoder {
        let state = match coding {
            Coding::Gzip => State::Gzip(Box::new(flate2::write::GzEncoder::new(
                Vec::with_capacity(16 * 1024),
                flate2::Compression::new(GZIP_LEVEL),
            ))),
            Coding::Br => State::Br(Box::new(brotli::CompressorWriter::new(
                Vec::with_capacity(16 * 1024),
                4096,
                BROTLI_QUALITY,
                BROTLI_LGWIN,
            ))),
        };
        Encoder { state }
    }

    /// Compresses `input`; what comes out is appended to [`Encoder::output`].
    pub fn write(&mut self, input: &[u8]) -> io::Result<()> {
        match &mut self.state {
            State::Gzip(e) => e.write_all(input),
            State::Br(e) => e.write_all(input),
            State::Done(_) => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Emits everything written so far (a sync flush): a streamed response's piece can be
    /// decoded by the client before the next arrives.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.state {
            State::Gzip(e) => e.flush(),
            State::Br(e) => e.flush(),
            State::Done(_) => Ok(()),
        }
    }

    /// Ends the stream (trailer, checksum); the last bytes are in [`Encoder::output`].
    pub fn finish(&mut self) -> io::Result<()> {
        let state = std::mem::replace(&mut self.state, State::Done(Vec::new()));
        self.state = match state {
            State::Gzip(mut e) => {
                e.try_finish()?;
                State::Done(e.finish()?)
            }
            State::Br(e) => State::Done(e.into_inner()),
            done @ State::Done(_) => done,
        };
        Ok(())
    }

    /// Compressed bytes not yet taken: the caller sends them and clears the vector.
    pub fn output(&mut self) -> &mut Vec<u8> {
        match &mut self.state {
            State::Gzip(e) => e.get_mut(),
            State::Br(e) => e.get_mut(),
            State::Done(v) => v,
        }
    }
}

/// Frames `data` as one HTTP/1.1 chunk (`size CRLF data CRLF`) into `out`; nothing for empty data.
pub fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk of a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn choose(header: Option<&str>) -> Option<Coding> {
        Accept::parse(header.map(str::as_bytes)).choose(&[Coding::Br, Coding::Gzip])
    }

    #[test]
    fn negotiation() {
        use Coding::*;
        let cases: &[(Option<&str>, Option<Coding>)] = &[
            (None, None),
            (Some(""), None),
            (Some("gzip, deflate, br"), Some(Br)),
            (Some("gzip, deflate, br, zstd"), Some(Br)),
            (Some("gzip"), Some(Gzip)),
            (Some("x-gzip"), Some(Gzip)),
            (Some("GZIP"), Some(Gzip)),
            (Some("br;q=0.5, gzip"), Some(Gzip)),
            (Some("br;q=0.5, gzip;q=0.4"), Some(Br)),
            (Some("br;q=0, gzip;q=0"), None),
            (Some("br;q=0"), None),
            (Some("*"), Some(Br)),
            (Some("*;q=0.5, br;q=0"), Some(Gzip)),
            (Some("identity"), None),
            (Some("deflate"), None),
            (Some("gzip;q=0.5, identity"), None),
            (Some("gzip;q=0.5, *"), Some(Br)),
            (Some("gzip;q=0.5, *;q=0.1, identity;q=0.9"), None),
            (Some("gzip, identity;q=0.5"), Some(Gzip)),
            (Some("gzip;q=1.000, br;q=0.999"), Some(Gzip)),
            (Some("gzip;q=2"), None),
            (Some("gzip;q=0.0001"), None),
            (Some("gzip;q=abc, br"), Some(Br)),
            (Some(" gzip ;  q=0.8 , ,br;Q=0.9"), Some(Br)),
            (Some("gzip;q=0, gzip;q=1"), Some(Gzip)),
        ];
        for (header, want) in cases {
            assert_eq!(choose(*header), *want, "{header:?}");
        }
        // The route's order decides ties.
        let a = Accept::parse(Some(b"gzip, br"));
        assert_eq!(a.choose(&[Coding::Gzip, Coding::Br]), Some(Coding::Gzip));
        assert_eq!(a.choose(&[Coding::Gzip]), Some(Coding::Gzip));
        assert_eq!(a.choose(&[]), None);
    }

    #[test]
    fn identity_refusal() {
        let refused = |h: &str| Accept::parse(Some(h.as_bytes())).identity_refused();
        assert!(refused("gzip, identity;q=0"));
        assert!(refused("gzip, *;q=0"));
        assert!(!refused("gzip, *;q=0, identity"));
        assert!(!refused("gzip"));
        assert!(!refused("identity;q=0.1"));
        assert!(!Accept::parse(None).identity_refused());
    }

    #[test]
    fn qvalues() {
        assert_eq!(qvalue(b"1"), Some(1000));
        assert_eq!(qvalue(b"1.0"), Some(1000));
        assert_eq!(qvalue(b"1.000"), Some(1000));
        assert_eq!(qvalue(b"1.001"), None);
        assert_eq!(qvalue(b"0.5"), Some(500));
        assert_eq!(qvalue(b"0.05"), Some(50));
        assert_eq!(qvalue(b"0.123"), Some(123));
        assert_eq!(qvalue(b"0."), Some(0));
        assert_eq!(qvalue(b"0"), Some(0));
        assert_eq!(qvalue(b""), None);
        assert_eq!(qvalue(b".5"), None);
    }

    fn roundtrip(coding: Coding, pieces: &[&[u8]], flush_each: bool) -> Vec<u8> {
        let mut e = Encoder::new(coding);
        let mut wire = Vec::new();
        for p in pieces {
            e.write(p).unwrap();
            if flush_each {
                e.flush().unwrap();
                // A flushed prefix decodes to everything written so far.
                let so_far: Vec<u8> = {
                    let mut all = wire.clone();
                    all.extend_from_slice(e.output());
                    all
                };
                assert!(!so_far.is_empty());
            }
            wire.extend_from_slice(e.output());
            e.output().clear();
        }
        e.finish().unwrap();
        wire.extend_from_slice(e.output());
        e.output().clear();
        assert!(e.write(b"x").is_err());
        let mut out = Vec::new();
        match coding {
            Coding::Gzip => {
                flate2::read::GzDecoder::new(&wire[..])
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Br => {
                brotli::Decompressor::new(&wire[..], 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
        }
        out
    }

    #[test]
    fn encoders_round_trip() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {} of the bundle;\n", i % 977).into_bytes())
            .collect();
        let pieces: Vec<&[u8]> = text.chunks(65536).collect();
        for coding in [Coding::Gzip, Coding::Br] {
            for flush in [false, true] {
                assert_eq!(roundtrip(coding, &pieces, flush), text, "{coding:?}");
            }
            assert_eq!(roundtrip(coding, &[], false), b"");
        }
    }

    #[test]
    fn chunk_framing() {
        let mut out = Vec::new();
        push_chunk(&mut out, b"hello world, twenty-six b");
        push_chunk(&mut out, b"");
        out.extend_from_slice(LAST_CHUNK);
        assert_eq!(out, b"19\r\nhello world, twenty-six b\r\n0\r\n\r\n");
    }
}
