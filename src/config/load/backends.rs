//! `[[backend]]`: the server pool (`servers`, plain or `{ address, weight }`), balancing,
//! retries, passive (`max_fails`) and active (`health`) checks, keep-alive, PROXY protocol, and
//! `tls` (read by `tls::backend_tls`).

use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use toml::de::DeValue;

use super::problems::Problems;
use super::spanned::{list, string, tables, Section, Val};
use super::tls::backend_tls;
use super::values::{address, count, duration};
use super::xref::Names;
use crate::config::types::{Backend, Balance, Health, SendProxy, Server, RETRIES_DEFAULT};
use crate::policy::sticky::HashKey;
use crate::policy::upstream::Address;

/// Bounds for a server's `weight`.
const WEIGHT_RANGE: RangeInclusive<i64> = 1..=1000;

pub(super) fn backends(
    v: Option<&Val<'_>>,
    base_dir: &Path,
    p: &mut Problems,
) -> (Vec<Backend>, Names) {
    let mut names = Names::new("backend");
    let mut out = Vec::new();
    for s in v.map(|v| tables(v, "[[backend]]", p)).unwrap_or_default() {
        if let Some(b) = backend(s, &mut names, base_dir, p) {
            out.push(b);
        }
    }
    (out, names)
}

fn backend(
    mut s: Section<'_, '_>,
    names: &mut Names,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<Backend> {
    let name = s.req("name", p, string);
    let servers = s.req("servers", p, |v, what, p| list(v, what, true, p, server));
    let balance = s.opt("balance", p, balance);
    let small = |v: &Val<'_>, what: &str, p: &mut Problems| count(v, what, 0..=100, p);
    let retries = s.opt("retries", p, small);
    let max_fails = s.opt("max_fails", p, |v, what, p| count(v, what, 1..=1000, p));
    let fail_window = s.opt("fail_window", p, duration);
    let fail_timeout = s.opt("fail_timeout", p, duration);
    let health = s.opt("health", p, health);
    let keepalive = s.opt("keepalive_per_server", p, keepalive_per_server);
    let send_proxy = s.opt("send_proxy", p, send_proxy);
    let tls_given = s.get("tls").is_some();
    let tls = s.opt("tls", p, |v, _, p| backend_tls(v, base_dir, p));
    let drain_spread = s.opt("drain_spread", p, duration);
    let hash_key = s.opt("hash_key", p, |v, what, p| {
        let text = string(v, what, p)?;
        HashKey::parse(text.v).map_err(|e| p.add(text.at, e)).ok()
    });
    let hash_key_at = s.get("hash_key").map(|v| v.span().start);
    let hash_key_given = hash_key_at.is_some();
    let sticky_cookie = s.opt("sticky_cookie", p, |v, what, p| {
        let text = string(v, what, p)?;
        let bad = text.v.is_empty()
            || text
                .v
                .bytes()
                .any(|b| !(b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)));
        if bad {
            p.add(
                text.at,
                format!(
                    "{what} must be a cookie name (letters, digits, -_.), found {:?}",
                    text.v
                ),
            );
            return None;
        }
        Some(text.v.to_string())
    });
    let sticky_secret = s.opt("sticky_secret", p, |v, what, p| {
        string(v, what, p).map(|t| t.v.to_string())
    });
    let at = s.at;
    s.finish(p);
    let needs_tls = servers
        .as_ref()
        .is_some_and(|ss: &Vec<Server>| ss.iter().any(|s| matches!(s.address, Address::Tls(_))));
    if balance == Some(Balance::Hash) && !hash_key_given {
        p.add(
            at,
            "balance = \"hash\" needs hash_key = \"cookie:NAME\" | \"query:NAME\" | \"header:NAME\" | \"path\"",
        );
    }
    if let Some(at) = hash_key_at.filter(|_| balance != Some(Balance::Hash)) {
        p.warn(at, "hash_key has no effect without balance = \"hash\"");
    }
    if needs_tls && !tls_given {
        p.add(
            at,
            "tls:// servers need tls = { ca_file = \"...\" } in their [[backend]]",
        );
    }
    // Record the name even when the servers are wrong, so references to it resolve.
    let name = name?;
    names.add(&name, p);
    let mut b = Backend::single(Address::Unix("/".into()), name.v.to_string());
    b.servers = servers?;
    b.implicit = false;
    b.retries = retries.map_or(RETRIES_DEFAULT, |n| n as u32);
    b.balance = balance.unwrap_or(Balance::RoundRobin);
    b.max_fails = max_fails.map_or(b.max_fails, |n| n as u32);
    b.fail_window = fail_window.unwrap_or(b.fail_window);
    b.fail_timeout = fail_timeout.unwrap_or(b.fail_timeout);
    b.health = health;
    b.keepalive_per_server = keepalive.unwrap_or(b.keepalive_per_server);
    b.send_proxy = send_proxy;
    b.tls = tls;
    b.drain_spread = drain_spread.unwrap_or(b.drain_spread);
    b.hash_key = hash_key;
    b.sticky_cookie = sticky_cookie.unwrap_or(b.sticky_cookie);
    b.sticky_secret = sticky_secret.unwrap_or(b.sticky_secret);
    // `tls://name:port`: the certificate is verified against that name unless `server_name`
    // says otherwise.
    if let Some(t) = b.tls.as_mut().filter(|t| t.server_name.is_none()) {
        t.server_name = b.servers.iter().find_map(|s| match &s.address {
            Address::Name {
                host, tls: true, ..
            } => Some(host.clone()),
            _ => None,
        });
    }
    Some(b)
}

/// `keepalive_per_server`: idle connections kept per server, or `"unlimited"`.
fn keepalive_per_server(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<usize> {
    if matches!(v.get_ref(), DeValue::String(_)) {
        return match string(v, what, p)?.v {
            "unlimited" => Some(usize::MAX),
            other => {
                let msg = format!("{what} must be a count or \"unlimited\", found {other:?}");
                p.add(v.span().start, msg);
                None
            }
        };
    }
    count(v, what, 0..=100_000, p)
}

/// `send_proxy = "v1" | "v2"`: the PROXY protocol header sent to the servers.
fn send_proxy(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<SendProxy> {
    let text = string(v, what, p)?;
    match text.v {
        "v1" => Some(SendProxy::V1),
        "v2" => Some(SendProxy::V2),
        other => {
            p.add(
                text.at,
                format!("{what} must be \"v1\" or \"v2\", found {other:?}"),
            );
            None
        }
    }
}

fn balance(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<Balance> {
    let s = string(v, what, p)?;
    match s.v {
        "round_robin" => Some(Balance::RoundRobin),
        "least_conn" => Some(Balance::LeastConn),
        "ip_hash" => Some(Balance::IpHash),
        "random_two" => Some(Balance::RandomTwo),
        "cookie" => Some(Balance::Cookie),
        "hash" => Some(Balance::Hash),
        other => {
            let msg = format!(
                "unknown balance {other:?}: expected \"round_robin\", \"least_conn\", \"ip_hash\", \"random_two\", \"cookie\" or \"hash\""
            );
            p.add(s.at, msg);
            None
        }
    }
}

/// `health = { interval = "2s", timeout = "1s", rise = 2, fall = 3, http_path = "/healthz" }`.
fn health(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<Health> {
    let mut s = Section::of(v, "\"health\"", p)?;
    let _ = what;
    let interval = s.opt("interval", p, duration);
    let timeout = s.opt("timeout", p, duration);
    let times = |v: &Val<'_>, what: &str, p: &mut Problems| count(v, what, 1..=100, p);
    let rise = s.opt("rise", p, times);
    let fall = s.opt("fall", p, times);
    let path = s.opt("http_path", p, string);
    s.finish(p);
    let http_path = match path {
        Some(path) if !path.v.starts_with('/') => {
            p.add(
                path.at,
                format!("\"http_path\" must start with '/', found {:?}", path.v),
            );
            return None;
        }
        Some(path) => Some(path.v.to_string()),
        None => None,
    };
    Some(Health {
        interval: interval.unwrap_or(Duration::from_secs(2)),
        timeout: timeout.unwrap_or(Duration::from_secs(1)),
        rise: rise.map_or(2, |n| n as u32),
        fall: fall.map_or(3, |n| n as u32),
        http_path,
    })
}

/// One `servers` entry: `"127.0.0.1:9001"` or `{ address = "127.0.0.1:9001", weight = 3 }`.
fn server(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<Server> {
    // The byte offset for now; `load_str` turns it into a line and column.
    let pos = (v.span().start, 0);
    if !matches!(v.get_ref(), DeValue::Table(_)) {
        return address(v, what, p).map(|address| Server {
            address,
            weight: 1,
            pos,
        });
    }
    let mut s = Section::of(v, "a \"servers\" entry", p)?;
    let at = s.get("address").map_or(pos, |v| (v.span().start, 0));
    let address = s.req("address", p, address);
    let weight = s.opt("weight", p, |v, what, p| count(v, what, WEIGHT_RANGE, p));
    s.finish(p);
    Some(Server {
        address: address?,
        weight: weight.map_or(1, |w| w as u32),
        pos: at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::testing::*;

    #[test]
    fn keepalive_per_server_defaults_to_unlimited() {
        let backend = |extra: &str| {
            let lines = [
                "[[backend]]",
                "name = \"b\"",
                "servers = [\"127.0.0.1:1\"]",
                extra,
            ];
            ok(&with(&lines)).0.backends[0].keepalive_per_server
        };
        assert_eq!(backend(""), usize::MAX);
        assert_eq!(backend("keepalive_per_server = \"unlimited\""), usize::MAX);
        assert_eq!(backend("keepalive_per_server = 0"), 0);
        assert_eq!(backend("keepalive_per_server = 64"), 64);
        let lines = with(&[
            "[[backend]]",
            "name = \"b\"",
            "servers = [\"127.0.0.1:1\"]",
            "keepalive_per_server = \"lots\"",
        ]);
        one_problem(&lines, 10, 24, "must be a count or \"unlimited\"");
    }

    #[test]
    fn sticky_balancing_keys() {
        let backend = |extra: &[&str]| {
            let mut lines = vec!["[[backend]]", "name = \"b\"", "servers = [\"127.0.0.1:1\"]"];
            lines.extend_from_slice(extra);
            ok(&with(&lines)).0.backends[0].clone()
        };
        let b = backend(&["balance = \"cookie\""]);
        assert_eq!(b.balance, Balance::Cookie);
        assert_eq!(
            (b.sticky_cookie.as_str(), b.sticky_secret.as_str()),
            ("rw_srv", "b")
        );
        let b = backend(&[
            "balance = \"hash\"",
            "hash_key = \"query:sid\"",
            "sticky_cookie = \"srv\"",
            "sticky_secret = \"s3cret\"",
        ]);
        assert_eq!(b.balance, Balance::Hash);
        assert_eq!(b.hash_key, Some(HashKey::Query("sid".into())));
        assert_eq!(
            (b.sticky_cookie.as_str(), b.sticky_secret.as_str()),
            ("srv", "s3cret")
        );
        let lines = with(&[
            "[[backend]]",
            "name = \"b\"",
            "servers = [\"127.0.0.1:1\"]",
            "balance = \"hash\"",
            "hash_key = \"host\"",
        ]);
        one_problem(&lines, 11, 12, "invalid hash_key \"host\"");
        let lines = with(&[
            "[[backend]]",
            "name = \"b\"",
            "servers = [\"127.0.0.1:1\"]",
            "balance = \"hash\"",
        ]);
        one_problem(&lines, 7, 1, "balance = \"hash\" needs hash_key");
        let lines = with(&[
            "[[backend]]",
            "name = \"b\"",
            "servers = [\"127.0.0.1:1\"]",
            "balance = \"cookie\"",
            "sticky_cookie = \"a b\"",
        ]);
        one_problem(&lines, 11, 17, "must be a cookie name");
        let (c, _dir) = ok(&with(&[
            "[[backend]]",
            "name = \"b\"",
            "servers = [\"127.0.0.1:1\"]",
            "hash_key = \"path\"",
        ]));
        let w: Vec<(usize, usize, &str)> = c
            .warnings
            .iter()
            .map(|w| (w.line, w.col, w.message.as_str()))
            .collect();
        assert_eq!(
            w,
            [(10, 12, "hash_key has no effect without balance = \"hash\"")]
        );
    }

    #[test]
    fn backend_pool_keys() {
        let (c, _dir) = ok(&with(&[
            "[timeouts]",
            "upstream_read = \"2s\"",
            "upstream_keepalive = \"3s\"",
            "send = \"7s\"",
            "[[backend]]",
            "name = \"b\"",
            "servers = [\"127.0.0.1:1\"]",
            "balance = \"ip_hash\"",
            "retries = 0",
            "max_fails = 5",
            "fail_window = \"20s\"",
            "fail_timeout = \"1m\"",
            "keepalive_per_server = 8",
            "health = { interval = \"500ms\", timeout = \"200ms\", rise = 1, fall = 2, http_path = \"/healthz\" }",
        ]));
        let b = &c.backends[0];
        assert_eq!((b.balance, b.retries, b.max_fails), (Balance::IpHash, 0, 5));
        assert_eq!(
            (b.fail_window, b.fail_timeout),
            (Duration::from_secs(20), Duration::from_secs(60))
        );
        assert_eq!(b.keepalive_per_server, 8);
        assert_eq!(
            (c.timeouts.upstream_read, c.timeouts.upstream_keepalive),
            (Duration::from_secs(2), Duration::from_secs(3))
        );
        assert_eq!(c.timeouts.send, Duration::from_secs(7));
        let h = Health {
            interval: Duration::from_millis(500),
            timeout: Duration::from_millis(200),
            rise: 1,
            fall: 2,
            http_path: Some("/healthz".into()),
        };
        assert_eq!(b.health, Some(h));
        let ps = problems(&with(&[
            "[[backend]]",
            "name = \"b\"",
            "servers = [\"127.0.0.1:1\"]",
            "balance = \"fastest\"",
            "health = { interval = \"2x\", http_path = \"healthz\" }",
        ]));
        let msgs: Vec<&str> = ps.iter().map(|p| p.2.as_str()).collect();
        assert!(
            msgs[0].starts_with("unknown balance \"fastest\""),
            "{msgs:?}"
        );
        assert!(msgs[1].starts_with("invalid duration \"2x\""), "{msgs:?}");
        assert!(
            msgs[2].starts_with("\"http_path\" must start with '/'"),
            "{msgs:?}"
        );
    }

    #[test]
    fn names_srv_drain_spread_and_the_tls_name_default() {
        let (c, _dir) = ok(&with(&[
            "[[backend]]",
            "name = \"b\"",
            "servers = [\"chat.internal:9001\", { address = \"srv://_chat._tcp.chat.internal\", weight = 2 }]",
            "drain_spread = \"5s\"",
        ]));
        let b = &c.backends[0];
        assert_eq!(b.servers[0].address.to_string(), "chat.internal:9001");
        assert_eq!(b.servers[0].pos, (9, 12));
        assert_eq!(
            b.servers[1].address.to_string(),
            "srv://_chat._tcp.chat.internal"
        );
        assert_eq!(b.servers[1].pos, (9, 46));
        assert_eq!(b.drain_spread, Duration::from_secs(5));
        let (c, dir) = ok(&with(&[
            "[[backend]]",
            "name = \"b\"",
            "servers = [\"127.0.0.1:1\"]",
        ]));
        assert_eq!(c.backends[0].drain_spread, Duration::from_secs(30));
        // `tls://name:port`: the certificate is checked against the name.
        let ca = dir.0.join("ca.pem");
        let pem = rcgen::generate_simple_self_signed(vec!["api.internal".to_string()])
            .unwrap()
            .cert
            .pem();
        std::fs::write(&ca, pem).unwrap();
        let tls = format!("tls = {{ ca_file = \"{}\" }}", ca.display());
        let (c, _dir) = ok(&with(&[
            "[[backend]]",
            "name = \"b\"",
            "servers = [\"tls://api.internal:443\"]",
            &tls,
        ]));
        let t = c.backends[0].tls.as_ref().unwrap();
        assert_eq!(t.server_name.as_deref(), Some("api.internal"));
    }

    #[test]
    fn inline_table_servers() {
        let (c, _dir) = ok(&with(&[
            "[[backend]]",
            "name = \"b\"",
            "servers = [{ address = \"[::1]:1\" }, { address = \"uds:///x.sock\", weight = 1000 }]",
        ]));
        assert_eq!(
            c.backends[0].servers[0].address,
            Address::parse("[::1]:1").unwrap()
        );
        assert_eq!(
            c.backends[0].servers[1].address,
            Address::Unix("/x.sock".into())
        );
        assert_eq!(c.backends[0].servers[1].weight, 1000);
        // Columns:     1         2         3         4         5
        //     12345678901234567890123456789012345678901234567890123456
        let ps = problems(&with(&[
            "[[backend]]",
            "name = \"b\"",
            "servers = [{ address = \"x\" }, { address = \"1.2.3.4:5\", weight = 0 }]",
            "servers2 = 1",
        ]));
        let got: Vec<_> = ps.iter().map(|(l, c, _)| (*l, *c)).collect();
        assert_eq!(got, [(9, 24), (9, 65), (10, 1)], "{ps:#?}");
        assert!(ps[0].2.contains("invalid address \"x\""), "{}", ps[0].2);
        assert_eq!(ps[1].2, "\"weight\" must be between 1 and 1000, found 0");
        assert!(
            ps[2]
                .2
                .starts_with("unknown key \"servers2\" in [[backend]]"),
            "{}",
            ps[2].2
        );
        one_problem(
            &with(&[
                "[[backend]]",
                "name = \"b\"",
                "servers = [{ address = \"1.2.3.4:5\", wieght = 2 }]",
            ]),
            9,
            37,
            "unknown key \"wieght\" in a \"servers\" entry; valid keys: address, weight",
        );
        one_problem(
            &with(&["[[backend]]", "name = \"b\"", "servers = [{ weight = 2 }]"]),
            9,
            12,
            "missing required key \"address\" in a \"servers\" entry",
        );
    }
}
