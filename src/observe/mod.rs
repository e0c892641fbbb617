//! Observation room: what Ringway says about itself. Per-core counters and latency histograms
//! merged on demand into Prometheus text and the dashboard's JSON (`metrics`), and access-log
//! line formatting (`accesslog`), and the rate limits of client-caused error-log lines
//! (`loglimit`). Formatting and policy only: the runtime owns the sockets and files.
//!
//! May import: `protocol`, `policy`, `config`.

pub mod accesslog;
pub mod loglimit;
pub mod metrics;
