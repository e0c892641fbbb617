//! Reference implementations the fuzz targets compare Ringway's parsers with. Written for the
//! fuzzer, simply and from the RFC text, not for speed.

/// Chunked transfer coding (RFC 9112 §7.1) as Ringway accepts it, parsed from the whole body
/// at once: `Ok(Some(end))` where the body ends, `Ok(None)` incomplete, `Err(())` invalid.
/// Ringway's limits: chunk-size at most 15 hex digits, every line (size line with extensions,
/// the CRLF after data, each trailer line) at most 4096 bytes with its CRLF.
pub fn chunked_end(buf: &[u8]) -> Result<Option<usize>, ()> {
    const LINE_MAX: usize = 4096;
    let mut i = 0;
    loop {
        // chunk-size [ext] CRLF; ext starts with ';', ' ' or '\t' and runs to CR.
        let line_start = i;
        let mut digits = 0usize;
        let mut size: u64 = 0;
        loop {
            let Some(&b) = buf.get(i) else {
                return if i - line_start > LINE_MAX {
                    Err(())
                } else {
                    Ok(None)
                };
            };
            if i - line_start + 1 > LINE_MAX {
                return Err(());
            }
            if b.is_ascii_hexdigit() {
                if digits == 15 {
                    return Err(());
                }
                size = size * 16 + u64::from((b as char).to_digit(16).unwrap());
                digits += 1;
                i += 1;
                continue;
            }
            if digits == 0 {
                return Err(());
            }
            break;
        }
        // Extensions: anything but CR/LF after a separator, until CR.
        if matches!(buf[i], b';' | b' ' | b'\t') {
            loop {
                let Some(&b) = buf.get(i) else {
                    return Ok(None);
                };
                if i - line_start + 1 > LINE_MAX {
                    return Err(());
                }
                match b {
                    b'\r' => break,
                    b'\n' => return Err(()),
                    _ => i += 1,
                }
            }
        }
        // CR LF
        for want in [b'\r', b'\n'] {
            let Some(&b) = buf.get(i) else {
                return Ok(None);
            };
            if i - line_start + 1 > LINE_MAX || b != want {
                return Err(());
            }
            i += 1;
        }
        if size == 0 {
            break;
        }
        // Data, then CRLF (counted as a line of its own).
        let Some(end) = i.checked_add(usize::try_from(size).map_err(|_| ())?) else {
            return Err(());
        };
        if end > buf.len() {
            return Ok(None);
        }
        i = end;
        for want in [b'\r', b'\n'] {
            let Some(&b) = buf.get(i) else {
                return Ok(None);
            };
            if b != want {
                return Err(());
            }
            i += 1;
        }
    }
    // Trailer lines (no bare LF, no line over the limit), then an empty line.
    loop {
        let line_start = i;
        let Some(&first) = buf.get(i) else {
            return Ok(None);
        };
        if first == b'\r' {
            let Some(&lf) = buf.get(i + 1) else {
                return Ok(None);
            };
            return if lf == b'\n' {
                Ok(Some(i + 2))
            } else {
                Err(())
            };
        }
        loop {
            let Some(&b) = buf.get(i) else {
                return Ok(None);
            };
            if i - line_start + 1 > LINE_MAX {
                return Err(());
            }
            match b {
                b'\n' => return Err(()),
                b'\r' => {
                    let Some(&lf) = buf.get(i + 1) else {
                        return Ok(None);
                    };
                    if lf != b'\n' || i + 2 - line_start > LINE_MAX {
                        return Err(());
                    }
                    i += 2;
                    break;
                }
                _ => i += 1,
            }
        }
    }
}

/// A strict request head (RFC 9112 §2–5 subset): `method SP target SP HTTP/1.x CRLF`, then
/// `name: value CRLF` lines, then CRLF. Returns (method, target, minor, header count, head
/// length) when the bytes are such a head; `None` otherwise (including incomplete).
pub fn strict_request_head(buf: &[u8]) -> Option<(String, String, u8, usize, usize)> {
    fn tchar(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = &buf[..end - 2];
    let mut lines = head.split(|&b| b == b'\n');
    let request_line = lines.next()?.strip_suffix(b"\r")?;
    let mut parts = request_line.split(|&b| b == b' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || method.is_empty() || !method.iter().all(|&b| tchar(b)) {
        return None;
    }
    if target.is_empty() || !target.iter().all(|&b| (0x21..0x7F).contains(&b)) {
        return None;
    }
    let minor = match version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        _ => return None,
    };
    // `head` ends with the last field line's CRLF: splitting leaves one empty piece at the
    // end; an empty line anywhere else would have ended the head there.
    let lines: Vec<&[u8]> = lines.collect();
    let (last, fields) = lines.split_last()?;
    if !last.is_empty() {
        return None;
    }
    let mut count = 0;
    for line in fields {
        let line = line.strip_suffix(b"\r")?;
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| tchar(b)) {
            return None;
        }
        if !value
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7F).contains(&b))
        {
            return None;
        }
        count += 1;
    }
    Some((
        String::from_utf8(method.to_vec()).ok()?,
        String::from_utf8(target.to_vec()).ok()?,
        minor,
        count,
        end,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_reference() {
        assert_eq!(chunked_end(b"5\r\nhello\r\n0\r\n\r\nNEXT"), Ok(Some(15)));
        assert_eq!(
            chunked_end(b"5;x=1\r\nhello\r\n0\r\nT: v\r\n\r\n"),
            Ok(Some(26))
        );
        assert_eq!(chunked_end(b"5\r\nhel"), Ok(None));
        assert_eq!(chunked_end(b"5\nhello"), Err(()));
        assert_eq!(chunked_end(b"x\r\n"), Err(()));
    }

    #[test]
    fn strict_head_reference() {
        let h = strict_request_head(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nrest").unwrap();
        assert_eq!(h, ("GET".into(), "/a".into(), 1, 1, 28));
        assert!(strict_request_head(b"GET /a HTTP/1.1\nHost: x\n\n").is_none());
    }
}
