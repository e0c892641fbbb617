//! TOML text → validated [`Config`], with every problem reported at its line and column.
//!
//! The text is parsed into toml's spanned tree ([`DeTable`]) and walked by hand, so that all
//! problems are collected (serde would stop at the first) and each points at the offending
//! value, or at the key for unknown keys. A [`Section`] records every key it is asked for, so
//! adding a key to the language is one `s.opt(...)` / `s.req(...)` line: unknown-key detection
//! and the "valid keys" list follow from the lookups.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::types::*;
use crate::policy::route::UriMatch;
use crate::policy::upstream::Address;

/// Upper bound for `[runtime] cores`.
const CORES_MAX: i64 = 1024;
/// Bounds for `[limits] max_header_bytes`.
const HEADER_BYTES_MIN: usize = 1024;
const HEADER_BYTES_MAX: usize = 1024 * 1024;
/// Longest accepted duration (365 days): keeps `Instant + timeout` far from overflow.
const DURATION_MAX: Duration = Duration::from_secs(365 * 24 * 3600);
/// Bounds for a server's `weight`.
const WEIGHT_RANGE: RangeInclusive<i64> = 1..=1000;

/// One problem found in a config file, with the 1-based line and column (in characters) of the
/// offending value, or of the key for unknown keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Reads and validates a config file. `Err` carries every problem found, sorted by position.
/// Relative paths (`doc_root`) resolve against the file's directory.
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
    let config = walk(root.get_ref(), &absolute(base_dir.to_path_buf()), &mut p);
    if p.found.is_empty() {
        Ok(config)
    } else {
        Err(p.into_sorted(text))
    }
}

// ---------------------------------------------------------------------------------------------
// The language, section by section.
// ---------------------------------------------------------------------------------------------

fn walk(root: &DeTable<'_>, base_dir: &Path, p: &mut Problems) -> Config {
    let mut s = Section::new(root, 0, "");
    let runtime = runtime(s.get("runtime"), base_dir, p);
    let timeouts = timeouts(s.get("timeouts"), p);
    let limits = limits(s.get("limits"), p);
    let (mut listeners, listener_names) = listeners(s.get("listener"), p);
    let (backends, backend_names) = backends(s.get("backend"), base_dir, p);
    let refs = Refs {
        listeners: &listener_names,
        backends: &backend_names,
        index: backends
            .iter()
            .enumerate()
            .map(|(i, b)| (b.name.clone(), i))
            .collect(),
        implicit: RefCell::new(Vec::new()),
        declared: backends.len(),
    };
    let vhosts = s
        .get("vhost")
        .map(|v| vhosts(v, &refs, base_dir, p))
        .unwrap_or_default();
    let admin = s.get("admin").and_then(|v| admin(v, &mut listeners, p));
    let tcp_routes = s
        .get("tcp_route")
        .map(|v| tcp_routes(v, &listeners, &refs, p))
        .unwrap_or_default();
    for (i, l) in listeners.iter().enumerate() {
        if l.mode == ListenerMode::Tcp && !tcp_routes.iter().any(|r| r.listener == i) {
            p.add(
                0,
                format!(
                    "listener {:?} has mode = \"tcp\" but no [[tcp_route]]",
                    l.name
                ),
            );
        }
    }
    let tls_passthrough = s
        .get("tls_passthrough")
        .map(|v| passthroughs(v, &listeners, &refs, p))
        .unwrap_or_default();
    let log = log(s.get("log"), base_dir, p);
    s.finish(p);
    let mut backends = backends;
    backends.extend(refs.implicit.into_inner());
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
    }
}

/// A `listener = "<name>"` key, resolved to an index; `check` says what is wrong with it.
fn listener_ref(
    s: &mut Section<'_, '_>,
    listeners: &[Listener],
    p: &mut Problems,
    check: impl Fn(&Listener) -> Option<&'static str>,
) -> Option<usize> {
    s.req("listener", p, |v, what, p| {
        let name = string(v, what, p)?;
        let Some(i) = listeners.iter().position(|l| l.name == name.v) else {
            p.add(name.at, format!("unknown listener {:?}", name.v));
            return None;
        };
        if let Some(problem) = check(&listeners[i]) {
            p.add(name.at, format!("listener {:?} {problem}", name.v));
            return None;
        }
        Some(i)
    })
}

fn backend_ref(s: &mut Section<'_, '_>, refs: &Refs<'_>, p: &mut Problems) -> Option<usize> {
    let name = s.req("backend", p, |v, what, p| {
        reference(v, what, refs.backends, p)
    })?;
    refs.index.get(&name).copied()
}

/// `[[tcp_route]] listener = "...", backend = "..."`: one per `mode = "tcp"` listener.
fn tcp_routes(
    v: &Val<'_>,
    listeners: &[Listener],
    refs: &Refs<'_>,
    p: &mut Problems,
) -> Vec<TcpRoute> {
    let mut out: Vec<TcpRoute> = Vec::new();
    for mut s in tables(v, "[[tcp_route]]", p) {
        let at = s.at;
        let listener = listener_ref(&mut s, listeners, p, |l| {
            (l.mode != ListenerMode::Tcp).then_some("needs mode = \"tcp\" for a [[tcp_route]]")
        });
        let backend = backend_ref(&mut s, refs, p);
        s.finish(p);
        let (Some(listener), Some(backend)) = (listener, backend) else {
            continue;
        };
        if out.iter().any(|r| r.listener == listener) {
            p.add(
                at,
                format!(
                    "listener {:?} has a [[tcp_route]] already",
                    listeners[listener].name
                ),
            );
            continue;
        }
        out.push(TcpRoute { listener, backend });
    }
    out
}

/// `[[tls_passthrough]] listener = "...", sni = [...], backend = "..."` on TLS listeners.
fn passthroughs(
    v: &Val<'_>,
    listeners: &[Listener],
    refs: &Refs<'_>,
    p: &mut Problems,
) -> Vec<Passthrough> {
    let mut out = Vec::new();
    for mut s in tables(v, "[[tls_passthrough]]", p) {
        let listener = listener_ref(&mut s, listeners, p, |l| {
            (!l.tls).then_some("needs tls = true for [[tls_passthrough]]")
        });
        let sni = s.req("sni", p, |v, what, p| list(v, what, true, p, domain));
        let backend = backend_ref(&mut s, refs, p);
        s.finish(p);
        if let (Some(listener), Some(sni), Some(backend)) = (listener, sni, backend) {
            out.push(Passthrough {
                listener,
                sni,
                backend,
            });
        }
    }
    out
}

/// `[admin] listener = "<name>", allow = ["127.0.0.1/32", "::1/128"]` (allow defaults to loopback).
fn admin(v: &Val<'_>, listeners: &mut [Listener], p: &mut Problems) -> Option<Admin> {
    let mut s = Section::of(v, "[admin]", p)?;
    let at = s.at;
    let listener = s.req("listener", p, |v, what, p| {
        let name = string(v, what, p)?;
        let found = listeners.iter().position(|l| l.name == name.v);
        if found.is_none() {
            p.add(name.at, format!("unknown listener {:?}", name.v));
        }
        found
    });
    let allow = s.opt("allow", p, |v, what, p| {
        list(v, what, false, p, |v, what, p| {
            let text = string(v, what, p)?;
            match text.v.parse::<crate::policy::cidr::Cidr>() {
                Ok(c) => Some(c),
                Err(e) => {
                    p.add(text.at, format!("{what}: {e}"));
                    None
                }
            }
        })
    });
    s.finish(p);
    let loopback = || {
        ["127.0.0.1/32", "::1/128"]
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect()
    };
    let listener = listener?;
    // The admin endpoint (metrics, dashboard, live feed) speaks HTTP/1.1 only: its TLS
    // listener offers http/1.1 alone, and h2c is refused.
    let l = &mut listeners[listener];
    if l.http2 {
        p.add(
            at,
            format!(
                "the [admin] listener {:?} serves HTTP/1.1 only: remove http2 = true",
                l.name
            ),
        );
    }
    l.alpn = vec!["http/1.1".into()];
    Some(Admin {
        listener,
        allow: allow.unwrap_or_else(loopback),
    })
}

/// `[log] access = "off" | "stderr" | "/path/file"`, `access_format = "combined" | "json"`.
fn log(v: Option<&Val<'_>>, base_dir: &Path, p: &mut Problems) -> Log {
    let mut l = Log {
        access: AccessTarget::Off,
        access_format: AccessFormat::Combined,
    };
    let Some(mut s) = v.and_then(|v| Section::of(v, "[log]", p)) else {
        return l;
    };
    let access = s.opt("access", p, |v, what, p| {
        let text = string(v, what, p)?;
        Some(match text.v {
            "off" => AccessTarget::Off,
            "stderr" => AccessTarget::Stderr,
            "" => {
                p.add(
                    text.at,
                    format!("{what} must be \"off\", \"stderr\" or a file path"),
                );
                return None;
            }
            path => AccessTarget::File(absolute(base_dir.join(path))),
        })
    });
    let format = s.opt("access_format", p, |v, what, p| {
        let text = string(v, what, p)?;
        match text.v {
            "combined" => Some(AccessFormat::Combined),
            "json" => Some(AccessFormat::Json),
            other => {
                let msg = format!("{what} must be \"combined\" or \"json\", found {other:?}");
                p.add(text.at, msg);
                None
            }
        }
    });
    s.finish(p);
    if let Some(AccessTarget::File(path)) = &access {
        let dir_ok = path.parent().is_some_and(|d| d.is_dir());
        if !dir_ok {
            p.add(
                v.map_or(0, |v| v.span().start),
                format!(
                    "[log] access: directory of {} does not exist",
                    path.display()
                ),
            );
        }
    }
    l.access = access.unwrap_or(l.access);
    l.access_format = format.unwrap_or(l.access_format);
    l
}

fn runtime(v: Option<&Val<'_>>, base_dir: &Path, p: &mut Problems) -> Runtime {
    let mut r = Runtime {
        cores: auto_cores(),
        pin: true,
        max_connections: CONNECTIONS_PER_CORE_MAX_DEFAULT,
        core_overrides: Vec::new(),
        pid_file: None,
    };
    let Some(mut s) = v.and_then(|v| Section::of(v, "[runtime]", p)) else {
        return r;
    };
    let cores_given = s.get("cores").is_some();
    let cores = s.opt("cores", p, cores);
    r.cores = cores.unwrap_or(r.cores);
    r.pin = s.opt("pin", p, boolean).unwrap_or(r.pin);
    r.max_connections = s
        .opt("max_connections", p, positive)
        .unwrap_or(r.max_connections);
    let overrides = s.get("core");
    r.pid_file = s.opt("pid_file", p, |v, what, p| {
        string(v, what, p).map(|t| absolute(base_dir.join(t.v)))
    });
    s.finish(p);
    // When `cores` itself is wrong, ids cannot be checked against it.
    let known_cores = if cores_given { cores } else { Some(r.cores) };
    if let Some(v) = overrides {
        r.core_overrides = core_overrides(v, known_cores, p);
    }
    r
}

fn core_overrides(v: &Val<'_>, cores: Option<usize>, p: &mut Problems) -> Vec<CoreOverride> {
    let mut seen: HashMap<i64, usize> = HashMap::new();
    let mut out = Vec::new();
    for mut s in tables(v, "[[runtime.core]]", p) {
        let id = s.req("id", p, integer);
        let max_connections = s.opt("max_connections", p, positive);
        s.finish(p);
        let Some(id) = id else { continue };
        if let Some(id) = core_id(&id, cores, &mut seen, p) {
            out.push(CoreOverride {
                id,
                max_connections,
            });
        }
    }
    out
}

/// Checks one `[[runtime.core]] id`: in range and not repeated.
fn core_id(
    id: &At<i64>,
    cores: Option<usize>,
    seen: &mut HashMap<i64, usize>,
    p: &mut Problems,
) -> Option<usize> {
    if let Some(first) = seen.get(&id.v) {
        let line = p.line(*first);
        p.add(
            id.at,
            format!("duplicate core id {} (first at line {line})", id.v),
        );
        return None;
    }
    seen.insert(id.v, id.at);
    let ok = usize::try_from(id.v).ok();
    match (ok, cores) {
        (Some(n), Some(cores)) if n < cores => Some(n),
        (Some(n), None) => Some(n),
        (_, Some(cores)) => {
            let msg = format!(
                "core id {} is out of range: ids go from 0 to {}",
                id.v,
                cores - 1
            );
            p.add(id.at, msg);
            None
        }
        (None, None) => {
            p.add(id.at, format!("core id {} must not be negative", id.v));
            None
        }
    }
}

fn timeouts(v: Option<&Val<'_>>, p: &mut Problems) -> Timeouts {
    let mut t = Timeouts {
        header: HEADER_TIMEOUT_DEFAULT,
        keepalive: KEEPALIVE_TIMEOUT_DEFAULT,
        connect: CONNECT_TIMEOUT_DEFAULT,
        tunnel_idle: TUNNEL_IDLE_TIMEOUT_DEFAULT,
        upstream_read: UPSTREAM_READ_TIMEOUT_DEFAULT,
        upstream_keepalive: UPSTREAM_KEEPALIVE_TIMEOUT_DEFAULT,
        drain: DRAIN_TIMEOUT_DEFAULT,
        send: SEND_TIMEOUT_DEFAULT,
    };
    let Some(mut s) = v.and_then(|v| Section::of(v, "[timeouts]", p)) else {
        return t;
    };
    t.header = s.opt("header", p, duration).unwrap_or(t.header);
    t.keepalive = s.opt("keepalive", p, duration).unwrap_or(t.keepalive);
    t.connect = s.opt("connect", p, duration).unwrap_or(t.connect);
    t.tunnel_idle = s.opt("tunnel_idle", p, duration).unwrap_or(t.tunnel_idle);
    t.upstream_read = s
        .opt("upstream_read", p, duration)
        .unwrap_or(t.upstream_read);
    t.upstream_keepalive = s
        .opt("upstream_keepalive", p, duration)
        .unwrap_or(t.upstream_keepalive);
    t.drain = s.opt("drain", p, duration).unwrap_or(t.drain);
    t.send = s.opt("send", p, duration).unwrap_or(t.send);
    s.finish(p);
    t
}

fn limits(v: Option<&Val<'_>>, p: &mut Problems) -> Limits {
    let mut l = Limits {
        max_header_bytes: HEADER_BYTES_MAX_DEFAULT,
        max_connections_per_ip: None,
        upgrades_per_ip: None,
        max_concurrent_streams: MAX_CONCURRENT_STREAMS_DEFAULT,
    };
    let Some(mut s) = v.and_then(|v| Section::of(v, "[limits]", p)) else {
        return l;
    };
    let header_bytes = |v: &Val<'_>, what: &str, p: &mut Problems| {
        size(v, what, HEADER_BYTES_MIN..=HEADER_BYTES_MAX, p)
    };
    l.max_header_bytes = s
        .opt("max_header_bytes", p, header_bytes)
        .unwrap_or(l.max_header_bytes);
    l.max_connections_per_ip = s
        .opt("max_connections_per_ip", p, |v, what, p| {
            count(v, what, 1..=i64::from(u32::MAX), p)
        })
        .map(|n| n as u32);
    if let Some(n) = s.opt("max_concurrent_streams", p, |v, what, p| {
        count(v, what, 1..=65535, p)
    }) {
        l.max_concurrent_streams = n as u32;
    }
    l.upgrades_per_ip = s.opt("upgrades_per_ip", p, |v, what, p| {
        let text = string(v, what, p)?;
        match crate::policy::limits::Rate::parse(text.v, parse_duration) {
            Ok(r) => Some(r),
            Err(e) => {
                p.add(text.at, format!("{what}: {e}"));
                None
            }
        }
    });
    s.finish(p);
    l
}

fn listeners(v: Option<&Val<'_>>, p: &mut Problems) -> (Vec<Listener>, Names) {
    let mut names = Names::new("listener");
    let mut addresses: HashMap<SocketAddr, String> = HashMap::new();
    let mut out = Vec::new();
    for mut s in v.map(|v| tables(v, "[[listener]]", p)).unwrap_or_default() {
        let name = s.req("name", p, string);
        let address = s.req("address", p, socket_addr);
        let tls = s.opt("tls", p, boolean).unwrap_or(false);
        let proxy_protocol = s.opt("proxy_protocol", p, boolean).unwrap_or(false);
        let forward_proxy = s.opt("forward_proxy", p, boolean).unwrap_or(false);
        let mode = s.opt("mode", p, |v, what, p| {
            let text = string(v, what, p)?;
            match text.v {
                "http" => Some(ListenerMode::Http),
                "tcp" => Some(ListenerMode::Tcp),
                other => {
                    p.add(
                        text.at,
                        format!("{what} must be \"http\" or \"tcp\", found {other:?}"),
                    );
                    None
                }
            }
        });
        let alpn = s.opt("alpn", p, |v, what, p| {
            list(v, what, true, p, |v, what, p| {
                let t = string(v, what, p)?;
                match t.v {
                    "h2" | "http/1.1" => Some(t.v.to_string()),
                    other => {
                        p.add(
                            t.at,
                            format!("{what} must be \"h2\" or \"http/1.1\", found {other:?}"),
                        );
                        None
                    }
                }
            })
        });
        let http2 = s.opt("http2", p, boolean).unwrap_or(false);
        if alpn.is_some() && !tls {
            p.add(s.at, "\"alpn\" applies to tls = true listeners (a plain listener takes http2 = true for h2c)");
        }
        if http2 && tls {
            p.add(
                s.at,
                "\"http2\" applies to plain listeners (h2c); a TLS listener offers h2 by \"alpn\"",
            );
        }
        if mode == Some(ListenerMode::Tcp) && tls {
            p.add(s.at, "a mode = \"tcp\" listener forwards raw bytes: it cannot have tls = true (use [[tls_passthrough]] on a TLS listener)");
        }
        s.finish(p);
        // Record the name even when the address is wrong, so references to it resolve.
        let Some(name) = name else { continue };
        names.add(&name, p);
        let Some(address) = address else { continue };
        if let Some(other) = addresses.insert(address.v, name.v.to_string()) {
            let msg = format!(
                "address {} is already used by listener {other:?}",
                address.v
            );
            p.add(address.at, msg);
        }
        out.push(Listener {
            name: name.v.to_string(),
            address: address.v,
            tls,
            proxy_protocol,
            mode: mode.unwrap_or(ListenerMode::Http),
            forward_proxy,
            alpn: alpn.unwrap_or_else(|| vec!["h2".into(), "http/1.1".into()]),
            http2,
        });
    }
    // A wrongly typed `listener` was reported already; an absent or empty one is reported here.
    let empty = v.is_none_or(|v| matches!(v.get_ref(), DeValue::Array(a) if a.is_empty()));
    if empty {
        p.add(0, "at least one [[listener]] is required");
    }
    (out, names)
}

fn backends(v: Option<&Val<'_>>, base_dir: &Path, p: &mut Problems) -> (Vec<Backend>, Names) {
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
    let keepalive = s.opt("keepalive_per_server", p, |v, what, p| {
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
    });
    let send_proxy = s.opt("send_proxy", p, |v, what, p| {
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
    });
    let tls_given = s.get("tls").is_some();
    let tls = s.opt("tls", p, |v, _, p| backend_tls(v, base_dir, p));
    let at = s.at;
    s.finish(p);
    let needs_tls = servers
        .as_ref()
        .is_some_and(|ss: &Vec<Server>| ss.iter().any(|s| matches!(s.address, Address::Tls(_))));
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
    Some(b)
}

/// `tls = { ca_file = "...", server_name = "..." }` of a backend.
fn backend_tls(v: &Val<'_>, base_dir: &Path, p: &mut Problems) -> Option<BackendTls> {
    let mut s = Section::of(v, "\"tls\"", p)?;
    let file = |v: &Val<'_>, what: &str, p: &mut Problems| existing_file(v, what, base_dir, p);
    let ca_file = s.req("ca_file", p, file);
    let server_name = s.opt("server_name", p, string).map(|n| n.v.to_string());
    s.finish(p);
    Some(BackendTls {
        ca_file: ca_file?,
        server_name,
    })
}

fn balance(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<Balance> {
    let s = string(v, what, p)?;
    match s.v {
        "round_robin" => Some(Balance::RoundRobin),
        "least_conn" => Some(Balance::LeastConn),
        "ip_hash" => Some(Balance::IpHash),
        "random_two" => Some(Balance::RandomTwo),
        other => {
            let msg = format!(
                "unknown balance {other:?}: expected \"round_robin\", \"least_conn\", \"ip_hash\" or \"random_two\""
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
    if !matches!(v.get_ref(), DeValue::Table(_)) {
        return address(v, what, p).map(|address| Server { address, weight: 1 });
    }
    let mut s = Section::of(v, "a \"servers\" entry", p)?;
    let address = s.req("address", p, address);
    let weight = s.opt("weight", p, |v, what, p| count(v, what, WEIGHT_RANGE, p));
    s.finish(p);
    Some(Server {
        address: address?,
        weight: weight.map_or(1, |w| w as u32),
    })
}

/// Names that `[[vhost]]` entries may refer to.
struct Refs<'a> {
    listeners: &'a Names,
    backends: &'a Names,
    /// Declared backend name → index in `Config::backends`.
    index: HashMap<String, usize>,
    /// One-server backends made for `address = ...` entries, indexed after the declared ones.
    implicit: RefCell<Vec<Backend>>,
    declared: usize,
}

impl Refs<'_> {
    /// The backend index for an `address = ...` route, sharing one per distinct address.
    fn implicit_backend(&self, address: Address, text: &str) -> usize {
        let mut implicit = self.implicit.borrow_mut();
        if let Some(i) = implicit.iter().position(|b| b.name == text) {
            return self.declared + i;
        }
        implicit.push(Backend::single(address, text.to_string()));
        self.declared + implicit.len() - 1
    }
}

fn vhosts(v: &Val<'_>, refs: &Refs<'_>, base_dir: &Path, p: &mut Problems) -> Vec<VHost> {
    let mut names = Names::new("vhost");
    let mut out = Vec::new();
    for s in tables(v, "[[vhost]]", p) {
        if let Some(vhost) = vhost(s, refs, base_dir, &mut names, p) {
            out.push(vhost);
        }
    }
    out
}

fn vhost(
    mut s: Section<'_, '_>,
    refs: &Refs<'_>,
    base_dir: &Path,
    names: &mut Names,
    p: &mut Problems,
) -> Option<VHost> {
    let name = s.req("name", p, string);
    let domains = s.req("domains", p, |v, what, p| list(v, what, true, p, domain));
    let listener_ref =
        |v: &Val<'_>, what: &str, p: &mut Problems| reference(v, what, refs.listeners, p);
    let listeners = s.opt("listeners", p, |v, what, p| {
        list(v, what, false, p, listener_ref)
    });
    let doc_root = doc_root(s.get("doc_root"), base_dir, p);
    let tls = s.opt("tls", p, |v, what, p| vhost_tls(v, what, base_dir, p));
    let websockets = s.get("websocket");
    let contexts = s.get("context");
    s.finish(p);
    let websockets = websockets.map(|v| tables(v, "[[vhost.websocket]]", p));
    let websockets = websockets.unwrap_or_default().into_iter();
    let websockets = websockets.filter_map(|s| websocket(s, refs, p)).collect();
    let contexts = contexts.map(|v| tables(v, "[[vhost.context]]", p));
    let contexts = contexts.unwrap_or_default().into_iter();
    let contexts = contexts
        .filter_map(|s| context(s, refs, base_dir, p))
        .collect();
    let name = name?;
    names.add(&name, p);
    Some(VHost {
        name: name.v.to_string(),
        domains: domains?,
        listeners: listeners.unwrap_or_default(),
        doc_root,
        websockets,
        contexts,
        tls,
    })
}

/// `[vhost.tls]`: `cert` and `key` files (checked to exist), and optional `[vhost.tls.ocsp]`.
fn vhost_tls(v: &Val<'_>, what: &str, base_dir: &Path, p: &mut Problems) -> Option<VHostTls> {
    let _ = what;
    let mut s = Section::of(v, "[vhost.tls]", p)?;
    let file = |v: &Val<'_>, what: &str, p: &mut Problems| existing_file(v, what, base_dir, p);
    let cert = s.req("cert", p, file);
    let key = s.req("key", p, file);
    let ocsp = s.opt("ocsp", p, |v, _, p| ocsp(v, base_dir, p)).flatten();
    s.finish(p);
    Some(VHostTls {
        cert: cert?,
        key: key?,
        ocsp,
    })
}

/// `[vhost.tls.ocsp]`; `None` when `enabled = false`.
fn ocsp(v: &Val<'_>, base_dir: &Path, p: &mut Problems) -> Option<Option<Ocsp>> {
    let mut s = Section::of(v, "[vhost.tls.ocsp]", p)?;
    let enabled = s.opt("enabled", p, boolean).unwrap_or(true);
    let responder = s.opt("responder", p, string).and_then(|r| {
        if r.v.starts_with("http://") {
            Some(r.v.to_string())
        } else {
            p.add(
                r.at,
                format!("\"responder\" must be an http:// URL, found {:?}", r.v),
            );
            None
        }
    });
    let file = |v: &Val<'_>, what: &str, p: &mut Problems| existing_file(v, what, base_dir, p);
    let ca_file = s.opt("ca_file", p, file);
    let cache_dir = s
        .opt("cache_dir", p, string)
        .map(|d| absolute(base_dir.join(d.v)));
    let retry_min = s
        .opt("retry_min", p, duration)
        .unwrap_or(Duration::from_secs(60));
    let retry_max = s
        .opt("retry_max", p, duration)
        .unwrap_or(Duration::from_secs(3600));
    s.finish(p);
    Some(enabled.then_some(Ocsp {
        responder,
        ca_file,
        cache_dir,
        retry_min,
        retry_max: retry_max.max(retry_min),
    }))
}

/// A path (relative to the config file) that must name an existing file.
fn existing_file(v: &Val<'_>, what: &str, base_dir: &Path, p: &mut Problems) -> Option<PathBuf> {
    let s = string(v, what, p)?;
    let path = absolute(base_dir.join(s.v));
    if !path.is_file() {
        p.add(s.at, format!("{} is not a readable file", path.display()));
        return None;
    }
    Some(path)
}

/// `doc_root`, joined to `base_dir`; default `base_dir/www`. A path that exists but is not a
/// directory is a problem; a missing one is not (a WebSocket-only site needs none; static
/// requests then answer 404, and the start-up log warns).
fn doc_root(v: Option<&Val<'_>>, base_dir: &Path, p: &mut Problems) -> PathBuf {
    let (path, at) = match v.map(|v| string(v, "\"doc_root\"", p)) {
        Some(Some(s)) => (base_dir.join(s.v), s.at),
        Some(None) | None => return absolute(base_dir.join("www")),
    };
    let path = absolute(path);
    if path.exists() && !path.is_dir() {
        p.add(
            at,
            format!("doc_root {} is not a directory", path.display()),
        );
    }
    path
}

fn websocket(mut s: Section<'_, '_>, refs: &Refs<'_>, p: &mut Problems) -> Option<WebSocketRoute> {
    let at = s.at;
    let uri = s.req("uri", p, uri);
    let backend = s.get("backend");
    let address_value = s.get("address");
    let origins = s.opt("origins", p, |v, what, p| {
        list(v, what, true, p, |v, what, p| {
            let text = string(v, what, p)?;
            match crate::protocol::ws::check_origin_pattern(text.v) {
                Ok(()) => Some(text.v.to_ascii_lowercase()),
                Err(e) => {
                    p.add(text.at, format!("{what}: {e}"));
                    None
                }
            }
        })
    });
    let allow_missing_origin = s.opt("allow_missing_origin", p, boolean);
    let tunnel = tunnel_mode(&mut s, p);
    s.finish(p);
    let backend = match (backend, address_value) {
        (Some(b), None) => {
            let name = reference(b, "\"backend\"", refs.backends, p)?;
            *refs.index.get(&name)?
        }
        (None, Some(a)) => {
            let text = string(a, "\"address\"", p)?.v.to_string();
            let address = address(a, "\"address\"", p)?;
            refs.implicit_backend(address, &text)
        }
        _ => {
            let msg = "a [[vhost.websocket]] entry needs exactly one of \"backend\" or \"address\"";
            p.add(at, msg);
            return None;
        }
    };
    Some(WebSocketRoute {
        uri: uri?,
        backend,
        origins: origins.unwrap_or_default(),
        allow_missing_origin: allow_missing_origin.unwrap_or(false),
        tunnel,
    })
}

/// `mode` and the keys that go with `mode = "tunnel"` in a `[[vhost.websocket]]` entry.
fn tunnel_mode(s: &mut Section<'_, '_>, p: &mut Problems) -> Option<TunnelMode> {
    let at = s.at;
    let tunnel = s
        .opt("mode", p, |v, what, p| {
            let text = string(v, what, p)?;
            match text.v {
                "proxy" => Some(false),
                "tunnel" => Some(true),
                other => {
                    p.add(
                        text.at,
                        format!("{what} must be \"proxy\" or \"tunnel\", found {other:?}"),
                    );
                    None
                }
            }
        })
        .unwrap_or(false);
    let text = s.opt("frame", p, |v, what, p| {
        let t = string(v, what, p)?;
        match t.v {
            "text" => Some(true),
            "binary" => Some(false),
            other => {
                p.add(
                    t.at,
                    format!("{what} must be \"text\" or \"binary\", found {other:?}"),
                );
                None
            }
        }
    });
    let subprotocols = s.opt("subprotocols", p, |v, what, p| {
        list(v, what, false, p, |v, what, p| {
            let t = string(v, what, p)?;
            // A token (RFC 6455 §4.1): visible ASCII without separators.
            let token = !t.v.is_empty()
                && t.v
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
            if !token {
                p.add(
                    t.at,
                    format!("{what} must be a token (like \"chat.v1\"), found {:?}", t.v),
                );
                return None;
            }
            Some(t.v.to_string())
        })
    });
    let ping_interval = s.opt("ping_interval", p, |v, what, p| {
        let t = string(v, what, p)?;
        if matches!(t.v, "0" | "0s" | "0ms") {
            return Some(None);
        }
        parse_duration(t.v)
            .map_err(|e| p.add(t.at, e))
            .ok()
            .map(Some)
    });
    let max_message = s.opt("max_message", p, |v, what, p| {
        size(v, what, 1..=256 * 1024 * 1024, p)
    });
    if !tunnel {
        let given = [
            ("frame", text.is_some()),
            ("subprotocols", subprotocols.is_some()),
            ("ping_interval", ping_interval.is_some()),
            ("max_message", max_message.is_some()),
        ];
        for (key, _) in given.iter().filter(|(_, g)| *g) {
            p.add(at, format!("\"{key}\" applies to mode = \"tunnel\" only"));
        }
        return None;
    }
    Some(TunnelMode {
        text: text.unwrap_or(true),
        subprotocols: subprotocols.unwrap_or_default(),
        ping_interval: ping_interval.unwrap_or(Some(TUNNEL_PING_INTERVAL_DEFAULT)),
        max_message: max_message.unwrap_or(TUNNEL_MAX_MESSAGE_DEFAULT),
    })
}

fn context(
    mut s: Section<'_, '_>,
    refs: &Refs<'_>,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<ContextRoute> {
    let at = s.at;
    let uri = s.req("uri", p, uri);
    let handler_name = s.req("handler", p, string);
    let backend = s.get("backend");
    let host = s.opt("host", p, string).map(|h| h.v.to_string());
    let allow_value = s.get("allow");
    let allow = s.opt("allow", p, |v, what, p| {
        list(v, what, true, p, |v, what, p| {
            let text = string(v, what, p)?;
            crate::policy::connect::Rule::parse(text.v)
                .map_err(|e| p.add(text.at, format!("{what}: {e}")))
                .ok()
        })
    });
    let auth = s.opt("auth", p, |v, what, p| connect_auth(v, what, base_dir, p));
    s.finish(p);
    let is_connect = handler_name.as_ref().is_some_and(|h| h.v == "connect");
    if !is_connect && (allow_value.is_some() || auth.is_some()) {
        p.add(
            at,
            "\"allow\" and \"auth\" are only for handler = \"connect\"",
        );
    }
    let handler = if is_connect {
        if allow_value.is_none() {
            p.add(
                at,
                "handler \"connect\" needs an \"allow\" list (HOST:PORT entries)",
            );
        }
        Some(Handler::Connect {
            allow: allow?,
            users: auth.flatten(),
        })
    } else {
        handler(handler_name?, backend, at, refs, p)
    };
    let handler = match handler? {
        Handler::Proxy { backend, .. } => Handler::Proxy { backend, host },
        other => other,
    };
    Some(ContextRoute { uri: uri?, handler })
}

/// `auth = { users_file = "..." }`: the file read and checked now (a reload reads it again).
fn connect_auth(
    v: &Val<'_>,
    what: &str,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<Option<Vec<(String, String)>>> {
    let _ = what;
    let mut s = Section::of(v, "auth", p)?;
    let file = s.req("users_file", p, |v, what, p| {
        existing_file(v, what, base_dir, p)
    });
    let at = s.at;
    s.finish(p);
    let file = file?;
    match std::fs::read_to_string(&file)
        .map_err(|e| e.to_string())
        .and_then(|t| crate::policy::connect::parse_users(&t))
    {
        Ok(users) => Some(Some(users)),
        Err(e) => {
            p.add(at, format!("users_file {}: {e}", file.display()));
            None
        }
    }
}

fn handler(
    name: At<&str>,
    backend: Option<&Val<'_>>,
    entry_at: usize,
    refs: &Refs<'_>,
    p: &mut Problems,
) -> Option<Handler> {
    let handler = match name.v {
        "static" => Handler::Static,
        "echo" => Handler::Echo,
        "proxy" => {
            let Some(b) = backend else {
                p.add(entry_at, "handler \"proxy\" needs a \"backend\"");
                return None;
            };
            let backend = reference(b, "\"backend\"", refs.backends, p)?;
            let backend = *refs.index.get(&backend)?;
            return Some(Handler::Proxy {
                backend,
                host: None,
            });
        }
        other => {
            let msg =
                format!("unknown handler {other:?}: expected \"static\", \"echo\", \"proxy\" or \"connect\"");
            p.add(name.at, msg);
            return None;
        }
    };
    if let Some(b) = backend {
        let msg = format!(
            "\"backend\" is only allowed with handler = \"proxy\", not {:?}",
            name.v
        );
        p.add(b.span().start, msg);
    }
    Some(handler)
}

// ---------------------------------------------------------------------------------------------
// Value converters: `fn(value, what, problems) -> Option<T>`, where `what` names the value in
// messages (`"\"name\""`, `an entry of "domains"`). Each reports its own problem.
// ---------------------------------------------------------------------------------------------

type Val<'i> = Spanned<DeValue<'i>>;

/// A value read from the file, with the byte offset where it starts.
struct At<T> {
    v: T,
    at: usize,
}

fn string<'a>(v: &'a Val<'_>, what: &str, p: &mut Problems) -> Option<At<&'a str>> {
    match v.get_ref() {
        DeValue::String(s) => Some(At {
            v: s.as_ref(),
            at: v.span().start,
        }),
        _ => wrong_type(v, "a string", what, p),
    }
}

fn boolean(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<bool> {
    match v.get_ref() {
        DeValue::Boolean(b) => Some(*b),
        _ => wrong_type(v, "true or false", what, p),
    }
}

fn integer(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<At<i64>> {
    let DeValue::Integer(i) = v.get_ref() else {
        return wrong_type(v, "an integer", what, p);
    };
    let at = v.span().start;
    match i64::from_str_radix(i.as_str(), i.radix()) {
        Ok(n) => Some(At { v: n, at }),
        Err(_) => {
            p.add(at, format!("{what} is out of range"));
            None
        }
    }
}

/// An integer in `range` (whose start is not negative).
fn count(v: &Val<'_>, what: &str, range: RangeInclusive<i64>, p: &mut Problems) -> Option<usize> {
    let n = integer(v, what, p)?;
    match usize::try_from(n.v) {
        Ok(u) if range.contains(&n.v) => Some(u),
        _ => {
            let (lo, hi) = (range.start(), range.end());
            let msg = if *hi == i64::MAX {
                format!("{what} must be at least {lo}, found {}", n.v)
            } else {
                format!("{what} must be between {lo} and {hi}, found {}", n.v)
            };
            p.add(n.at, msg);
            None
        }
    }
}

fn positive(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<usize> {
    count(v, what, 1..=i64::MAX, p)
}

/// `cores`: an integer in 1..=1024, or `"auto"` (the CPUs this process may use).
fn cores(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<usize> {
    match v.get_ref() {
        DeValue::String(s) if s == "auto" => Some(auto_cores()),
        DeValue::Integer(_) => count(v, what, 1..=CORES_MAX, p),
        _ => wrong_type(v, "an integer or \"auto\"", what, p),
    }
}

fn auto_cores() -> usize {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    n.min(CORES_MAX as usize)
}

fn duration(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<Duration> {
    let s = string(v, what, p)?;
    parse_duration(s.v).map_err(|e| p.add(s.at, e)).ok()
}

/// `"500ms"`, `"10s"`, `"5m"`, `"1h"`: a whole number, then the unit; more than zero.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!("invalid duration {text:?}: expected a whole number followed by ms, s, m or h (like \"10s\")")
    };
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(0));
    let n: u64 = number.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => return Err(bad()),
    };
    match d {
        Some(d) if d.is_zero() => Err(format!("duration {text:?} must be more than zero")),
        Some(d) if d <= DURATION_MAX => Ok(d),
        _ => Err(format!("duration {text:?} is too long (at most 365 days)")),
    }
}

/// A byte size: an integer, or a string like `"32KiB"` (units B, KiB, MiB), within `range`.
fn size(v: &Val<'_>, what: &str, range: RangeInclusive<usize>, p: &mut Problems) -> Option<usize> {
    let at = v.span().start;
    let bytes = match v.get_ref() {
        DeValue::Integer(_) => count(v, what, 0..=i64::MAX, p)?,
        DeValue::String(s) => parse_size(s).map_err(|e| p.add(at, e)).ok()?,
        _ => return wrong_type(v, "a size like \"32KiB\" or a number of bytes", what, p),
    };
    if !range.contains(&bytes) {
        let (lo, hi) = (show_size(*range.start()), show_size(*range.end()));
        p.add(
            at,
            format!(
                "{what} must be between {lo} and {hi}, found {}",
                show_size(bytes)
            ),
        );
        return None;
    }
    Some(bytes)
}

fn parse_size(text: &str) -> Result<usize, String> {
    let bad = || {
        format!("invalid size {text:?}: expected a whole number followed by B, KiB or MiB (like \"32KiB\")")
    };
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(0));
    let n: usize = number.parse().map_err(|_| bad())?;
    let scale: usize = match unit {
        "B" => 1,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        _ => return Err(bad()),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

fn show_size(bytes: usize) -> String {
    match bytes {
        b if b >= 1024 * 1024 && b % (1024 * 1024) == 0 => format!("{}MiB", b / (1024 * 1024)),
        b if b >= 1024 && b % 1024 == 0 => format!("{}KiB", b / 1024),
        b => format!("{b}B"),
    }
}

fn socket_addr(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<At<SocketAddr>> {
    let s = string(v, what, p)?;
    match s.v.parse() {
        Ok(addr) => Some(At { v: addr, at: s.at }),
        Err(_) => {
            let msg = format!(
                "invalid listen address {:?}: expected IP:port, like \"0.0.0.0:80\" or \"[::1]:8080\"",
                s.v
            );
            p.add(s.at, msg);
            None
        }
    }
}

fn address(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<Address> {
    let s = string(v, what, p)?;
    Address::parse(s.v).map_err(|e| p.add(s.at, e)).ok()
}

fn uri(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<UriMatch> {
    let s = string(v, what, p)?;
    UriMatch::parse(s.v).map_err(|e| p.add(s.at, e)).ok()
}

/// A `domains` entry: `"example.com"`, `"*.example.com"` or `"*"`, lower-cased.
fn domain(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<String> {
    let s = string(v, what, p)?;
    let lower = s.v.to_ascii_lowercase();
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    if lower == "*" || is_hostname(name) {
        return Some(lower);
    }
    let msg = format!(
        "invalid domain {:?}: expected a name like \"example.com\", a wildcard like \"*.example.com\", or \"*\"",
        s.v
    );
    p.add(s.at, msg);
    None
}

/// Letters, digits and inner hyphens, in dot-separated labels of 1 to 63 bytes.
fn is_hostname(name: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    name.len() <= 253 && name.split('.').all(label_ok)
}

/// A string that must be a name defined in `names`.
fn reference(v: &Val<'_>, what: &str, names: &Names, p: &mut Problems) -> Option<String> {
    let s = string(v, what, p)?;
    if names.seen.contains_key(s.v) {
        return Some(s.v.to_string());
    }
    p.add(s.at, format!("unknown {} {:?}", names.kind, s.v));
    None
}

/// An array whose entries each go through `each`; `None` if it or any entry is wrong.
fn list<'a, 'i, T>(
    v: &'a Val<'i>,
    what: &str,
    required: bool,
    p: &mut Problems,
    mut each: impl FnMut(&'a Val<'i>, &str, &mut Problems) -> Option<T>,
) -> Option<Vec<T>> {
    let DeValue::Array(items) = v.get_ref() else {
        return wrong_type(v, "an array", what, p);
    };
    if required && items.is_empty() {
        p.add(v.span().start, format!("{what} must not be empty"));
        return None;
    }
    let entry = format!("an entry of {what}");
    let converted: Vec<Option<T>> = items.iter().map(|item| each(item, &entry, p)).collect();
    converted.into_iter().collect()
}

fn wrong_type<T>(v: &Val<'_>, expected: &str, what: &str, p: &mut Problems) -> Option<T> {
    let found = match v.get_ref() {
        DeValue::String(s) => format!("{:?}", s.as_ref()),
        DeValue::Integer(i) => i.to_string(),
        DeValue::Float(f) => f.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => d.to_string(),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    };
    p.add(
        v.span().start,
        format!("expected {expected} for {what}, found {found}"),
    );
    None
}

// ---------------------------------------------------------------------------------------------
// Tables.
// ---------------------------------------------------------------------------------------------

/// A table being read. Every key asked for is recorded; `finish` reports the rest as unknown.
struct Section<'a, 'i> {
    table: &'a DeTable<'i>,
    /// Where the table starts (its `[header]`), for "missing key" problems.
    at: usize,
    /// `"[timeouts]"`, `"[[vhost]]"`; empty for the top level.
    name: &'static str,
    known: Vec<&'static str>,
}

impl<'a, 'i> Section<'a, 'i> {
    fn new(table: &'a DeTable<'i>, at: usize, name: &'static str) -> Self {
        Section {
            table,
            at,
            name,
            known: Vec::new(),
        }
    }

    fn of(v: &'a Val<'i>, name: &'static str, p: &mut Problems) -> Option<Self> {
        match v.get_ref() {
            DeValue::Table(t) => Some(Section::new(t, v.span().start, name)),
            _ => wrong_type(v, "a table", name, p),
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Val<'i>> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        self.table.get(key)
    }

    /// An optional key, converted.
    fn opt<T>(
        &mut self,
        key: &'static str,
        p: &mut Problems,
        convert: impl FnOnce(&'a Val<'i>, &str, &mut Problems) -> Option<T>,
    ) -> Option<T> {
        let v = self.get(key)?;
        convert(v, &format!("{key:?}"), p)
    }

    /// A required key, converted; its absence is a problem at the table's start.
    fn req<T>(
        &mut self,
        key: &'static str,
        p: &mut Problems,
        convert: impl FnOnce(&'a Val<'i>, &str, &mut Problems) -> Option<T>,
    ) -> Option<T> {
        if self.table.get(key).is_none() {
            p.add(
                self.at,
                format!("missing required key {key:?} {}", self.place()),
            );
        }
        self.opt(key, p, convert)
    }

    fn place(&self) -> String {
        if self.name.is_empty() {
            "at the top level".to_string()
        } else {
            format!("in {}", self.name)
        }
    }

    /// Reports every key that was never asked for.
    fn finish(self, p: &mut Problems) {
        for key in self.table.keys() {
            let k: &str = key.get_ref();
            if !self.known.contains(&k) {
                let msg = format!(
                    "unknown key {k:?} {}; valid keys: {}",
                    self.place(),
                    self.known.join(", ")
                );
                p.add(key.span().start, msg);
            }
        }
    }
}

/// The entries of an array of tables (`[[listener]]`).
fn tables<'a, 'i>(v: &'a Val<'i>, name: &'static str, p: &mut Problems) -> Vec<Section<'a, 'i>> {
    let DeValue::Array(items) = v.get_ref() else {
        return wrong_type(v, "an array of tables", name, p).unwrap_or_default();
    };
    items
        .iter()
        .filter_map(|item| Section::of(item, name, p))
        .collect()
}

/// Names defined by one kind of section, for duplicate and reference checks.
struct Names {
    kind: &'static str,
    /// Name → where it was first defined.
    seen: HashMap<String, usize>,
}

impl Names {
    fn new(kind: &'static str) -> Self {
        Names {
            kind,
            seen: HashMap::new(),
        }
    }

    fn add(&mut self, name: &At<&str>, p: &mut Problems) {
        if let Some(first) = self.seen.get(name.v) {
            let line = p.line(*first);
            p.add(
                name.at,
                format!(
                    "duplicate {} name {:?} (first at line {line})",
                    self.kind, name.v
                ),
            );
        } else {
            self.seen.insert(name.v.to_string(), name.at);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Problems and positions.
// ---------------------------------------------------------------------------------------------

/// Problems found so far, by byte offset.
struct Problems {
    found: Vec<(usize, String)>,
    line_starts: Vec<usize>,
}

impl Problems {
    fn new(text: &str) -> Self {
        Problems {
            found: Vec::new(),
            line_starts: line_starts(text),
        }
    }

    fn add(&mut self, at: usize, message: impl Into<String>) {
        self.found.push((at, message.into()));
    }

    /// 1-based line of a byte offset.
    fn line(&self, at: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= at)
    }

    fn into_sorted(mut self, text: &str) -> Vec<Problem> {
        self.found.sort_by_key(|(at, _)| *at);
        let starts = self.line_starts;
        let to_problem = |(at, message)| {
            let (line, col) = position(text, &starts, at);
            Problem { line, col, message }
        };
        self.found.into_iter().map(to_problem).collect()
    }
}

/// Byte offsets where lines start.
fn line_starts(text: &str) -> Vec<usize> {
    let newlines = text.match_indices('\n').map(|(i, _)| i + 1);
    std::iter::once(0).chain(newlines).collect()
}

/// 1-based line and column (in characters) of a byte offset.
fn position(text: &str, line_starts: &[usize], at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let line = line_starts.partition_point(|&start| start <= at).max(1);
    let start = line_starts.get(line - 1).copied().unwrap_or(0);
    let col = text
        .get(start..at)
        .map_or(at - start, |s| s.chars().count());
    (line, col + 1)
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory holding an empty `www/`, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("ringway-load-{}-{n}", std::process::id()));
            std::fs::create_dir_all(dir.join("www")).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Joins lines with '\n', so line N of the config is `lines[N - 1]`.
    fn text(lines: &[&str]) -> String {
        lines.join("\n")
    }

    fn ok(lines: &[&str]) -> (Config, TempDir) {
        let dir = TempDir::new();
        match load_str(&text(lines), &dir.0) {
            Ok(c) => (c, dir),
            Err(problems) => panic!("unexpected problems: {problems:#?}"),
        }
    }

    /// The problems, as `(line, col, message)`.
    fn problems(lines: &[&str]) -> Vec<(usize, usize, String)> {
        let dir = TempDir::new();
        match load_str(&text(lines), &dir.0) {
            Ok(_) => panic!("expected problems"),
            Err(ps) => ps.into_iter().map(|p| (p.line, p.col, p.message)).collect(),
        }
    }

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

    /// Asserts exactly one problem, at `line:col`, whose message contains `needle`.
    fn one_problem(lines: &[&str], line: usize, col: usize, needle: &str) {
        let ps = problems(lines);
        assert_eq!(ps.len(), 1, "{ps:#?}");
        assert_eq!((ps[0].0, ps[0].1), (line, col), "{ps:#?}");
        assert!(ps[0].2.contains(needle), "{:?} lacks {needle:?}", ps[0].2);
    }

    const LISTENER: [&str; 3] = [
        "[[listener]]",
        "name = \"main\"",
        "address = \"127.0.0.1:8080\"",
    ];

    /// A valid config followed by `extra` lines (which start at line 7).
    fn with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut lines = LISTENER.to_vec();
        lines.extend(["[[vhost]]", "name = \"site\"", "domains = [\"*\"]"]);
        lines.extend(extra);
        lines
    }

    const FULL: &[&str] = &[
        "[runtime]",
        "cores = 2",
        "pin = false",
        "max_connections = 1000",
        "",
        "[[runtime.core]]",
        "id = 1",
        "max_connections = 500",
        "",
        "[timeouts]",
        "header = \"500ms\"",
        "keepalive = \"5m\"",
        "connect = \"3s\"",
        "tunnel_idle = \"2h\"",
        "",
        "[limits]",
        "max_header_bytes = \"64KiB\"",
        "",
        "[[listener]]",
        "name = \"main\"",
        "address = \"127.0.0.1:8080\"",
        "",
        "[[listener]]",
        "name = \"v6\"",
        "address = \"[::1]:8081\"",
        "",
        "[[backend]]",
        "name = \"chat\"",
        "servers = [\"127.0.0.1:9001\", \"[::1]:9002\", \"uds:///run/chat.sock\"]",
        "",
        "[[backend]]",
        "name = \"api\"",
        "servers = [{ address = \"127.0.0.1:7000\", weight = 3 }, \"127.0.0.1:7001\"]",
        "",
        "[[vhost]]",
        "name = \"site\"",
        "domains = [\"Example.COM\", \"*.example.com\", \"*\"]",
        "listeners = [\"main\"]",
        "doc_root = \"www\"",
        "",
        "[[vhost.websocket]]",
        "uri = \"/chat/\"",
        "backend = \"chat\"",
        "",
        "[[vhost.websocket]]",
        "uri = \"exp:^/room/[0-9]+$\"",
        "address = \"127.0.0.1:9100\"",
        "",
        "[[vhost.context]]",
        "uri = \"/echo\"",
        "handler = \"echo\"",
        "",
        "[[vhost.context]]",
        "uri = \"/api/\"",
        "handler = \"proxy\"",
        "backend = \"api\"",
        "",
        "[[vhost.context]]",
        "uri = \"/files/\"",
        "handler = \"static\"",
    ];

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
    fn full_config_vhost_and_routes() {
        let (c, dir) = ok(FULL);
        assert_eq!(c.vhosts.len(), 1);
        let v = &c.vhosts[0];
        assert_eq!(v.name, "site");
        assert_eq!(v.domains, ["example.com", "*.example.com", "*"]);
        assert_eq!(v.listeners, ["main"]);
        assert_eq!(v.doc_root, dir.0.join("www"));
        assert!(v.doc_root.is_absolute());
        assert_eq!(v.websockets.len(), 2);
        assert_eq!(v.websockets[0].uri.as_text(), "/chat/");
        assert_eq!(c.backends[v.websockets[0].backend].name, "chat");
        assert_eq!(v.websockets[1].uri.as_text(), "exp:^/room/[0-9]+$");
        assert!(v.websockets[1].uri.matches("/room/7"));
        // An `address` entry gets an implicit one-server backend after the declared ones.
        let implicit = &c.backends[v.websockets[1].backend];
        assert_eq!(v.websockets[1].backend, 2);
        assert_eq!(
            (implicit.name.as_str(), implicit.implicit),
            ("127.0.0.1:9100", true)
        );
        assert_eq!(
            implicit.servers,
            [Server {
                address: Address::parse("127.0.0.1:9100").unwrap(),
                weight: 1
            }]
        );
        let contexts: Vec<_> = v
            .contexts
            .iter()
            .map(|c| (c.uri.as_text(), c.handler.clone()))
            .collect();
        let api = Handler::Proxy {
            backend: 1,
            host: None,
        };
        assert_eq!(
            contexts,
            [
                ("/echo".to_string(), Handler::Echo),
                ("/api/".to_string(), api),
                ("/files/".to_string(), Handler::Static),
            ]
        );
    }

    #[test]
    fn defaults_apply_to_a_minimal_config() {
        let (c, dir) = ok(&with(&[]));
        assert_eq!(c.runtime.cores, auto_cores());
        assert!(c.runtime.pin);
        assert_eq!(c.runtime.max_connections, CONNECTIONS_PER_CORE_MAX_DEFAULT);
        assert!(c.runtime.core_overrides.is_empty());
        assert_eq!(c.timeouts.header, HEADER_TIMEOUT_DEFAULT);
        assert_eq!(c.timeouts.keepalive, KEEPALIVE_TIMEOUT_DEFAULT);
        assert_eq!(c.timeouts.connect, CONNECT_TIMEOUT_DEFAULT);
        assert_eq!(c.timeouts.tunnel_idle, TUNNEL_IDLE_TIMEOUT_DEFAULT);
        assert_eq!(c.limits.max_header_bytes, HEADER_BYTES_MAX_DEFAULT);
        assert!(c.backends.is_empty());
        let v = &c.vhosts[0];
        assert!(v.listeners.is_empty());
        assert!(v.websockets.is_empty() && v.contexts.is_empty());
        assert_eq!(v.doc_root, dir.0.join("www"));
    }

    #[test]
    fn auto_cores_and_plain_integer_sizes() {
        let (c, _dir) = ok(&with(&[
            "[runtime]",
            "cores = \"auto\"",
            "[limits]",
            "max_header_bytes = 2048",
        ]));
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(c.runtime.cores, cpus.min(1024));
        assert!(c.runtime.cores >= 1);
        assert_eq!(c.limits.max_header_bytes, 2048);
        let (c, _dir) = ok(&with(&["[limits]", "max_header_bytes = \"1MiB\""]));
        assert_eq!(c.limits.max_header_bytes, 1024 * 1024);
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

    #[test]
    fn unknown_keys_at_every_level() {
        one_problem(
            &with(&["[tls]", "cert = \"x\""]),
            7,
            2,
            "unknown key \"tls\" at the top level; valid keys: runtime, timeouts, limits, listener, backend, vhost",
        );
        one_problem(
            &with(&["[timeouts]", "foo = \"1s\""]),
            8,
            1,
            "unknown key \"foo\" in [timeouts]; valid keys: header, keepalive, connect, tunnel_idle",
        );
        one_problem(
            &with(&["[runtime]", "  corez = 2"]),
            8,
            3,
            "unknown key \"corez\" in [runtime]",
        );
        one_problem(
            &with(&["[[runtime.core]]", "id = 0", "x = 1"]),
            9,
            1,
            "in [[runtime.core]]",
        );
        one_problem(
            &with(&["listeners2 = []"]),
            7,
            1,
            "unknown key \"listeners2\" in [[vhost]]",
        );
        one_problem(
            &with(&[
                "[[vhost.websocket]]",
                "uri = \"/\"",
                "address = \"1.2.3.4:5\"",
                "timeout = 3",
            ]),
            10,
            1,
            "unknown key \"timeout\" in [[vhost.websocket]]; valid keys: uri, backend, address",
        );
        one_problem(
            &with(&[
                "[[vhost.context]]",
                "uri = \"/\"",
                "handler = \"echo\"",
                "root = 3",
            ]),
            10,
            1,
            "unknown key \"root\" in [[vhost.context]]",
        );
        one_problem(
            &with(&["[limits.x]"]),
            7,
            9,
            "unknown key \"x\" in [limits]",
        );
    }

    #[test]
    fn wrong_types() {
        one_problem(
            &with(&["[runtime]", "pin = \"yes\""]),
            8,
            7,
            "expected true or false for \"pin\", found \"yes\"",
        );
        one_problem(
            &with(&["[runtime]", "cores = 1.5"]),
            8,
            9,
            "expected an integer or \"auto\" for \"cores\", found 1.5",
        );
        one_problem(
            &with(&["[runtime]", "cores = \"many\""]),
            8,
            9,
            "found \"many\"",
        );
        one_problem(
            &with(&["[timeouts]", "header = 10"]),
            8,
            10,
            "expected a string for \"header\", found 10",
        );
        one_problem(
            &["timeouts = 5", LISTENER[0], LISTENER[1], LISTENER[2]],
            1,
            12,
            "expected a table for [timeouts], found 5",
        );
        one_problem(&with(&["domains2 = 1"]), 7, 1, "unknown key");
        one_problem(
            &with(&["[[vhost]]", "name = 3", "domains = [\"a\"]"]),
            8,
            8,
            "expected a string for \"name\", found 3",
        );
        one_problem(
            &with(&["[[vhost]]", "name = \"x\"", "domains = \"a\""]),
            9,
            11,
            "expected an array for \"domains\", found \"a\"",
        );
        one_problem(
            &with(&["[[vhost]]", "name = \"x\"", "domains = [\"a\", 7]"]),
            9,
            17,
            "expected a string for an entry of \"domains\", found 7",
        );
        one_problem(
            &with(&["[[backend]]", "name = \"b\"", "servers = [true]"]),
            9,
            12,
            "expected a string for an entry of \"servers\", found true",
        );
        one_problem(
            &["[listener]", "name = \"main\"", "address = \"127.0.0.1:1\""],
            1,
            1,
            "expected an array of tables for [[listener]], found a table",
        );
    }

    #[test]
    fn bad_durations_and_sizes() {
        for bad in [
            "10",
            "10 s",
            "1.5s",
            "-1s",
            "2d",
            "s",
            "",
            "10S",
            "99999999999999999999s",
        ] {
            let quoted = format!("header = {bad:?}");
            let ps = problems(&with(&["[timeouts]", &quoted]));
            assert_eq!(ps.len(), 1, "{bad}: {ps:?}");
            assert_eq!((ps[0].0, ps[0].1), (8, 10), "{bad}");
            assert!(
                ps[0].2.starts_with("invalid duration"),
                "{bad}: {}",
                ps[0].2
            );
        }
        one_problem(
            &with(&["[timeouts]", "connect = \"0ms\""]),
            8,
            11,
            "duration \"0ms\" must be more than zero",
        );
        one_problem(
            &with(&["[timeouts]", "connect = \"9000h\""]),
            8,
            11,
            "is too long",
        );
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        for bad in ["32", "32 KiB", "32kib", "32KB", "1.5MiB", "KiB", "-1B"] {
            let quoted = format!("max_header_bytes = {bad:?}");
            let ps = problems(&with(&["[limits]", &quoted]));
            assert_eq!(ps.len(), 1, "{bad}: {ps:?}");
            assert_eq!((ps[0].0, ps[0].1), (8, 20), "{bad}");
            assert!(ps[0].2.starts_with("invalid size"), "{bad}: {}", ps[0].2);
        }
        one_problem(
            &with(&["[limits]", "max_header_bytes = \"512B\""]),
            8,
            20,
            "\"max_header_bytes\" must be between 1KiB and 1MiB, found 512B",
        );
        one_problem(
            &with(&["[limits]", "max_header_bytes = \"2MiB\""]),
            8,
            20,
            "found 2MiB",
        );
        one_problem(
            &with(&["[limits]", "max_header_bytes = -4"]),
            8,
            20,
            "must be at least 0, found -4",
        );
    }

    #[test]
    fn out_of_range_numbers_and_core_ids() {
        one_problem(
            &with(&["[runtime]", "cores = 0"]),
            8,
            9,
            "\"cores\" must be between 1 and 1024, found 0",
        );
        one_problem(&with(&["[runtime]", "cores = 1025"]), 8, 9, "found 1025");
        one_problem(
            &with(&["[runtime]", "max_connections = 0"]),
            8,
            19,
            "\"max_connections\" must be at least 1, found 0",
        );
        one_problem(
            &with(&["[runtime]", "cores = 99999999999999999999"]),
            8,
            9,
            "\"cores\" is out of range",
        );
        let ps = problems(&with(&[
            "[runtime]",
            "cores = 2",
            "[[runtime.core]]",
            "id = 1",
            "[[runtime.core]]",
            "id = 2",
            "[[runtime.core]]",
            "id = 1",
            "[[runtime.core]]",
            "id = -1",
            "max_connections = 0",
            "[[runtime.core]]",
        ]));
        let want = [
            (12, 6, "core id 2 is out of range: ids go from 0 to 1"),
            (14, 6, "duplicate core id 1 (first at line 10)"),
            (16, 6, "core id -1 is out of range: ids go from 0 to 1"),
            (17, 19, "\"max_connections\" must be at least 1, found 0"),
            (18, 1, "missing required key \"id\" in [[runtime.core]]"),
        ];
        let got: Vec<_> = ps.iter().map(|(l, c, m)| (*l, *c, m.as_str())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn bad_addresses() {
        one_problem(
            &[
                "[[listener]]",
                "name = \"main\"",
                "address = \"localhost:80\"",
                "[[vhost]]",
                "name = \"v\"",
                "domains = [\"*\"]",
                "listeners = [\"main\"]",
            ],
            3,
            11,
            "invalid listen address \"localhost:80\"",
        );
        one_problem(
            &with(&[
                "[[listener]]",
                "name = \"other\"",
                "address = \"127.0.0.1:8080\"",
            ]),
            9,
            11,
            "address 127.0.0.1:8080 is already used by listener \"main\"",
        );
        one_problem(
            &with(&[
                "[[backend]]",
                "name = \"b\"",
                "servers = [\"1.2.3.4:1\", \"uds://rel.sock\"]",
            ]),
            9,
            25,
            "needs an absolute path",
        );
        one_problem(
            &with(&["[[backend]]", "name = \"b\"", "servers = []"]),
            9,
            11,
            "\"servers\" must not be empty",
        );
        one_problem(
            &with(&[
                "[[vhost.websocket]]",
                "uri = \"/ws\"",
                "address = \"1.2.3.4\"",
            ]),
            9,
            11,
            "invalid address \"1.2.3.4\"",
        );
    }

    #[test]
    fn bad_uris() {
        one_problem(
            &with(&[
                "[[vhost.websocket]]",
                "uri = \"exp:(\"",
                "address = \"1.2.3.4:5\"",
            ]),
            8,
            7,
            "invalid regex \"(\"",
        );
        one_problem(
            &with(&["[[vhost.context]]", "uri = \"echo\"", "handler = \"echo\""]),
            8,
            7,
            "uri \"echo\" must start with '/'",
        );
    }

    #[test]
    fn unknown_references_and_handlers() {
        one_problem(
            &with(&["listeners = [\"main\", \"admin\"]"]),
            7,
            22,
            "unknown listener \"admin\"",
        );
        one_problem(
            &with(&["[[vhost.websocket]]", "uri = \"/ws\"", "backend = \"chat\""]),
            9,
            11,
            "unknown backend \"chat\"",
        );
        one_problem(
            &with(&[
                "[[vhost.context]]",
                "uri = \"/api/\"",
                "handler = \"proxy\"",
                "backend = \"api\"",
            ]),
            10,
            11,
            "unknown backend \"api\"",
        );
        one_problem(
            &with(&["[[vhost.context]]", "uri = \"/x\"", "handler = \"php\""]),
            9,
            11,
            "unknown handler \"php\": expected \"static\", \"echo\", \"proxy\" or \"connect\"",
        );
        one_problem(
            &with(&["[[vhost.context]]", "uri = \"/x\"", "handler = \"proxy\""]),
            7,
            1,
            "handler \"proxy\" needs a \"backend\"",
        );
        one_problem(
            &with(&[
                "[[backend]]",
                "name = \"api\"",
                "servers = [\"1.2.3.4:5\"]",
                "[[vhost.context]]",
                "uri = \"/x\"",
                "handler = \"echo\"",
                "backend = \"api\"",
            ]),
            13,
            11,
            "\"backend\" is only allowed with handler = \"proxy\", not \"echo\"",
        );
    }

    #[test]
    fn admin_listener_is_http1_only() {
        let base = [
            "[[listener]]",
            "name = \"admin\"",
            "address = \"127.0.0.1:9090\"",
            "tls = true",
            "[admin]",
            "listener = \"admin\"",
        ];
        let (c, _d) = ok(&with(&base));
        let admin = c.listeners.iter().find(|l| l.name == "admin").unwrap();
        assert_eq!(admin.alpn, vec!["http/1.1".to_string()]);
        assert_eq!(
            c.listeners[0].alpn,
            vec!["h2".to_string(), "http/1.1".to_string()]
        );
        let mut h2c = base.to_vec();
        h2c[3] = "http2 = true";
        let ps = problems(&with(&h2c));
        assert!(
            ps.iter().any(|p| p.2.contains("serves HTTP/1.1 only")),
            "{ps:?}"
        );
    }

    #[test]
    fn websocket_tunnel_mode_keys() {
        fn route<'a>(extra: &[&'a str]) -> Vec<&'a str> {
            let mut lines = vec![
                "[[vhost.websocket]]",
                "uri = \"/feed/\"",
                "backend = \"line\"",
            ];
            lines.extend_from_slice(extra);
            lines.extend([
                "[[backend]]",
                "name = \"line\"",
                "servers = [\"127.0.0.1:9\"]",
            ]);
            with(&lines)
        }
        let (c, _d) = ok(&route(&[]));
        assert_eq!(c.vhosts[0].websockets[0].tunnel, None);
        let (c, _d) = ok(&route(&["mode = \"tunnel\""]));
        assert_eq!(
            c.vhosts[0].websockets[0].tunnel,
            Some(TunnelMode {
                text: true,
                subprotocols: vec![],
                ping_interval: Some(TUNNEL_PING_INTERVAL_DEFAULT),
                max_message: TUNNEL_MAX_MESSAGE_DEFAULT,
            })
        );
        let (c, _d) = ok(&route(&[
            "mode = \"tunnel\"",
            "frame = \"binary\"",
            "subprotocols = [\"chat.v1\", \"mqtt\"]",
            "ping_interval = \"0s\"",
            "max_message = \"64KiB\"",
        ]));
        assert_eq!(
            c.vhosts[0].websockets[0].tunnel,
            Some(TunnelMode {
                text: false,
                subprotocols: vec!["chat.v1".into(), "mqtt".into()],
                ping_interval: None,
                max_message: 64 * 1024,
            })
        );
        for (extra, want) in [
            ("mode = \"pass\"", "must be \"proxy\" or \"tunnel\""),
            ("frame = \"hex\"", "must be \"text\" or \"binary\""),
            ("max_message = \"0B\"", "must be between"),
            ("ping_interval = \"soon\"", "invalid duration"),
            ("subprotocols = [\"a b\"]", "must be a token"),
        ] {
            let mode = if extra.starts_with("mode") {
                ""
            } else {
                "mode = \"tunnel\""
            };
            let ps = problems(&route(&[mode, extra]));
            assert!(ps.iter().any(|p| p.2.contains(want)), "{extra}: {ps:?}");
        }
        let ps = problems(&route(&["frame = \"text\""]));
        assert!(
            ps.iter()
                .any(|p| p.2.contains("\"frame\" applies to mode = \"tunnel\" only")),
            "{ps:?}"
        );
    }

    #[test]
    fn websocket_needs_exactly_one_target() {
        let both = [
            "[[vhost.websocket]]",
            "uri = \"/ws\"",
            "backend = \"b\"",
            "address = \"1.2.3.4:5\"",
        ];
        one_problem(
            &with(&both),
            7,
            1,
            "needs exactly one of \"backend\" or \"address\"",
        );
        one_problem(
            &with(&["[[vhost.websocket]]", "uri = \"/ws\""]),
            7,
            1,
            "needs exactly one of",
        );
    }

    #[test]
    fn duplicate_names() {
        let ps = problems(&[
            LISTENER[0],
            LISTENER[1],
            LISTENER[2],
            "[[listener]]",
            "name = \"main\"",
            "address = \"127.0.0.1:8081\"",
            "[[backend]]",
            "name = \"b\"",
            "servers = [\"1.2.3.4:5\"]",
            "[[backend]]",
            "name = \"b\"",
            "servers = [\"1.2.3.4:6\"]",
            "[[vhost]]",
            "name = \"v\"",
            "domains = [\"*\"]",
            "[[vhost]]",
            "name = \"v\"",
            "domains = [\"a.com\"]",
        ]);
        let got: Vec<_> = ps.iter().map(|(l, c, m)| (*l, *c, m.as_str())).collect();
        let want = [
            (5, 8, "duplicate listener name \"main\" (first at line 2)"),
            (11, 8, "duplicate backend name \"b\" (first at line 8)"),
            (17, 8, "duplicate vhost name \"v\" (first at line 14)"),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn missing_required_keys_and_listeners() {
        one_problem(
            &["[[listener]]", "address = \"127.0.0.1:1\""],
            1,
            1,
            "missing required key \"name\" in [[listener]]",
        );
        one_problem(
            &with(&["  [[vhost]]", "name = \"x\""]),
            7,
            3,
            "missing required key \"domains\" in [[vhost]]",
        );
        one_problem(
            &with(&["[[vhost.context]]", "handler = \"echo\""]),
            7,
            1,
            "missing required key \"uri\" in [[vhost.context]]",
        );
        one_problem(
            &with(&["[[backend]]", "name = \"b\""]),
            7,
            1,
            "missing required key \"servers\" in [[backend]]",
        );
        one_problem(
            &["[runtime]", "cores = 1"],
            1,
            1,
            "at least one [[listener]] is required",
        );
        one_problem(
            &["listener = []"],
            1,
            1,
            "at least one [[listener]] is required",
        );
    }

    #[test]
    fn domains() {
        let (c, _dir) = ok(&with(&[
            "[[vhost]]",
            "name = \"b\"",
            "domains = [\"A-1.Example.org\", \"*.X.io\", \"127.0.0.1\"]",
        ]));
        assert_eq!(
            c.vhosts[1].domains,
            ["a-1.example.org", "*.x.io", "127.0.0.1"]
        );
        for bad in [
            "a.*.com",
            "",
            "*.",
            "*.*",
            "a..com",
            "-a.com",
            "a-.com",
            "a b.com",
            "example.com.",
            "*example.com",
        ] {
            let line = format!("domains = [\"*\", {bad:?}]");
            let ps = problems(&with(&["[[vhost]]", "name = \"b\"", &line]));
            assert_eq!(ps.len(), 1, "{bad}: {ps:?}");
            assert_eq!((ps[0].0, ps[0].1), (9, 17), "{bad}");
            assert!(
                ps[0].2.starts_with(&format!("invalid domain {bad:?}")),
                "{}",
                ps[0].2
            );
        }
        one_problem(
            &with(&["[[vhost]]", "name = \"b\"", "domains = []"]),
            9,
            11,
            "\"domains\" must not be empty",
        );
        // Columns count characters, not bytes.
        let ps = problems(&with(&["listeners = [\"é\", \"x\"]"]));
        let got: Vec<_> = ps.iter().map(|(l, c, m)| (*l, *c, m.as_str())).collect();
        assert_eq!(
            got,
            [
                (7, 14, "unknown listener \"é\""),
                (7, 19, "unknown listener \"x\"")
            ]
        );
    }

    #[test]
    fn doc_root_must_be_a_directory() {
        let dir = TempDir::new();
        std::fs::write(dir.0.join("file"), "x").unwrap();
        std::fs::create_dir(dir.0.join("site")).unwrap();
        let cfg = |extra: &str| {
            format!(
                "{}\n[[vhost]]\nname = \"v\"\ndomains = [\"*\"]\n{extra}",
                LISTENER.join("\n")
            )
        };
        let c = load_str(&cfg("doc_root = \"site\""), &dir.0).unwrap();
        assert_eq!(c.vhosts[0].doc_root, dir.0.join("site"));
        let abs = format!("doc_root = {:?}", dir.0.join("site").display().to_string());
        assert_eq!(
            load_str(&cfg(&abs), Path::new("/nonexistent"))
                .unwrap()
                .vhosts[0]
                .doc_root,
            dir.0.join("site")
        );
        let err = load_str(&cfg("doc_root = \"file\""), &dir.0).unwrap_err();
        let msg = format!(
            "doc_root {} is not a directory",
            dir.0.join("file").display()
        );
        assert_eq!(
            err,
            [Problem {
                line: 7,
                col: 12,
                message: msg
            }]
        );
        // A missing directory is not a problem (WebSocket-only sites need none).
        let c = load_str(&cfg("doc_root = \"nope\""), &dir.0).unwrap();
        assert_eq!(c.vhosts[0].doc_root, dir.0.join("nope"));
        std::fs::remove_dir(dir.0.join("www")).unwrap();
        assert!(load_str(&cfg(""), &dir.0).is_ok());
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

    #[test]
    fn positions_count_lines_and_chars() {
        let text = "ab\ncé d\n\nx";
        let starts = line_starts(text);
        assert_eq!(position(text, &starts, 0), (1, 1));
        assert_eq!(position(text, &starts, 3), (2, 1));
        assert_eq!(position(text, &starts, 6), (2, 3));
        assert_eq!(position(text, &starts, 9), (3, 1));
        assert_eq!(position(text, &starts, 10), (4, 1));
        assert_eq!(position(text, &starts, 99), (4, 2));
    }
}
