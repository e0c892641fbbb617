//! The dashboard's JSON (`/live` on the admin listener, one snapshot a second): per-core
//! totals and settings (`[[runtime.core]]`), the merged request latency with its buckets, backend
//! health and OCSP staples.
//!
//! Serialized by `serde_json` from the structs below (their field order is the text's), so
//! names from the config are escaped correctly by construction. Numbers are written as the
//! dashboard has always had them: `time` with 3 decimals and `uptime_s` with 1 (`fixed`),
//! other floats in Rust's shortest form (`ShortestFloats`). A cold path: one snapshot a
//! second per open dashboard.

use std::io;

use serde::Serialize;
use serde_json::ser::{Formatter, Serializer};
use serde_json::value::RawValue;

use super::histogram::BUCKETS_S;
use super::snapshot::{request_latency, CoreSnapshot, Global};
use crate::config::cores::CoreSettings;

#[derive(Serialize)]
struct Live<'a> {
    version: &'a str,
    generation: u64,
    /// Unix seconds, 3 decimals.
    time: Box<RawValue>,
    /// 1 decimal.
    uptime_s: Box<RawValue>,
    cores: Vec<Core<'a>>,
    latency: Latency,
    backends: Vec<Backend<'a>>,
    staples: Vec<Staple<'a>>,
}

#[derive(Serialize)]
struct Core<'a> {
    core: usize,
    connections_active: i64,
    tunnels_active: i64,
    requests_total: u64,
    messages_total: u64,
    /// The core's `[[runtime.core]]` settings (cpu, listeners, ring_entries, read_buffer,
    /// max_connections); left out when the snapshot has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    settings: Option<&'a CoreSettings>,
}

#[derive(Serialize)]
struct Latency {
    count: u64,
    p50_s: f64,
    p90_s: f64,
    p99_s: f64,
    /// Cumulative, as Prometheus buckets; the last bound is `"+Inf"`.
    histogram: Vec<Bucket>,
}

#[derive(Serialize)]
struct Bucket {
    le: Le,
    count: u64,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Le {
    Seconds(f64),
    Inf(&'static str),
}

#[derive(Serialize)]
struct Backend<'a> {
    backend: &'a str,
    server: &'a str,
    /// Active health checks say up; false when they say down or there are none.
    up: bool,
    /// `up`, `down` (active checks) or `unchecked` (none).
    state: &'static str,
    /// Cores on which passive health has taken it out now.
    passive_out: usize,
}

#[derive(Serialize)]
struct Staple<'a> {
    vhost: &'a str,
    /// False: the vhost has no OCSP stapling ("not configured"); `valid` is then false.
    configured: bool,
    valid: bool,
    /// Unix seconds of the staple's nextUpdate; `null` when none is held.
    expiry: Option<u64>,
}

/// `v` with `decimals` fixed decimals (`null` were it not finite).
fn fixed(v: f64, decimals: usize) -> Box<RawValue> {
    RawValue::from_string(format!("{v:.decimals$}")).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// Compact JSON with floats in Rust's shortest round-trip form, never an exponent (`0`,
/// `0.000301`, `10`), as the dashboard has always had them.
struct ShortestFloats;

impl Formatter for ShortestFloats {
    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        write!(w, "{value}")
    }
}

/// The dashboard's snapshot (see `src/runtime/handlers/dashboard.html`).
pub fn live_json(cores: &[CoreSnapshot], g: &Global) -> String {
    let l = request_latency(cores, g.clock_s);
    let live = Live {
        version: &g.version,
        generation: g.generation,
        time: fixed(g.time_s, 3),
        uptime_s: fixed(g.uptime_s, 1),
        cores: cores
            .iter()
            .map(|c| Core {
                core: c.core,
                connections_active: c.connections_active(),
                tunnels_active: c.tunnels_active(),
                requests_total: c.requests_total(),
                messages_total: c.messages_total(),
                settings: c.settings.as_ref(),
            })
            .collect(),
        latency: Latency {
            count: l.count(),
            p50_s: l.quantile_s(0.5),
            p90_s: l.quantile_s(0.9),
            p99_s: l.quantile_s(0.99),
            histogram: BUCKETS_S
                .iter()
                .map(|&le| Bucket {
                    le: Le::Seconds(le),
                    count: l.count_le(le),
                })
                .chain([Bucket {
                    le: Le::Inf("+Inf"),
                    count: l.count(),
                }])
                .collect(),
        },
        backends: g
            .backends
            .iter()
            .map(|sv| Backend {
                backend: &sv.backend,
                server: &sv.server,
                up: sv.checked == Some(true),
                state: sv.state(),
                passive_out: sv.passive_out,
            })
            .collect(),
        staples: g
            .staples
            .iter()
            .map(|s| Staple {
                vhost: &s.vhost,
                configured: s.configured,
                valid: s.valid,
                expiry: s.expiry_s,
            })
            .collect(),
    };
    let mut out = Vec::with_capacity(2048);
    // Into a Vec, of these types: serializing cannot fail.
    let _ = live.serialize(&mut Serializer::with_formatter(&mut out, ShortestFloats));
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::core::{CoreMetrics, HandlerKind};
    use super::super::histogram::clock_s;
    use super::super::snapshot::{ServerState, StapleState};
    use super::*;

    fn fixture() -> (Vec<CoreSnapshot>, Global) {
        let m = CoreMetrics::new();
        let ids = m.ids(
            ["main"].into_iter(),
            std::iter::empty(),
            ["site"].into_iter(),
        );
        m.connection_opened(ids.listeners[0]);
        for us in [300, 3, 1_000_000] {
            m.request(
                ids.vhosts[0],
                HandlerKind::Proxy,
                200,
                Duration::from_micros(us),
            );
        }
        m.messages_in.set(7);
        let a = m.snapshot(0);
        let mut b = a.clone();
        b.core = 1;
        let g = Global {
            version: "0.1.0 \"x\"\\\n".into(),
            generation: 3,
            uptime_s: 12.34,
            time_s: 1_796_456_823.25,
            clock_s: clock_s(),
            backends: vec![
                ServerState {
                    backend: "chat".into(),
                    server: "127.0.0.1:9001".into(),
                    checked: Some(true),
                    passive_out: 0,
                },
                ServerState {
                    backend: "b\u{1}".into(),
                    server: "s".into(),
                    checked: None,
                    passive_out: 1,
                },
            ],
            staples: vec![
                StapleState {
                    vhost: "v".into(),
                    configured: true,
                    valid: true,
                    expiry_s: Some(5),
                    fetches: vec![("ok", 1)],
                },
                StapleState {
                    vhost: "w".into(),
                    configured: false,
                    valid: false,
                    expiry_s: None,
                    fetches: vec![],
                },
            ],
            ..Global::default()
        };
        (vec![a, b], g)
    }

    /// The exact text, as the hand-written writer made it (bar `\n` for `\u000a`): field
    /// order, fixed decimals for time and uptime, shortest floats elsewhere.
    #[test]
    fn snapshot_text_is_pinned() {
        let (cores, g) = fixture();
        let buckets = |low: u64, high: u64| {
            BUCKETS_S
                .iter()
                .map(|&le| {
                    format!(
                        r#"{{"le":{le},"count":{}}},"#,
                        if le < 1.0 { low } else { high }
                    )
                })
                .collect::<String>()
        };
        let want = r#"{"version":"0.1.0 \"x\"\\\n","generation":3,"time":1796456823.250,"uptime_s":12.3,"cores":[{"core":0,"connections_active":1,"tunnels_active":0,"requests_total":3,"messages_total":7},{"core":1,"connections_active":1,"tunnels_active":0,"requests_total":3,"messages_total":7}],"latency":{"count":6,"p50_s":0.000301,"p90_s":1.003519,"p99_s":1.003519,"histogram":[BUCKETS{"le":"+Inf","count":6}]},"backends":[{"backend":"chat","server":"127.0.0.1:9001","up":true,"state":"up","passive_out":0},{"backend":"b\u0001","server":"s","up":false,"state":"unchecked","passive_out":1}],"staples":[{"vhost":"v","configured":true,"valid":true,"expiry":5},{"vhost":"w","configured":false,"valid":false,"expiry":null}]}"#;
        assert_eq!(
            live_json(&cores, &g),
            want.replace("BUCKETS", &buckets(4, 6))
        );
        let empty = r#"{"version":"","generation":0,"time":0.000,"uptime_s":0.0,"cores":[],"latency":{"count":0,"p50_s":0,"p90_s":0,"p99_s":0,"histogram":[BUCKETS{"le":"+Inf","count":0}]},"backends":[],"staples":[]}"#;
        assert_eq!(
            live_json(&[], &Global::default()),
            empty.replace("BUCKETS", &buckets(0, 0))
        );
    }

    #[test]
    fn names_parse_back() {
        let (cores, mut g) = fixture();
        g.time_s = f64::NAN;
        let v: serde_json::Value = serde_json::from_str(&live_json(&cores, &g)).unwrap();
        assert_eq!(v["version"], "0.1.0 \"x\"\\\n");
        assert_eq!(v["backends"][1]["backend"], "b\u{1}");
        assert_eq!(v["time"], serde_json::Value::Null);
        assert_eq!(v["latency"]["histogram"][14]["le"], "+Inf");
    }
}
