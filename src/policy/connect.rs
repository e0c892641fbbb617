//! The CONNECT forward proxy's decisions, sans-IO: the target of a `CONNECT host:port`
//! request, the `allow` rules (host globs and CIDR blocks, each with a port or `*`), the
//! check of the addresses a name resolved to. Its `auth` users are `policy::access` users.
//!
//! A name allowed by a host rule may only resolve to public addresses, or to addresses that
//! an address rule allows for that port: a name cannot be made to point inside loopback,
//! private, link-local or other special ranges (DNS rebinding, SSRF) unless those are listed.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::policy::cidr::Cidr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleHost {
    /// `example.com`, `*.example.com` (one or more labels), `*` (any name).
    Name(String),
    /// `10.0.0.0/8`, `127.0.0.1` (a single address).
    Net(Cidr),
}

/// One `allow` entry: `HOST:PORT` where PORT is a number or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub host: RuleHost,
    /// `None`: any port.
    pub port: Option<u16>,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            RuleHost::Name(n) => write!(f, "{n}")?,
            RuleHost::Net(c) => write!(f, "{c}")?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => write!(f, ":*"),
        }
    }
}

impl Rule {
    /// Parses `"*.example.com:443"`, `"10.0.0.0/8:*"`, `"[::1]:8080"`, `"::1/128:*"`.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let bad = || {
            format!(
                "{text:?} is not HOST:PORT (a name, *.name, an address or CIDR block; a port or *)"
            )
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let port = match port {
            "*" => None,
            p => Some(p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(bad)?),
        };
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(cidr) = host.parse::<Cidr>() {
            return Ok(Rule {
                host: RuleHost::Net(cidr),
                port,
            });
        }
        let name = host.to_ascii_lowercase();
        let bare = name.strip_prefix("*.").unwrap_or(&name);
        let valid = name == "*"
            || (!bare.is_empty()
                && bare.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                }));
        if !valid {
            return Err(bad());
        }
        Ok(Rule {
            host: RuleHost::Name(name),
            port,
        })
    }

    fn port_ok(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }

    fn name_ok(&self, name: &str) -> bool {
        match &self.host {
            RuleHost::Name(p) if p == "*" => true,
            RuleHost::Name(p) => match p.strip_prefix("*.") {
                Some(suffix) => name
                    .strip_suffix(suffix)
                    .and_then(|h| h.strip_suffix('.'))
                    .is_some_and(|labels| !labels.is_empty()),
                None => p == name,
            },
            RuleHost::Net(_) => false,
        }
    }

    fn addr_ok(&self, ip: IpAddr) -> bool {
        matches!(&self.host, RuleHost::Net(c) if c.contains(ip))
    }
}

/// Where a CONNECT goes: a name (to resolve) or an address, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Name(String, u16),
    Addr(SocketAddr),
}

/// The authority-form target of `CONNECT host:port` (RFC 9110 §9.3.6): a port is required.
pub fn parse_target(target: &str) -> Option<Target> {
    if let Ok(addr) = target.parse::<SocketAddr>() {
        return Some(Target::Addr(addr));
    }
    let (host, port) = target.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|&p| p > 0)?;
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    ok.then_some(Target::Name(host, port))
}

/// Before resolving: does a rule allow this target at all?
pub fn allowed(rules: &[Rule], target: &Target) -> bool {
    match target {
        Target::Addr(a) => rules
            .iter()
            .any(|r| r.port_ok(a.port()) && r.addr_ok(a.ip())),
        Target::Name(n, port) => rules.iter().any(|r| r.port_ok(*port) && r.name_ok(n)),
    }
}

/// Addresses a name must not resolve to unless an address rule lists them.
fn special(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
        }
    }
}

/// After resolving a name: the addresses it may be reached at (in resolver order).
pub fn usable(rules: &[Rule], resolved: &[SocketAddr]) -> Vec<SocketAddr> {
    resolved
        .iter()
        .copied()
        .filter(|a| {
            !special(a.ip())
                || rules
                    .iter()
                    .any(|r| r.port_ok(a.port()) && r.addr_ok(a.ip()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> Vec<Rule> {
        list.iter().map(|r| Rule::parse(r).unwrap()).collect()
    }

    #[test]
    fn rule_syntax() {
        for good in [
            "*.example.com:443",
            "example.com:*",
            "10.0.0.0/8:*",
            "[::1]:8080",
            "::1/128:*",
            "*:443",
            "127.0.0.1:22",
        ] {
            assert!(Rule::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "example.com",
            "example.com:0",
            "example.com:http",
            "*.*.com:1",
            "a b:1",
            ":443",
            "10.0.0.0/33:*",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Rule::parse("10.0.0.0/8:*").unwrap().to_string(),
            "10.0.0.0/8:*"
        );
    }

    #[test]
    fn targets_and_rules() {
        let r = rules(&["*.example.com:443", "10.0.0.0/8:*", "[::1]:8080"]);
        let cases: &[(&str, Option<bool>)] = &[
            ("api.example.com:443", Some(true)),
            ("a.b.example.com:443", Some(true)),
            ("API.Example.COM.:443", Some(true)),
            ("example.com:443", Some(false)),
            ("api.example.com:80", Some(false)),
            ("10.1.2.3:5432", Some(true)),
            ("11.1.2.3:5432", Some(false)),
            ("[::1]:8080", Some(true)),
            ("[::1]:8081", Some(false)),
            ("example.com", None),
            ("example.com:0", None),
            ("exa mple.com:443", None),
            ("/path", None),
        ];
        for (target, want) in cases {
            let got = parse_target(target).map(|t| allowed(&r, &t));
            assert_eq!(got, *want, "{target}");
        }
    }

    #[test]
    fn names_may_not_resolve_into_special_ranges() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let r = rules(&["*.example.com:443"]);
        let resolved = [
            sa("127.0.0.1:443"),
            sa("10.0.0.5:443"),
            sa("93.184.216.34:443"),
            sa("[::1]:443"),
            sa("[fd00::1]:443"),
            sa("[::ffff:192.168.1.1]:443"),
        ];
        assert_eq!(usable(&r, &resolved), [sa("93.184.216.34:443")]);
        // Unless an address rule lists them, for that port.
        let r = rules(&["*.example.com:443", "10.0.0.0/8:443", "127.0.0.1:22"]);
        assert_eq!(
            usable(&r, &resolved),
            [sa("10.0.0.5:443"), sa("93.184.216.34:443")]
        );
    }
}
