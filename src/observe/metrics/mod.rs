//! Metrics: plain per-core counters and hdrhistogram latency histograms (sans-IO).
//!
//! Each core owns one `CoreMetrics` (a thread-local: one executor per thread) and updates it
//! with plain `Cell` arithmetic: no atomics, no locks, nothing shared per request or message.
//! Names that label series (listeners, vhosts, backends, servers) are interned per core into
//! ids that never change, so a config reload keeps counting into the same series. On demand
//! (an admin request) every core copies its state into a `CoreSnapshot`, which crosses to the
//! asking core; `render` merges snapshots into Prometheus text format 0.0.4 and `live_json`
//! into the dashboard's JSON.
//!
//! What lives where:
//!
//! - `core`: the per-core registry (`CoreMetrics`, `with`), interned `Ids`, and the label sets
//!   the counters are indexed by (`HandlerKind`, `Rejected`, status classes, close codes).
//! - `histogram`: `Latency` (an hdrhistogram with its exact sum), the per-core `Histograms`,
//!   the Prometheus bucket bounds.
//! - `snapshot`: `CoreMetrics::snapshot`, `CoreSnapshot`, the state kept outside the cores
//!   (`Global`, `MemoryState`, `StapleState`), and merging histograms over cores.
//! - `prometheus`: the `/metrics` text (`render`).
//! - `live`: the dashboard's JSON (`live_json`).
//!
//! Callers name everything through this module (`crate::observe::metrics::X`); the children
//! import one another by their own paths, never through these re-exports.

mod core;
mod histogram;
mod live;
mod prometheus;
mod snapshot;

pub use self::core::{
    with, CoreMetrics, HandlerKind, Ids, Rejected, HANDLERS, NO_VHOST, REJECT_REASONS,
    WS_CLOSE_CODES,
};
pub use self::core::{Handshake, HANDSHAKE_RESULTS};
pub use self::histogram::clock_s;
pub use self::histogram::{Latency, BUCKETS_S};
pub use self::live::live_json;
pub use self::prometheus::render;
pub use self::snapshot::{
    request_latency, CoreSnapshot, Global, MemoryState, ProcessState, ServerState, StapleState,
};
