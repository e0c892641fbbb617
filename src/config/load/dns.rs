//! `[dns]`: the name servers that resolve server names (`servers`, default: those of
//! `/etc/resolv.conf`) and the bounds on a record's TTL (`min_ttl`, `max_ttl`).

use super::problems::Problems;
use super::spanned::{list, Section, Val};
use super::values::{duration, socket_addr};
use crate::config::types::Dns;

pub(super) fn dns(v: Option<&Val<'_>>, p: &mut Problems) -> Dns {
    let mut d = Dns::default();
    let Some(mut s) = v.and_then(|v| Section::of(v, "[dns]", p)) else {
        return d;
    };
    let servers = s.opt("servers", p, |v, what, p| {
        list(v, what, false, p, |v, what, p| {
            socket_addr(v, what, p).map(|a| a.v)
        })
    });
    let min_ttl = s.opt("min_ttl", p, duration);
    let max_at = s.get("max_ttl").map(|v| v.span().start);
    let max_ttl = s.opt("max_ttl", p, duration);
    s.finish(p);
    d.servers = servers.unwrap_or_default();
    d.min_ttl = min_ttl.unwrap_or(d.min_ttl);
    d.max_ttl = max_ttl.unwrap_or(d.max_ttl);
    if d.min_ttl.is_zero() {
        d.min_ttl = std::time::Duration::from_millis(100);
    }
    if let Some(at) = max_at.filter(|_| d.max_ttl < d.min_ttl) {
        p.add(at, "\"max_ttl\" must not be shorter than \"min_ttl\"");
    }
    d
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::load::testing::*;

    #[test]
    fn dns_section_and_defaults() {
        let (c, _dir) = ok(&with(&[]));
        assert!(c.dns.servers.is_empty());
        assert_eq!(
            (c.dns.min_ttl, c.dns.max_ttl),
            (Duration::from_secs(1), Duration::from_secs(300))
        );
        let (c, _dir) = ok(&with(&[
            "[dns]",
            "servers = [\"127.0.0.1:5353\"]",
            "min_ttl = \"2s\"",
            "max_ttl = \"1m\"",
        ]));
        assert_eq!(c.dns.servers, ["127.0.0.1:5353".parse().unwrap()]);
        assert_eq!(
            (c.dns.min_ttl, c.dns.max_ttl),
            (Duration::from_secs(2), Duration::from_secs(60))
        );
        let lines = with(&["[dns]", "min_ttl = \"10s\"", "max_ttl = \"5s\""]);
        one_problem(
            &lines,
            9,
            11,
            "\"max_ttl\" must not be shorter than \"min_ttl\"",
        );
    }
}
