//! CIDR blocks (`"127.0.0.1/32"`, `"::1/128"`, `"10.0.0.0/8"`) for allow-lists.
//!
//! A thin wrapper over [`ipnet::IpNet`], which holds the block and answers `contains`. Two things
//! stay here: reading the text (Ringway also takes a bare address as a single host, keeps host
//! bits as written — `10.0.0.1/8` is the block `10.0.0.0/8` — and its error messages are what
//! `ringway check` shows), and comparing an IPv4-mapped IPv6 peer as the IPv4 address it carries.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(IpNet);

impl Cidr {
    /// Whether `ip` is inside the block. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a
    /// dual-stack socket reports IPv4 peers) is compared as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&ip)
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `ADDRESS/PREFIX`, or a bare address (a single host).
    fn from_str(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
        let Some(prefix) = prefix else {
            return Ok(Cidr(IpNet::from(net)));
        };
        prefix
            .parse::<u8>()
            .ok()
            .and_then(|p| IpNet::new(net, p).ok())
            .map(Cidr)
            .ok_or_else(|| {
                let max = if net.is_ipv4() { 32 } else { 128 };
                format!("{text:?}: the prefix length must be 0 to {max}")
            })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership() {
        let cases: &[(&str, &str, bool)] = &[
            ("127.0.0.1/32", "127.0.0.1", true),
            ("127.0.0.1/32", "127.0.0.2", false),
            ("127.0.0.0/8", "127.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("::1/128", "::1", true),
            ("::1/128", "::2", false),
            ("fd00::/8", "fd12:3456::1", true),
            ("127.0.0.1/32", "::ffff:127.0.0.1", true),
            ("127.0.0.1/32", "::1", false),
            ("::1/128", "127.0.0.1", false),
            ("192.168.1.7", "192.168.1.7", true),
        ];
        for (cidr, ip, want) in cases {
            let c: Cidr = cidr.parse().unwrap();
            assert_eq!(c.contains(ip.parse().unwrap()), *want, "{cidr} ∋ {ip}");
        }
    }

    #[test]
    fn parse_errors() {
        for bad in ["127.0.0.1/33", "::1/129", "localhost/8", "1.2.3.4/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!(
            "10.1.0.0/16".parse::<Cidr>().unwrap().to_string(),
            "10.1.0.0/16"
        );
        assert_eq!(
            "127.0.0.1/33".parse::<Cidr>().unwrap_err(),
            r#""127.0.0.1/33": the prefix length must be 0 to 32"#
        );
        assert_eq!(
            "::1/x".parse::<Cidr>().unwrap_err(),
            r#""::1/x": the prefix length must be 0 to 128"#
        );
        assert_eq!(
            "localhost/8".parse::<Cidr>().unwrap_err(),
            r#""localhost/8" is not an IP address or CIDR block"#
        );
    }

    #[test]
    fn bare_addresses_and_host_bits() {
        let host: Cidr = "192.168.1.7".parse().unwrap();
        assert_eq!(host.to_string(), "192.168.1.7/32");
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
        // Host bits are kept as written and ignored for membership.
        let wide: Cidr = "10.0.0.1/8".parse().unwrap();
        assert_eq!(wide.to_string(), "10.0.0.1/8");
        assert!(wide.contains("10.200.3.4".parse().unwrap()));
        assert!(!wide.contains("11.0.0.1".parse().unwrap()));
        assert!("1.2.3.4/08".parse::<Cidr>().is_ok());
    }
}
