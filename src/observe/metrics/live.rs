//! The dashboard's JSON (`/live` on the admin listener, one snapshot a second): per-core
//! totals, the merged request latency with its buckets, backend health and OCSP staples.

use std::fmt::Write as _;

use super::histogram::BUCKETS_S;
use super::snapshot::{request_latency, CoreSnapshot, Global};

/// A JSON string literal.
fn json_str(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 2);
    s.push('"');
    for c in value.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// The dashboard's snapshot (see `src/admin/dashboard.html`).
pub fn live_json(cores: &[CoreSnapshot], g: &Global) -> String {
    let mut o = String::with_capacity(2048);
    let _ = write!(
        o,
        "{{\"version\":{},\"generation\":{},\"time\":{:.3},\"uptime_s\":{:.1},\"cores\":[",
        json_str(&g.version),
        g.generation,
        g.time_s,
        g.uptime_s
    );
    for (i, c) in cores.iter().enumerate() {
        let _ = write!(
            o,
            "{}{{\"core\":{},\"connections_active\":{},\"tunnels_active\":{},\"requests_total\":{},\"messages_total\":{}}}",
            if i > 0 { "," } else { "" },
            c.core,
            c.connections_active(),
            c.tunnels_active(),
            c.requests_total(),
            c.messages_total()
        );
    }
    let l = request_latency(cores);
    let _ = write!(
        o,
        "],\"latency\":{{\"count\":{},\"p50_s\":{},\"p90_s\":{},\"p99_s\":{},\"histogram\":[",
        l.count(),
        l.quantile_s(0.5),
        l.quantile_s(0.9),
        l.quantile_s(0.99)
    );
    for le in BUCKETS_S {
        let _ = write!(o, "{{\"le\":{le},\"count\":{}}},", l.count_le(le));
    }
    let _ = write!(
        o,
        "{{\"le\":\"+Inf\",\"count\":{}}}]}},\"backends\":[",
        l.count()
    );
    for (i, (b, s, up)) in g.backends.iter().enumerate() {
        let _ = write!(
            o,
            "{}{{\"backend\":{},\"server\":{},\"up\":{up}}}",
            if i > 0 { "," } else { "" },
            json_str(b),
            json_str(s)
        );
    }
    o.push_str("],\"staples\":[");
    for (i, s) in g.staples.iter().enumerate() {
        let expiry = s.expiry_s.map_or("null".to_string(), |t| t.to_string());
        let _ = write!(
            o,
            "{}{{\"vhost\":{},\"valid\":{},\"expiry\":{expiry}}}",
            if i > 0 { "," } else { "" },
            json_str(&s.vhost),
            s.valid
        );
    }
    o.push_str("]}");
    o
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::StapleState;
    use super::*;

    #[test]
    fn json_is_escaped() {
        assert_eq!(json_str("x\"y\u{1}"), "\"x\\\"y\\u0001\"");
        let g = Global {
            staples: vec![StapleState {
                vhost: "v".into(),
                valid: true,
                expiry_s: Some(5),
                fetches: vec![("ok", 1)],
            }],
            ..Global::default()
        };
        let j = live_json(&[], &g);
        assert!(
            j.contains("\"staples\":[{\"vhost\":\"v\",\"valid\":true,\"expiry\":5}]"),
            "{j}"
        );
        assert!(j.starts_with('{') && j.ends_with('}'));
    }
}
