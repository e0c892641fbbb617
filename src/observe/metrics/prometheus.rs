//! Prometheus text format 0.0.4: every core's snapshot and the global state, one series per
//! core where the core matters, merged over cores where it does not (backend requests,
//! histograms). `render` is one long list of metric families in the order they are served.

use std::fmt::Write as _;

use super::core::{CLASSES, HANDLERS, HANDSHAKE_RESULTS, REJECT_REASONS, WS_CLOSE_CODES};
use super::histogram::{Latency, BUCKETS_S};
use super::snapshot::{merged, CoreSnapshot, Global, ProcessState};
use crate::observe::loglimit::KINDS;

/// Writes `# HELP` and `# TYPE` for one metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value escaped as Prometheus text needs (backslash, quote, newline).
fn esc(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn histogram_lines(out: &mut String, name: &str, labels: &str, l: &Latency) {
    let sep = if labels.is_empty() { "" } else { "," };
    for le in BUCKETS_S {
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {}",
            l.count_le(le)
        );
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
        l.count()
    );
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", l.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{braces} {}", l.count());
}

/// Prometheus text (format 0.0.4) of every core's snapshot and the global state.
pub fn render(cores: &[CoreSnapshot], g: &Global) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let o = &mut out;
    family(
        o,
        "ringway_connections_active",
        "gauge",
        "Open client connections.",
    );
    for c in cores {
        for (id, n) in c.tables.conns_active.iter().enumerate() {
            let l = esc(&c.tables.listeners.names[id]);
            let _ = writeln!(
                o,
                "ringway_connections_active{{core=\"{}\",listener=\"{l}\"}} {n}",
                c.core
            );
        }
    }
    family(
        o,
        "ringway_connections_total",
        "counter",
        "Client connections accepted.",
    );
    for c in cores {
        for (id, n) in c.tables.conns_total.iter().enumerate() {
            let l = esc(&c.tables.listeners.names[id]);
            let _ = writeln!(
                o,
                "ringway_connections_total{{core=\"{}\",listener=\"{l}\"}} {n}",
                c.core
            );
        }
    }
    family(
        o,
        "ringway_tunnels_active",
        "gauge",
        "Open WebSocket tunnels.",
    );
    for c in cores {
        for (id, n) in c.tables.tunnels_active.iter().enumerate() {
            let b = esc(&c.tables.backends.names[id]);
            let _ = writeln!(
                o,
                "ringway_tunnels_active{{core=\"{}\",backend=\"{b}\"}} {n}",
                c.core
            );
        }
    }
    family(
        o,
        "ringway_tunnels_total",
        "counter",
        "WebSocket tunnels opened.",
    );
    for c in cores {
        for (id, n) in c.tables.tunnels_total.iter().enumerate() {
            let b = esc(&c.tables.backends.names[id]);
            let _ = writeln!(
                o,
                "ringway_tunnels_total{{core=\"{}\",backend=\"{b}\"}} {n}",
                c.core
            );
        }
    }
    family(
        o,
        "ringway_requests_total",
        "counter",
        "HTTP requests answered, by status class.",
    );
    for c in cores {
        for (vid, by_handler) in c.tables.requests.iter().enumerate() {
            let v = esc(&c.tables.vhosts.names[vid]);
            for (h, by_class) in by_handler.iter().enumerate() {
                for (k, n) in by_class.iter().enumerate().filter(|(_, n)| **n > 0) {
                    let _ = writeln!(
                        o,
                        "ringway_requests_total{{core=\"{}\",vhost=\"{v}\",handler=\"{}\",code=\"{}\"}} {n}",
                        c.core, HANDLERS[h], CLASSES[k]
                    );
                }
            }
        }
    }
    family(
        o,
        "ringway_bytes_total",
        "counter",
        "Client-side bytes, in (read) and out (written).",
    );
    for c in cores {
        let _ = writeln!(
            o,
            "ringway_bytes_total{{core=\"{}\",direction=\"in\"}} {}",
            c.core, c.bytes_in
        );
        let _ = writeln!(
            o,
            "ringway_bytes_total{{core=\"{}\",direction=\"out\"}} {}",
            c.core, c.bytes_out
        );
    }
    family(
        o,
        "ringway_tunnel_spliced_bytes_total",
        "counter",
        "Tunnel bytes moved with splice(2), socket to pipe to socket (bulk tunnels).",
    );
    for c in cores {
        let _ = writeln!(
            o,
            "ringway_tunnel_spliced_bytes_total{{core=\"{}\"}} {}",
            c.core, c.spliced_bytes
        );
    }
    family(
        o,
        "ringway_ws_messages_total",
        "counter",
        "WebSocket messages through tunnels (in: client to backend).",
    );
    for c in cores {
        let _ = writeln!(
            o,
            "ringway_ws_messages_total{{core=\"{}\",direction=\"in\"}} {}",
            c.core, c.messages_in
        );
        let _ = writeln!(
            o,
            "ringway_ws_messages_total{{core=\"{}\",direction=\"out\"}} {}",
            c.core, c.messages_out
        );
    }
    family(
        o,
        "ringway_limited_total",
        "counter",
        "Refused by the per-IP limits: connections closed, upgrades answered 429.",
    );
    for c in cores {
        for (kind, n) in ["connections", "upgrades"].iter().zip(c.limited) {
            let _ = writeln!(
                o,
                "ringway_limited_total{{core=\"{}\",kind=\"{kind}\"}} {n}",
                c.core
            );
        }
    }
    family(
        o,
        "ringway_send_timeouts_total",
        "counter",
        "Client connections closed because they accepted no data within timeouts.send.",
    );
    for c in cores {
        let _ = writeln!(
            o,
            "ringway_send_timeouts_total{{core=\"{}\"}} {}",
            c.core, c.send_timeouts
        );
    }
    family(
        o,
        "ringway_buffer_pool_bytes",
        "gauge",
        "Bytes a core's buffer pools keep for reuse.",
    );
    for c in cores {
        let _ = writeln!(
            o,
            "ringway_buffer_pool_bytes{{core=\"{}\"}} {}",
            c.core, c.pooled_bytes
        );
    }
    family(
        o,
        "ringway_ws_closes_sent_total",
        "counter",
        "Tunnel mode: Close frames Ringway sent to clients, by code.",
    );
    for c in cores {
        for (code, n) in WS_CLOSE_CODES.iter().zip(c.ws_closes) {
            let _ = writeln!(
                o,
                "ringway_ws_closes_sent_total{{core=\"{}\",code=\"{code}\"}} {n}",
                c.core
            );
        }
    }
    family(
        o,
        "ringway_ws_ping_timeouts_total",
        "counter",
        "Tunnel mode: clients closed (1001) for leaving two pings unanswered.",
    );
    for c in cores {
        let _ = writeln!(
            o,
            "ringway_ws_ping_timeouts_total{{core=\"{}\"}} {}",
            c.core, c.ws_ping_timeouts
        );
    }
    family(
        o,
        "ringway_upgrade_rejected_total",
        "counter",
        "WebSocket upgrades refused, by reason.",
    );
    for c in cores {
        for (r, n) in c.tables.upgrade_rejected.iter().enumerate() {
            let _ = writeln!(
                o,
                "ringway_upgrade_rejected_total{{core=\"{}\",reason=\"{}\"}} {n}",
                c.core, REJECT_REASONS[r]
            );
        }
    }
    family(
        o,
        "ringway_bad_requests_total",
        "counter",
        "Requests refused as malformed, by status.",
    );
    for c in cores {
        for (status, n) in &c.tables.bad_requests {
            let _ = writeln!(
                o,
                "ringway_bad_requests_total{{core=\"{}\",status=\"{status}\"}} {n}",
                c.core
            );
        }
    }
    family(
        o,
        "ringway_client_errors_total",
        "counter",
        "Client-caused events (bad requests, failed TLS handshakes, PROXY header errors, limits hit, plain HTTP on a TLS listener), counted even when their log lines are rate-limited.",
    );
    for c in cores {
        for (kind, n) in KINDS.iter().zip(c.client_errors) {
            let _ = writeln!(
                o,
                "ringway_client_errors_total{{core=\"{}\",kind=\"{kind}\"}} {n}",
                c.core
            );
        }
    }
    family(
        o,
        "ringway_tls_handshakes_total",
        "counter",
        "TLS handshakes on client listeners, by result and whether the session was resumed.",
    );
    let mut by_listener: Vec<(&str, [[u64; 2]; HANDSHAKE_RESULTS.len()])> = Vec::new();
    for c in cores {
        for (id, counts) in c.tables.tls_handshakes.iter().enumerate() {
            let name = c.tables.listeners.names[id].as_str();
            let i = match by_listener.iter().position(|(n, _)| *n == name) {
                Some(i) => i,
                None => {
                    by_listener.push((name, Default::default()));
                    by_listener.len() - 1
                }
            };
            for (sum, add) in by_listener[i].1.iter_mut().zip(counts) {
                sum[0] += add[0];
                sum[1] += add[1];
            }
        }
    }
    for (name, counts) in &by_listener {
        for (r, pair) in counts.iter().enumerate() {
            for (resumed, n) in ["false", "true"].iter().zip(pair) {
                let _ = writeln!(
                    o,
                    "ringway_tls_handshakes_total{{listener=\"{}\",result=\"{}\",resumed=\"{resumed}\"}} {n}",
                    esc(name),
                    HANDSHAKE_RESULTS[r]
                );
            }
        }
    }
    family(
        o,
        "ringway_backend_up",
        "gauge",
        "1 when core 0's active health checks see the server up; no series for a server without active checks (see ringway_backend_checked).",
    );
    for sv in &g.backends {
        if let Some(up) = sv.checked {
            let _ = writeln!(
                o,
                "ringway_backend_up{{backend=\"{}\",server=\"{}\"}} {}",
                esc(&sv.backend),
                esc(&sv.server),
                u8::from(up)
            );
        }
    }
    family(
        o,
        "ringway_backend_checked",
        "gauge",
        "1 when the server's backend has active health checks, 0 when it is unchecked.",
    );
    for sv in &g.backends {
        let _ = writeln!(
            o,
            "ringway_backend_checked{{backend=\"{}\",server=\"{}\"}} {}",
            esc(&sv.backend),
            esc(&sv.server),
            u8::from(sv.checked.is_some())
        );
    }
    family(
        o,
        "ringway_backend_passive_out",
        "gauge",
        "Cores on which passive health (failed requests) has taken the server out now.",
    );
    for sv in &g.backends {
        let _ = writeln!(
            o,
            "ringway_backend_passive_out{{backend=\"{}\",server=\"{}\"}} {}",
            esc(&sv.backend),
            esc(&sv.server),
            sv.passive_out
        );
    }
    family(
        o,
        "ringway_backend_requests_total",
        "counter",
        "HTTP responses from backend servers, by status class.",
    );
    let mut by_server: Vec<(String, [u64; 5])> = Vec::new();
    for c in cores {
        for (sid, by_class) in c.tables.backend_requests.iter().enumerate() {
            let key = &c.tables.servers.names[sid];
            match by_server.iter_mut().find(|(k, _)| k == key) {
                Some((_, sum)) => sum.iter_mut().zip(by_class).for_each(|(a, b)| *a += b),
                None => by_server.push((key.clone(), *by_class)),
            }
        }
    }
    for (key, by_class) in &by_server {
        let (b, s) = key.split_once('\0').unwrap_or((key, ""));
        for (k, n) in by_class.iter().enumerate().filter(|(_, n)| **n > 0) {
            let _ = writeln!(
                o,
                "ringway_backend_requests_total{{backend=\"{}\",server=\"{}\",code=\"{}\"}} {n}",
                esc(b),
                esc(s),
                CLASSES[k]
            );
        }
    }
    family(
        o,
        "ringway_backend_connect_seconds",
        "histogram",
        "Time to connect to a backend server.",
    );
    histogram_lines(
        o,
        "ringway_backend_connect_seconds",
        "",
        &merged(cores, |h| &h.backend_connect),
    );
    family(
        o,
        "ringway_request_duration_seconds",
        "histogram",
        "From a request head to the end of its response.",
    );
    for (i, name) in HANDLERS.iter().enumerate() {
        let l = merged(cores, |h| &h.request[i]);
        histogram_lines(
            o,
            "ringway_request_duration_seconds",
            &format!("handler=\"{name}\""),
            &l,
        );
    }
    family(
        o,
        "ringway_tunnel_duration_seconds",
        "histogram",
        "Lifetime of closed WebSocket tunnels.",
    );
    histogram_lines(
        o,
        "ringway_tunnel_duration_seconds",
        "",
        &merged(cores, |h| &h.tunnel),
    );
    family(
        o,
        "ringway_ocsp_staple_valid",
        "gauge",
        "1 when a valid OCSP staple is served; no series for a vhost without OCSP stapling.",
    );
    for s in g.staples.iter().filter(|s| s.configured) {
        let _ = writeln!(
            o,
            "ringway_ocsp_staple_valid{{vhost=\"{}\"}} {}",
            esc(&s.vhost),
            u8::from(s.valid)
        );
    }
    family(
        o,
        "ringway_ocsp_staple_expiry_timestamp_seconds",
        "gauge",
        "nextUpdate of the served staple (unix seconds).",
    );
    for s in g.staples.iter().filter(|s| s.configured) {
        if let Some(t) = s.expiry_s {
            let _ = writeln!(
                o,
                "ringway_ocsp_staple_expiry_timestamp_seconds{{vhost=\"{}\"}} {t}",
                esc(&s.vhost)
            );
        }
    }
    family(
        o,
        "ringway_ocsp_fetch_total",
        "counter",
        "OCSP fetches, by result.",
    );
    for s in g.staples.iter().filter(|s| s.configured) {
        for (result, n) in &s.fetches {
            let _ = writeln!(
                o,
                "ringway_ocsp_fetch_total{{vhost=\"{}\",result=\"{result}\"}} {n}",
                esc(&s.vhost)
            );
        }
    }
    family(
        o,
        "ringway_certificate_expiry_timestamp_seconds",
        "gauge",
        "notAfter of the vhost's certificate (unix seconds).",
    );
    for (vhost, t) in &g.certificates {
        let _ = writeln!(
            o,
            "ringway_certificate_expiry_timestamp_seconds{{vhost=\"{}\"}} {t}",
            esc(vhost)
        );
    }
    family(
        o,
        "ringway_config_reloads_total",
        "counter",
        "Configuration reloads, by result.",
    );
    let _ = writeln!(
        o,
        "ringway_config_reloads_total{{result=\"ok\"}} {}",
        g.reloads_ok
    );
    let _ = writeln!(
        o,
        "ringway_config_reloads_total{{result=\"error\"}} {}",
        g.reloads_error
    );
    family(
        o,
        "ringway_config_generation",
        "gauge",
        "The serving configuration's generation (1 at start).",
    );
    let _ = writeln!(o, "ringway_config_generation {}", g.generation);
    family(
        o,
        "ringway_memory_bytes",
        "gauge",
        "Process memory: resident (VmRSS), heap_in_use (allocated and live), heap_free (kept by the allocator for reuse).",
    );
    let m = &g.memory;
    for (kind, n) in [
        ("resident", m.resident),
        ("heap_in_use", m.heap_in_use),
        ("heap_free", m.heap_free),
    ] {
        let _ = writeln!(o, "ringway_memory_bytes{{kind=\"{kind}\"}} {n}");
    }
    family(
        o,
        "ringway_build_info",
        "gauge",
        "Always 1; the version is the label.",
    );
    let _ = writeln!(o, "ringway_build_info{{version=\"{}\"}} 1", esc(&g.version));
    process(o, &g.process);
    out
}

/// The standard `process_*` family, as the Prometheus client libraries write it.
fn process(o: &mut String, p: &ProcessState) {
    let rows: [(&str, &str, &str, String); 7] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            format!("{}", p.cpu_seconds),
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            p.open_fds.to_string(),
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            p.max_fds.to_string(),
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            p.resident_bytes.to_string(),
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            p.virtual_bytes.to_string(),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            format!("{}", p.start_time_s),
        ),
        (
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
            p.threads.to_string(),
        ),
    ];
    for (name, kind, help, value) in rows {
        family(o, name, kind, help);
        let _ = writeln!(o, "{name} {value}");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::core::{CoreMetrics, HandlerKind, Rejected, NO_VHOST};
    use super::super::snapshot::ServerState;
    use super::*;

    /// Parses `name{labels} value` lines into (series, value), checking every family has
    /// HELP and TYPE before its samples.
    fn samples(text: &str) -> Vec<(String, f64)> {
        let mut typed: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap().to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|b| typed.iter().any(|t| t == b))
                })
                .unwrap_or(name);
            assert!(typed.iter().any(|t| t == base), "{name} has no TYPE line");
            out.push((series.to_string(), value.parse().unwrap()));
        }
        out
    }

    fn value(s: &[(String, f64)], series: &str) -> f64 {
        s.iter()
            .find(|(k, _)| k == series)
            .unwrap_or_else(|| panic!("no {series}"))
            .1
    }

    #[test]
    fn counts_render_per_core_and_histograms_merge() {
        let m = CoreMetrics::new();
        let ids = m.ids(
            ["main", "admin"].into_iter(),
            [("chat", vec!["127.0.0.1:9001".to_string()])].into_iter(),
            ["site"].into_iter(),
        );
        // A second generation renames nothing: the same ids come back.
        let again = m.ids(
            ["admin"].into_iter(),
            std::iter::empty(),
            ["site"].into_iter(),
        );
        assert_eq!(again.listeners, vec![ids.listeners[1]]);
        m.connection_opened(ids.listeners[0]);
        m.connection_opened(ids.listeners[0]);
        m.connection_closed(ids.listeners[0]);
        m.request(
            ids.vhosts[0],
            HandlerKind::Proxy,
            200,
            Duration::from_micros(300),
        );
        m.request(
            ids.vhosts[0],
            HandlerKind::Proxy,
            503,
            Duration::from_millis(3),
        );
        m.request(NO_VHOST, HandlerKind::Error, 404, Duration::from_micros(10));
        m.backend_request(ids.servers[0][0], 200);
        m.tunnel_opened(ids.backends[0]);
        m.bad_request(400);
        m.bad_request(400);
        m.upgrade_rejected(Rejected::BadAccept);
        m.bytes_in.set(100);
        let a = m.snapshot(0);
        let mut b = a.clone();
        b.core = 1;
        let g = Global {
            version: "0.1.0".into(),
            generation: 2,
            backends: vec![ServerState {
                backend: "chat".into(),
                server: "127.0.0.1:9001".into(),
                checked: Some(false),
                passive_out: 0,
            }],
            ..Global::default()
        };
        let text = render(&[a, b], &g);
        let s = samples(&text);
        assert_eq!(
            value(
                &s,
                "ringway_connections_active{core=\"0\",listener=\"main\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                &s,
                "ringway_connections_total{core=\"1\",listener=\"main\"}"
            ),
            2.0
        );
        assert_eq!(
            value(
                &s,
                "ringway_requests_total{core=\"0\",vhost=\"site\",handler=\"proxy\",code=\"5xx\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                &s,
                "ringway_requests_total{core=\"0\",vhost=\"-\",handler=\"error\",code=\"4xx\"}"
            ),
            1.0
        );
        assert_eq!(
            value(&s, "ringway_bytes_total{core=\"0\",direction=\"in\"}"),
            100.0
        );
        assert_eq!(
            value(&s, "ringway_tunnels_active{core=\"0\",backend=\"chat\"}"),
            1.0
        );
        assert_eq!(
            value(&s, "ringway_bad_requests_total{core=\"1\",status=\"400\"}"),
            2.0
        );
        assert_eq!(
            value(
                &s,
                "ringway_upgrade_rejected_total{core=\"0\",reason=\"bad_accept\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                &s,
                "ringway_backend_up{backend=\"chat\",server=\"127.0.0.1:9001\"}"
            ),
            0.0
        );
        // Backend requests merge over cores (no core label).
        assert_eq!(
            value(&s, "ringway_backend_requests_total{backend=\"chat\",server=\"127.0.0.1:9001\",code=\"2xx\"}"),
            2.0
        );
        // Histograms: two cores' 300 µs and 3 ms requests.
        let h = "ringway_request_duration_seconds";
        assert_eq!(
            value(
                &s,
                &format!("{h}_bucket{{handler=\"proxy\",le=\"0.0005\"}}")
            ),
            2.0
        );
        assert_eq!(
            value(
                &s,
                &format!("{h}_bucket{{handler=\"proxy\",le=\"0.0025\"}}")
            ),
            2.0
        );
        assert_eq!(
            value(&s, &format!("{h}_bucket{{handler=\"proxy\",le=\"0.005\"}}")),
            4.0
        );
        assert_eq!(
            value(&s, &format!("{h}_bucket{{handler=\"proxy\",le=\"+Inf\"}}")),
            4.0
        );
        assert_eq!(value(&s, &format!("{h}_count{{handler=\"proxy\"}}")), 4.0);
        assert!((value(&s, &format!("{h}_sum{{handler=\"proxy\"}}")) - 0.0066).abs() < 1e-9);
        assert_eq!(value(&s, "ringway_config_generation"), 2.0);
        assert_eq!(value(&s, "ringway_build_info{version=\"0.1.0\"}"), 1.0);
        // Buckets never decrease.
        let buckets: Vec<f64> = s
            .iter()
            .filter(|(k, _)| {
                k.starts_with("ringway_request_duration_seconds_bucket{handler=\"proxy\"")
            })
            .map(|(_, v)| *v)
            .collect();
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
