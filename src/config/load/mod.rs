//! TOML text → validated [`Config`], with every problem reported at its line and column.
//!
//! The text is parsed into toml's spanned tree ([`DeTable`]) and walked by hand, so that all
//! problems are collected (serde would stop at the first) and each points at the offending
//! value, or at the key for unknown keys. A [`Section`] records every key it is asked for, so
//! adding a key to the language is one `s.opt(...)` / `s.req(...)` line: unknown-key detection
//! and the "valid keys" list follow from the lookups.
//!
//! This module owns the entry points (`load`, `load_str`) and the order in which the sections
//! are read (`walk`); the steps live in its children, which import one another by path and
//! never this module (no import circle):
//!
//! - `problems`: `Problem`, the problems found so far, byte offset → `LINE:COL`.
//! - `spanned`: walking the spanned tree: `Section` (known keys, unknown-key reports), arrays of
//!   tables, the base readers (string, boolean, integer, list) and the wrong-type message.
//! - `values`: typed readers with their messages: counts, cores, durations, sizes, addresses,
//!   URIs, domains, existing files.
//! - `xref`: names and the references between sections (duplicates, unknown names, the implicit
//!   backends of `address = ...` routes, a tcp listener without a route).
//! - `edge`: the edge-server keys of vhosts and routes (header rules, error pages, `auth`,
//!   CIDR lists, `requests_per_ip`, route `timeouts`, the `redirect` and `respond` handlers).
//! - `accounts`: `[runtime] user` and `group` looked up in the system's databases.
//! - `delivery`: the compression, precompressed and `cache_control` keys of vhosts and contexts.
//! - one module per section: `runtime` (`[runtime]`, `[timeouts]`, `[limits]`), `listeners`,
//!   `backends`, `vhosts` (with `[[vhost.websocket]]` and `[[vhost.context]]`), `tls` (the TLS
//!   keys of vhosts and backends, and `[tls]`), `streams` (`[[tcp_route]]`, `[[tls_passthrough]]`), `admin`
//!   (`[admin]`, `[log]`), `dns` (`[dns]`).
//!
//! The result is the immutable [`Config`] (`config::types`); the routing tables the cores read
//! are compiled from it by `config::routes`.
//!
//! Problems are sorted by byte offset (stably), so the order in which `walk` and the section
//! readers report them decides the order of problems at the same place: keep it.

mod accounts;
mod admin;
mod backends;
#[cfg(test)]
mod broken;
mod delivery;
mod dns;
mod edge;
mod listeners;
mod percore;
mod problems;
mod runtime;
mod spanned;
mod streams;
#[cfg(test)]
mod testing;
mod tls;
pub(crate) mod values;
mod vhosts;
mod xref;

use std::path::Path;

use toml::de::DeTable;

use self::admin::{admin, log};
use self::backends::backends;
use self::dns::dns;
use self::listeners::listeners;
use self::problems::{line_starts, position, Problems};
use self::runtime::{limits, runtime, timeouts};
use self::spanned::Section;
use self::streams::{passthroughs, tcp_routes};
use self::tls::tls_settings;
use self::values::absolute;
use self::vhosts::vhosts;
use self::xref::{tcp_listeners_routed, Refs};
use crate::config::types::Config;

pub use self::problems::Problem;

/// Reads and validates a config file. `Err` carries every problem found, sorted by position;
/// a config that loads carries its warnings (`Config::warnings`). Relative paths (`doc_root`)
/// resolve against the file's directory.
pub fn load(path: &Path) -> Result<Config, Vec<Problem>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Problem {
            line: 1,
            col: 1,
            message: format!("cannot read {}: {e}", path.display()),
        }]
    })?;
    let base_dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    load_str(&text, base_dir)
}

/// Validates config text. Relative paths resolve against `base_dir`.
pub fn load_str(text: &str, base_dir: &Path) -> Result<Config, Vec<Problem>> {
    let root = DeTable::parse(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        let (line, col) = position(text, &line_starts(text), at);
        vec![Problem {
            line,
            col,
            message: e.message().to_string(),
        }]
    })?;
    let mut p = Problems::new(text);
    let mut config = walk(root.get_ref(), &absolute(base_dir.to_path_buf()), &mut p);
    let starts = line_starts(text);
    for s in config.backends.iter_mut().flat_map(|b| &mut b.servers) {
        if s.pos != (0, 0) {
            s.pos = position(text, &starts, s.pos.0);
        }
    }
    if p.found.is_empty() {
        config.warnings = p.warnings(text);
        Ok(config)
    } else {
        Err(p.into_sorted(text))
    }
}

/// Reads the sections in a fixed order (later ones refer to earlier ones by name).
fn walk(root: &DeTable<'_>, base_dir: &Path, p: &mut Problems) -> Config {
    let mut s = Section::new(root, 0, "");
    let (runtime, core_listeners) = runtime(s.get("runtime"), base_dir, p);
    let timeouts = timeouts(s.get("timeouts"), p);
    let limits = limits(s.get("limits"), p);
    let (mut listeners, listener_names) = listeners(s.get("listener"), p);
    percore::listeners_accepted(&runtime, &core_listeners, &listeners, &listener_names, p);
    let (backends, backend_names) = backends(s.get("backend"), base_dir, p);
    let refs = Refs::new(&listener_names, &backend_names, &backends);
    let vhosts = s
        .get("vhost")
        .map(|v| vhosts(v, &refs, base_dir, p))
        .unwrap_or_default();
    let admin = s
        .get("admin")
        .and_then(|v| admin(v, &mut listeners, base_dir, p));
    let tcp_routes = s
        .get("tcp_route")
        .map(|v| tcp_routes(v, &listeners, &refs, p))
        .unwrap_or_default();
    tcp_listeners_routed(&listeners, &tcp_routes, p);
    let tls_passthrough = s
        .get("tls_passthrough")
        .map(|v| passthroughs(v, &listeners, &refs, p))
        .unwrap_or_default();
    let log = log(s.get("log"), base_dir, p);
    let tls = s
        .get("tls")
        .and_then(|v| tls_settings(v, base_dir, p))
        .unwrap_or_default();
    let dns = dns(s.get("dns"), p);
    s.finish(p);
    let mut backends = backends;
    backends.extend(refs.into_implicit());
    Config {
        runtime,
        timeouts,
        limits,
        listeners,
        backends,
        vhosts,
        admin,
        log,
        tcp_routes,
        tls_passthrough,
        tls,
        dns,
        warnings: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;
    use crate::config::load::testing::*;
    use crate::config::types::{Balance, RETRIES_DEFAULT};

    #[test]
    fn full_config_loads_with_its_values() {
        let (c, _dir) = ok(FULL);
        assert_eq!(
            (c.runtime.cores, c.runtime.pin, c.runtime.max_connections),
            (2, false, 1000)
        );
        assert_eq!(c.runtime.core_overrides.len(), 1);
        assert_eq!(c.runtime.core_overrides[0].id, 1);
        assert_eq!(c.runtime.core_overrides[0].max_connections, Some(500));
        assert_eq!(c.timeouts.header, Duration::from_millis(500));
        assert_eq!(c.timeouts.keepalive, Duration::from_secs(300));
        assert_eq!(c.timeouts.connect, Duration::from_secs(3));
        assert_eq!(c.timeouts.tunnel_idle, Duration::from_secs(7200));
        assert_eq!(c.limits.max_header_bytes, 64 * 1024);
        let listeners: Vec<_> = c
            .listeners
            .iter()
            .map(|l| (l.name.as_str(), l.address))
            .collect();
        let want: [(&str, SocketAddr); 2] = [
            ("main", "127.0.0.1:8080".parse().unwrap()),
            ("v6", "[::1]:8081".parse().unwrap()),
        ];
        assert_eq!(listeners, want);
        assert_eq!(c.backends.len(), 3, "two declared, one implicit");
        assert_eq!(c.backends[0].name, "chat");
        let chat: Vec<String> = c.backends[0]
            .servers
            .iter()
            .map(|s| s.address.to_string())
            .collect();
        assert_eq!(
            chat,
            ["127.0.0.1:9001", "[::1]:9002", "uds:///run/chat.sock"]
        );
        let api: Vec<String> = c.backends[1]
            .servers
            .iter()
            .map(|s| format!("{}*{}", s.address, s.weight))
            .collect();
        assert_eq!(api, ["127.0.0.1:7000*3", "127.0.0.1:7001*1"]);
        assert_eq!(c.backends[0].balance, Balance::RoundRobin);
        assert_eq!(c.backends[0].retries, RETRIES_DEFAULT);
    }

    #[test]
    fn every_problem_is_reported_in_order() {
        let ps = problems(&[
            "[runtime]",
            "cores = 0",
            "[timeouts]",
            "header = \"soon\"",
            "bogus = 1",
            "[[backend]]",
            "name = \"b\"",
            "servers = [\"nope\"]",
            "[[vhost]]",
            "name = \"v\"",
            "domains = [\"a.*.com\"]",
            "listeners = [\"main\"]",
            "[[vhost.websocket]]",
            "uri = \"ws\"",
            "backend = \"missing\"",
        ]);
        let got: Vec<_> = ps.iter().map(|(l, c, _)| (*l, *c)).collect();
        // Zero listeners (1:1) comes first; then each value, in file order.
        assert_eq!(
            got,
            [
                (1, 1),
                (2, 9),
                (4, 10),
                (5, 1),
                (8, 12),
                (11, 12),
                (12, 14),
                (14, 7),
                (15, 11)
            ],
            "{ps:#?}"
        );
        assert!(ps[0].2.contains("at least one [[listener]]"));
        assert!(ps[7].2.contains("must start with '/'"));
        assert_eq!(ps[8].2, "unknown backend \"missing\"");
    }

    #[test]
    fn syntax_errors_are_one_problem_at_their_span() {
        let ps = problems(&["[runtime]", "cores = 2", "pin = tru"]);
        assert_eq!(ps.len(), 1, "{ps:?}");
        assert_eq!((ps[0].0, ps[0].1), (3, 7));
        let ps = problems(&["[runtime]", "cores = 2", "cores = 3"]);
        assert_eq!(
            (ps.len(), ps[0].0, ps[0].1, ps[0].2.as_str()),
            (1, 3, 1, "duplicate key")
        );
    }

    #[test]
    fn load_reads_a_file_relative_to_its_directory() {
        let dir = TempDir::new();
        let path = dir.0.join("ringway.toml");
        let body = format!(
            "{}\n[[vhost]]\nname = \"v\"\ndomains = [\"*\"]\n",
            LISTENER.join("\n")
        );
        std::fs::write(&path, body).unwrap();
        let c = load(&path).unwrap();
        assert_eq!(c.vhosts[0].doc_root, dir.0.join("www"));
        let err = load(&dir.0.join("missing.toml")).unwrap_err();
        assert_eq!((err.len(), err[0].line, err[0].col), (1, 1, 1));
        assert!(
            err[0].message.starts_with("cannot read "),
            "{}",
            err[0].message
        );
    }
}
