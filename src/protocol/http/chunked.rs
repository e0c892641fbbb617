//! Chunked transfer coding (RFC 9112 §7.1), sans-IO: feeds on raw bytes and says where the body
//! ends, so a relay can pass chunked bodies through unchanged and stop at their end. It also
//! refuses bad chunk sizes (smuggling defence).

/// Longest chunk-size line we accept (size, extensions), like nginx's limits.
const CHUNK_LINE_BYTES_MAX: usize = 4096;
/// Largest trailer section `feed_parts` collects.
pub const TRAILER_BYTES_MAX: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    /// Skipping chunk extensions until LF.
    Ext,
    SizeLf,
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines until an empty one.
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    size_digits: usize,
    line_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError;

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::Size,
            size: 0,
            size_digits: 0,
            line_bytes: 0,
        }
    }
}

impl ChunkedDecoder {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes bytes of the chunked body; returns how many belong to it (less than
    /// `buf.len()` only once the body has ended).
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < buf.len() && self.state != State::Done {
            if let State::Data(left) = self.state {
                let take = left.min((buf.len() - i) as u64);
                i += take as usize;
                self.state = if take == left {
                    State::DataCr
                } else {
                    State::Data(left - take)
                };
                continue;
            }
            self.step(buf[i])?;
            i += 1;
        }
        Ok(i)
    }

    /// Like `feed`, for a relay that removes the chunked coding (HTTP/2 has none): `on_data`
    /// gets the ranges of `buf` that are chunk data, and the trailer section's lines are
    /// appended to `trailers` (raw, CRLF-separated; at most `TRAILER_BYTES_MAX`).
    pub fn feed_parts(
        &mut self,
        buf: &[u8],
        mut on_data: impl FnMut(std::ops::Range<usize>),
        trailers: &mut Vec<u8>,
    ) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < buf.len() && self.state != State::Done {
            if let State::Data(left) = self.state {
                let take = left.min((buf.len() - i) as u64);
                on_data(i..i + take as usize);
                i += take as usize;
                self.state = if take == left {
                    State::DataCr
                } else {
                    State::Data(left - take)
                };
                continue;
            }
            if matches!(
                self.state,
                State::TrailerStart | State::Trailer | State::TrailerLf
            ) {
                if trailers.len() >= TRAILER_BYTES_MAX {
                    return Err(ChunkError);
                }
                trailers.push(buf[i]);
            }
            self.step(buf[i])?;
            i += 1;
        }
        Ok(i)
    }

    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        self.line_bytes += 1;
        if self.line_bytes > CHUNK_LINE_BYTES_MAX {
            return Err(ChunkError);
        }
        self.state = match (self.state, b) {
            (State::Size, b) if b.is_ascii_hexdigit() => {
                // 15 hex digits = 2^60: far more than any body, and no overflow.
                if self.size_digits == 15 {
                    return Err(ChunkError);
                }
                self.size = self.size * 16 + u64::from((b as char).to_digit(16).unwrap_or(0));
                self.size_digits += 1;
                State::Size
            }
            (State::Size, b';' | b' ' | b'\t') if self.size_digits > 0 => State::Ext,
            (State::Size, b'\r') if self.size_digits > 0 => State::SizeLf,
            (State::Ext, b'\r') => State::SizeLf,
            (State::Ext, b'\n') => return Err(ChunkError),
            (State::Ext, _) => State::Ext,
            (State::SizeLf, b'\n') => self.end_size_line(),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => self.next_line(State::Size),
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::Trailer, b'\r') => State::TrailerLf,
            (State::TrailerStart | State::Trailer, b'\n') => return Err(ChunkError),
            (State::TrailerStart | State::Trailer, _) => State::Trailer,
            (State::TrailerLf, b'\n') => self.next_line(State::TrailerStart),
            (State::EndLf, b'\n') => State::Done,
            _ => return Err(ChunkError),
        };
        Ok(())
    }

    fn end_size_line(&mut self) -> State {
        let size = self.size;
        self.size = 0;
        self.size_digits = 0;
        self.line_bytes = 0;
        if size == 0 {
            State::TrailerStart
        } else {
            State::Data(size)
        }
    }

    fn next_line(&mut self, state: State) -> State {
        self.line_bytes = 0;
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_parts_separates_data_and_trailers_in_any_split() {
        let body = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Sum: 42\r\nX-B: b\r\n\r\nNEXT";
        for step in 1..body.len() {
            let mut d = ChunkedDecoder::default();
            let (mut data, mut trailers, mut used) = (Vec::new(), Vec::new(), 0);
            for piece in body.chunks(step) {
                if d.is_done() {
                    break;
                }
                let n = d
                    .feed_parts(piece, |r| data.extend_from_slice(&piece[r]), &mut trailers)
                    .unwrap();
                used += n;
            }
            assert_eq!(data, b"Wikipedia", "step {step}");
            assert_eq!(used, body.len() - 4, "step {step}");
            let text = String::from_utf8(trailers).unwrap();
            let lines: Vec<&str> = text
                .split("\r\n")
                .filter(|l| !l.trim().is_empty())
                .collect();
            assert_eq!(lines, ["X-Sum: 42", "X-B: b"], "step {step}");
        }
    }

    fn feed_all(input: &[u8]) -> Result<usize, ChunkError> {
        let mut d = ChunkedDecoder::default();
        let n = d.feed(input)?;
        assert!(d.is_done(), "not done after {n}");
        Ok(n)
    }

    #[test]
    fn finds_the_end_at_every_split() {
        let body = b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let body_len = body.len() - 4;
        assert_eq!(feed_all(body), Ok(body_len));
        for split in 0..body.len() {
            let mut d = ChunkedDecoder::default();
            let a = d.feed(&body[..split]).unwrap();
            let b = d.feed(&body[split..]).unwrap();
            assert_eq!(a + b, body_len, "split {split}");
            assert!(d.is_done());
        }
    }

    #[test]
    fn refuses_bad_framing() {
        for bad in [
            &b"x\r\n"[..],
            b"5\nhello",
            b"5\r\nhelloXX",
            b"\r\n",
            b"-1\r\n",
            b"1000000000000000\r\n",
            b"0\r\nbad\ntrailer",
        ] {
            let mut d = ChunkedDecoder::default();
            assert_eq!(
                d.feed(bad),
                Err(ChunkError),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(feed_all(b"0\r\n\r\n"), Ok(5));
    }
}
