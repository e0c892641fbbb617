//! HTTP/1.1, sans-IO: request/response head parsing over borrowed buffers (`head`), the head
//! written towards a backend (`forward`), response heads written by Ringway (`response`) and the
//! chunked body framing used to find where a relayed body ends (`chunked`), what crosses
//! between HTTP/2 and HTTP/1.1 (`h2map`), content codings (`coding`: `Accept-Encoding`
//! negotiation, the gzip / brotli encoder) and validators and ranges (`conditional`).

pub mod chunked;
pub mod coding;
pub mod conditional;
pub mod forward;
pub mod h2map;
pub mod head;
pub mod response;

/// True if a comma-separated header value (e.g. `Connection: keep-alive, Upgrade`) contains
/// `token`, compared case-insensitively (RFC 9110 §5.6.1 lists; `token` must be lower-case).
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_lists() {
        assert!(super::has_token(b"keep-alive, Upgrade", b"upgrade"));
        assert!(super::has_token(b"UPGRADE", b"upgrade"));
        assert!(!super::has_token(b"upgrades", b"upgrade"));
        assert!(!super::has_token(b"", b"upgrade"));
    }
}

/// Appends `n` in decimal: header values built per request without `core::fmt` (callgrind put
/// the formatting machinery at about 12% of the HTTP path's user-space instructions).
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends `ip` as text: dotted quad by hand, IPv6 through `Display` (RFC 5952 form).
pub fn push_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(a) => {
            for (k, octet) in a.octets().into_iter().enumerate() {
                if k > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        std::net::IpAddr::V6(a) => {
            use std::io::Write;
            let _ = write!(out, "{a}");
        }
    }
}

#[cfg(test)]
mod text_tests {
    use super::{push_decimal, push_ip};

    #[test]
    fn decimal_and_ip_text_match_display() {
        for n in [0u64, 7, 10, 99, 100, 101, 65535, 1 << 40, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.255.9",
            "::1",
            "2001:db8::8:800:200c:417a",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().as_bytes());
        }
    }
}
