//! The process-wide sections: `[runtime]` (cores, pinning, per-core `[[runtime.core]]`
//! overrides, pid file), `[timeouts]` and `[limits]`, each with its defaults.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::problems::Problems;
use super::spanned::{boolean, integer, list, string, tables, At, Section, Val};
use super::values::{absolute, auto_cores, cores, count, duration, parse_duration, positive, size};
use crate::config::cores::{
    allowed_cpus, cpu_list, READ_BUFFER_MAX, READ_BUFFER_MIN, RING_ENTRIES_MAX, RING_ENTRIES_MIN,
};
use crate::config::types::{
    CoreOverride, Limits, RunAs, Runtime, Timeouts, CONNECTIONS_PER_CORE_MAX_DEFAULT,
    CONNECT_TIMEOUT_DEFAULT, DRAIN_TIMEOUT_DEFAULT, HEADER_BYTES_MAX_DEFAULT,
    HEADER_TIMEOUT_DEFAULT, KEEPALIVE_TIMEOUT_DEFAULT, MAX_CONCURRENT_STREAMS_DEFAULT,
    SEND_TIMEOUT_DEFAULT, TUNNEL_IDLE_TIMEOUT_DEFAULT, UPSTREAM_KEEPALIVE_TIMEOUT_DEFAULT,
    UPSTREAM_READ_TIMEOUT_DEFAULT,
};

/// Bounds for `[limits] max_header_bytes`.
const HEADER_BYTES_MIN: usize = 1024;
const HEADER_BYTES_MAX: usize = 1024 * 1024;

/// `[runtime]`, and the listener names its `[[runtime.core]]` entries list (checked against
/// the listeners by `load::cores` once those are read).
pub(super) fn runtime(
    v: Option<&Val<'_>>,
    base_dir: &Path,
    p: &mut Problems,
) -> (Runtime, Vec<At<String>>) {
    let mut r = Runtime {
        cores: auto_cores(),
        pin: true,
        max_connections: CONNECTIONS_PER_CORE_MAX_DEFAULT,
        core_overrides: Vec::new(),
        pid_file: None,
        user: None,
    };
    let mut refs = Vec::new();
    let Some(mut s) = v.and_then(|v| Section::of(v, "[runtime]", p)) else {
        return (r, refs);
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
    let user = s.opt("user", p, string);
    let group = s.opt("group", p, string);
    if let (None, Some(g)) = (&user, &group) {
        p.add(g.at, "\"group\" needs \"user\"");
    }
    if let Some(user) = user {
        r.user = run_as(user, group, p);
    }
    s.finish(p);
    // When `cores` itself is wrong, ids cannot be checked against it.
    let known_cores = if cores_given { cores } else { Some(r.cores) };
    if let Some(v) = overrides {
        r.core_overrides = core_overrides(v, known_cores, &mut refs, p);
    }
    (r, refs)
}

/// `user` and `group`, looked up in the system's user and group databases.
fn run_as(user: At<&str>, group: Option<At<&str>>, p: &mut Problems) -> Option<RunAs> {
    let found = super::accounts::user(user.v);
    let Some((uid, primary)) = found else {
        p.add(
            user.at,
            format!("\"user\": no user {:?} on this system", user.v),
        );
        return None;
    };
    let gid = match group {
        Some(g) => match super::accounts::group(g.v) {
            Some(gid) => gid,
            None => {
                p.add(
                    g.at,
                    format!("\"group\": no group {:?} on this system", g.v),
                );
                return None;
            }
        },
        None => primary,
    };
    Some(RunAs {
        user: user.v.to_string(),
        uid,
        gid,
    })
}

fn core_overrides(
    v: &Val<'_>,
    cores: Option<usize>,
    refs: &mut Vec<At<String>>,
    p: &mut Problems,
) -> Vec<CoreOverride> {
    let mut seen: HashMap<i64, usize> = HashMap::new();
    let mut out = Vec::new();
    let allowed = allowed_cpus();
    for mut s in tables(v, "[[runtime.core]]", p) {
        let id = s.req("id", p, integer);
        let max_connections = s.opt("max_connections", p, positive);
        let cpu = s.opt("cpu", p, |v, what, p| cpu(v, what, &allowed, p));
        let listeners = s.opt("listeners", p, |v, what, p| {
            list(v, what, true, p, |v, what, p| {
                string(v, what, p).map(|t| At {
                    v: t.v.to_string(),
                    at: t.at,
                })
            })
        });
        let ring_entries = s.opt("ring_entries", p, ring_entries);
        let read_buffer = s.opt("read_buffer", p, |v, what, p| {
            size(v, what, READ_BUFFER_MIN..=READ_BUFFER_MAX, p)
        });
        s.finish(p);
        let Some(id) = id else { continue };
        if let Some(id) = core_id(&id, cores, &mut seen, p) {
            let names = listeners.map(|ls| {
                let names = ls.iter().map(|l| l.v.clone()).collect();
                refs.extend(ls);
                names
            });
            out.push(CoreOverride {
                id,
                max_connections,
                cpu,
                listeners: names,
                ring_entries,
                read_buffer,
            });
        }
    }
    out
}

/// `cpu`: a CPU this process may run on (its `sched_getaffinity` mask).
fn cpu(v: &Val<'_>, what: &str, allowed: &[usize], p: &mut Problems) -> Option<usize> {
    let n = integer(v, what, p)?;
    match usize::try_from(n.v) {
        Ok(c) if allowed.contains(&c) => Some(c),
        _ => {
            let msg = format!(
                "cpu {} is outside this process's CPU affinity (allowed: {})",
                n.v,
                cpu_list(allowed)
            );
            p.add(n.at, msg);
            None
        }
    }
}

/// `ring_entries`: a power of two from `RING_ENTRIES_MIN` to `RING_ENTRIES_MAX`.
fn ring_entries(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<usize> {
    let n = integer(v, what, p)?;
    let (lo, hi) = (RING_ENTRIES_MIN, RING_ENTRIES_MAX);
    match usize::try_from(n.v) {
        Ok(e) if (lo..=hi).contains(&e) && e.is_power_of_two() => Some(e),
        _ => {
            let msg = format!(
                "{what} must be a power of two between {lo} and {hi}, found {}",
                n.v
            );
            p.add(n.at, msg);
            None
        }
    }
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

pub(super) fn timeouts(v: Option<&Val<'_>>, p: &mut Problems) -> Timeouts {
    let mut t = Timeouts {
        header: HEADER_TIMEOUT_DEFAULT,
        keepalive: KEEPALIVE_TIMEOUT_DEFAULT,
        connect: CONNECT_TIMEOUT_DEFAULT,
        tunnel_idle: TUNNEL_IDLE_TIMEOUT_DEFAULT,
        upstream_read: UPSTREAM_READ_TIMEOUT_DEFAULT,
        upstream_keepalive: UPSTREAM_KEEPALIVE_TIMEOUT_DEFAULT,
        drain: DRAIN_TIMEOUT_DEFAULT,
        drain_spread: Duration::ZERO,
        send: SEND_TIMEOUT_DEFAULT,
        lameduck: Duration::ZERO,
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
    let spread_at = s.get("drain_spread").map(|v| v.span().start);
    t.drain_spread = s.opt("drain_spread", p, duration).unwrap_or(t.drain_spread);
    if let Some(at) = spread_at.filter(|_| t.drain_spread >= t.drain) {
        let msg = format!(
            "\"drain_spread\" ({}) must be shorter than \"drain\" ({})",
            humantime::format_duration(t.drain_spread),
            humantime::format_duration(t.drain)
        );
        p.add(at, msg);
    }
    t.send = s.opt("send", p, duration).unwrap_or(t.send);
    t.lameduck = s.opt("lameduck", p, zero_or_duration).unwrap_or(t.lameduck);
    s.finish(p);
    t
}

/// A duration that may be zero (`"0s"`, `"0ms"`, `"0"`): `timeouts.lameduck`.
fn zero_or_duration(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<Duration> {
    let s = string(v, what, p)?;
    let zero = s.v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if !zero.is_empty()
        && zero.bytes().all(|b| b == b'0')
        && matches!(&s.v[zero.len()..], "" | "ms" | "s" | "m" | "h")
    {
        return Some(Duration::ZERO);
    }
    duration(v, what, p)
}

pub(super) fn limits(v: Option<&Val<'_>>, p: &mut Problems) -> Limits {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::testing::*;

    #[test]
    fn drain_spread_defaults_to_zero_and_must_be_shorter_than_drain() {
        let (c, _dir) = ok(&with(&[]));
        assert_eq!(c.timeouts.drain_spread, Duration::ZERO);
        let (c, _dir) = ok(&with(&[
            "[timeouts]",
            "drain = \"30s\"",
            "drain_spread = \"10s\"",
        ]));
        assert_eq!(c.timeouts.drain_spread, Duration::from_secs(10));
        one_problem(
            &with(&["[timeouts]", "drain = \"10s\"", "drain_spread = \"10s\""]),
            9,
            16,
            "\"drain_spread\" (10s) must be shorter than \"drain\" (10s)",
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
}
