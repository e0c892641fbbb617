//! The PROXY protocol (HAProxy's, versions 1 and 2), sans-IO: parsing the header an L4
//! balancer puts before a connection's first byte, and writing one for a backend.
//!
//! v1 is one text line, `PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n`, at most 107 bytes.
//! v2 is a 16-byte binary header (12-byte signature, version and command, family and
//! protocol, length) followed by the addresses and TLVs. `LOCAL` (v2) and `UNKNOWN` (v1) carry
//! no client address: the socket's is used. TLVs (ALPN, authority, SSL, ...) are skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 line is at most this long, CRLF included (the specification's bound).
pub const V1_BYTES_MAX: usize = 107;
/// A v2 header Ringway accepts is at most this long (addresses and TLVs included): TLVs are
/// skipped, not kept, and nothing legitimate sends more.
pub const V2_BYTES_MAX: usize = 16 + 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed; at least this many in all.
    Incomplete { need: usize },
    /// A complete header of `len` bytes. `source`/`dest`: the client's address and the one it
    /// connected to; `None` for LOCAL / UNKNOWN (use the socket's).
    Complete {
        len: usize,
        source: Option<SocketAddr>,
        dest: Option<SocketAddr>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// The connection does not start with a PROXY header.
    Missing,
    /// A v1 line over 107 bytes, or a v2 header over `V2_BYTES_MAX`.
    TooLong,
    /// A header that breaks the format.
    Malformed,
}

/// Parses the header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    const V1: &[u8] = b"PROXY ";
    let probe = buf.len().min(V2_SIGNATURE.len());
    if buf.len() < V1.len().min(V2_SIGNATURE.len()) {
        let maybe = V1.starts_with(&buf[..probe]) || V2_SIGNATURE.starts_with(&buf[..probe]);
        return if maybe {
            Ok(Parsed::Incomplete { need: V1.len() })
        } else {
            Err(ProxyError::Missing)
        };
    }
    if buf.starts_with(V1) {
        return parse_v1(buf);
    }
    if V2_SIGNATURE.starts_with(&buf[..probe]) {
        return parse_v2(buf);
    }
    Err(ProxyError::Missing)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let window = &buf[..buf.len().min(V1_BYTES_MAX)];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_BYTES_MAX {
            Err(ProxyError::TooLong)
        } else {
            Ok(Parsed::Incomplete {
                need: buf.len() + 1,
            })
        };
    };
    let line = &window[..nl];
    let line = line.strip_suffix(b"\r").ok_or(ProxyError::Malformed)?;
    let text = std::str::from_utf8(line).map_err(|_| ProxyError::Malformed)?;
    let mut parts = text.split(' ');
    let (_proxy, family) = (parts.next(), parts.next());
    let unknown = Parsed::Complete {
        len: nl + 1,
        source: None,
        dest: None,
    };
    let family = match family {
        Some("UNKNOWN") => return Ok(unknown),
        Some("TCP4") => 4,
        Some("TCP6") => 6,
        _ => return Err(ProxyError::Malformed),
    };
    let fields: Vec<&str> = parts.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(ProxyError::Malformed);
    };
    let ip = |s: &str| -> Result<IpAddr, ProxyError> {
        let ip: IpAddr = s.parse().map_err(|_| ProxyError::Malformed)?;
        match (family, ip) {
            (4, IpAddr::V4(_)) | (6, IpAddr::V6(_)) => Ok(ip),
            _ => Err(ProxyError::Malformed),
        }
    };
    let port = |s: &str| -> Result<u16, ProxyError> {
        // Decimal without a leading zero (the specification's form).
        if s.is_empty() || (s.len() > 1 && s.starts_with('0')) {
            return Err(ProxyError::Malformed);
        }
        s.parse().map_err(|_| ProxyError::Malformed)
    };
    Ok(Parsed::Complete {
        len: nl + 1,
        source: Some(SocketAddr::new(ip(src)?, port(sport)?)),
        dest: Some(SocketAddr::new(ip(dst)?, port(dport)?)),
    })
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if buf.len() < 16 {
        return Ok(Parsed::Incomplete { need: 16 });
    }
    let (ver_cmd, fam) = (buf[12], buf[13]);
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::Malformed);
    }
    if 16 + len > V2_BYTES_MAX {
        return Err(ProxyError::TooLong);
    }
    if buf.len() < 16 + len {
        return Ok(Parsed::Incomplete { need: 16 + len });
    }
    let body = &buf[16..16 + len];
    let local = Parsed::Complete {
        len: 16 + len,
        source: None,
        dest: None,
    };
    match ver_cmd & 0x0F {
        0x0 => return Ok(local),
        0x1 => {}
        _ => return Err(ProxyError::Malformed),
    }
    // Family (high nibble) and transport (low): only TCP over IPv4/IPv6 carries an address
    // Ringway uses; UNSPEC and UNIX are treated as LOCAL.
    let (source, dest) = match fam {
        0x11 => {
            let a = body.get(..12).ok_or(ProxyError::Malformed)?;
            let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(a[i], a[i + 1], a[i + 2], a[i + 3]));
            let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
            (
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            )
        }
        0x21 => {
            let a = body.get(..36).ok_or(ProxyError::Malformed)?;
            let ip = |i: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&a[i..i + 16]);
                IpAddr::V6(Ipv6Addr::from(o))
            };
            let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
            (
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            )
        }
        0x00 | 0x31 | 0x32 | 0x12 | 0x22 => return Ok(local),
        _ => return Err(ProxyError::Malformed),
    };
    Ok(Parsed::Complete {
        len: 16 + len,
        source: Some(source),
        dest: Some(dest),
    })
}

/// The two addresses in one family: an IPv4 address next to an IPv6 one is written as its
/// IPv4-mapped IPv6 form.
fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    if src.is_ipv4() == dst.is_ipv4() {
        (src, dst)
    } else {
        (v6(src), v6(dst))
    }
}

/// Appends a v1 header for a connection from `src` to `dst`.
pub fn write_v1(out: &mut Vec<u8>, src: SocketAddr, dst: SocketAddr) {
    let (src, dst) = same_family(src, dst);
    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    let line = format!(
        "PROXY {family} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    );
    out.extend_from_slice(line.as_bytes());
}

/// Appends a v2 header (command PROXY, TCP) for a connection from `src` to `dst`.
pub fn write_v2(out: &mut Vec<u8>, src: SocketAddr, dst: SocketAddr) {
    let (src, dst) = same_family(src, dst);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        _ => unreachable!("same_family gives one family"),
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn complete(len: usize, src: &str, dst: &str) -> Result<Parsed, ProxyError> {
        Ok(Parsed::Complete {
            len,
            source: Some(sa(src)),
            dest: Some(sa(dst)),
        })
    }

    #[test]
    fn v1_table() {
        let cases: &[(&[u8], Result<Parsed, ProxyError>)] = &[
            (
                b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET /",
                complete(45, "192.0.2.1:56324", "198.51.100.2:443"),
            ),
            (
                b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n",
                complete(36, "[2001:db8::1]:1", "[::1]:65535"),
            ),
            (
                b"PROXY UNKNOWN\r\n",
                Ok(Parsed::Complete {
                    len: 15,
                    source: None,
                    dest: None,
                }),
            ),
            (
                b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
                Ok(Parsed::Complete {
                    len: 35,
                    source: None,
                    dest: None,
                }),
            ),
            (
                b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\n",
                Err(ProxyError::Malformed),
            ),
            (b"PROXY TCP4 ::1 ::1 1 2\r\n", Err(ProxyError::Malformed)),
            (
                b"PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n",
                Err(ProxyError::Malformed),
            ),
            (
                b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n",
                Err(ProxyError::Malformed),
            ),
            (
                b"PROXY TCP4 1.2.3.4 1.2.3.4 70000 2\r\n",
                Err(ProxyError::Malformed),
            ),
            (
                b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",
                Err(ProxyError::Malformed),
            ),
            (
                b"PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n",
                Err(ProxyError::Malformed),
            ),
            (b"GET / HTTP/1.1\r\n", Err(ProxyError::Missing)),
            (b"proxy TCP4", Err(ProxyError::Missing)),
        ];
        for (raw, want) in cases {
            assert_eq!(&parse(raw), want, "{:?}", String::from_utf8_lossy(raw));
        }
        // Longer than 107 bytes without a line end.
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 100]].concat();
        assert_eq!(parse(&long), Err(ProxyError::TooLong));
    }

    #[test]
    fn every_prefix_is_incomplete_then_complete() {
        let mut v2 = Vec::new();
        write_v2(&mut v2, sa("203.0.113.7:40000"), sa("127.0.0.1:8080"));
        let mut v1 = Vec::new();
        write_v1(&mut v1, sa("[2001:db8::7]:40000"), sa("[::1]:8443"));
        for (header, src, dst) in [
            (v2, "203.0.113.7:40000", "127.0.0.1:8080"),
            (v1, "[2001:db8::7]:40000", "[::1]:8443"),
        ] {
            for cut in 0..header.len() {
                assert!(
                    matches!(parse(&header[..cut]), Ok(Parsed::Incomplete { need }) if need > cut),
                    "cut at {cut}: {:?}",
                    parse(&header[..cut])
                );
            }
            let mut with_data = header.clone();
            with_data.extend_from_slice(b"GET / HTTP/1.1\r\n");
            assert_eq!(parse(&with_data), complete(header.len(), src, dst));
        }
    }

    #[test]
    fn v2_local_tlvs_and_bounds() {
        // LOCAL with a TLV: no address.
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x05, 0x01, 0x00, 0x02, b'h', b'2']);
        assert_eq!(
            parse(&local),
            Ok(Parsed::Complete {
                len: 21,
                source: None,
                dest: None,
            })
        );
        // PROXY TCP4 followed by an ALPN TLV: the TLV is skipped, the length covers it.
        let mut v2 = Vec::new();
        write_v2(&mut v2, sa("198.51.100.9:1234"), sa("127.0.0.1:80"));
        v2[15] += 5;
        v2.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']);
        assert_eq!(
            parse(&v2),
            complete(33, "198.51.100.9:1234", "127.0.0.1:80")
        );
        // A v4 family with too short an address block, a bad version, a bad command.
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4]);
        assert_eq!(parse(&short), Err(ProxyError::Malformed));
        let mut v3 = V2_SIGNATURE.to_vec();
        v3.extend_from_slice(&[0x31, 0x11, 0x00, 0x00]);
        assert_eq!(parse(&v3), Err(ProxyError::Malformed));
        let mut cmd = V2_SIGNATURE.to_vec();
        cmd.extend_from_slice(&[0x22, 0x11, 0x00, 0x00]);
        assert_eq!(parse(&cmd), Err(ProxyError::Malformed));
        // Oversized: refused from the length field alone.
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
        assert_eq!(parse(&big), Err(ProxyError::TooLong));
        // Mixed families are written as IPv6 (IPv4-mapped).
        let mut mixed = Vec::new();
        write_v1(&mut mixed, sa("127.0.0.1:5"), sa("[::1]:6"));
        assert_eq!(mixed, b"PROXY TCP6 ::ffff:127.0.0.1 ::1 5 6\r\n");
    }
}
