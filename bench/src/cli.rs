//! `ringway-bench`'s command line: the mode to run and its options (clap).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use ringway_bench::parse_duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// Closed loop: each connection sends one message, waits for its echo, repeats. Latency.
    Echo,
    /// Large messages both ways with a window of messages in flight per connection. MB/s.
    Bulk,
    /// Open and hold many connections, then check each still echoes.
    Idle,
    /// Connect, handshake, one message, close; repeat. Handshakes/s.
    Churn,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Bulk => "bulk",
            Mode::Idle => "idle",
            Mode::Churn => "churn",
        }
    }
}

/// WebSocket load generator for Ringway's benchmarks.
#[derive(Parser, Debug)]
#[command(name = "ringway-bench", version)]
pub(crate) struct Args {
    /// What to measure.
    #[arg(value_enum)]
    pub(crate) mode: Mode,
    /// Target: ws://HOST:PORT/PATH, or wss://HOST:PORT/PATH for WebSocket over TLS 1.3
    /// (needs --ca).
    #[arg(long, default_value = "ws://127.0.0.1:9001/ws")]
    pub(crate) url: String,
    /// wss://: PEM file of the CA certificate(s) the server's certificate must chain to.
    #[arg(long)]
    pub(crate) ca: Option<PathBuf>,
    /// wss://: name to verify the certificate against and send as SNI (default: the URL's host;
    /// an IP address is matched against IP SANs and sends no SNI).
    #[arg(long)]
    pub(crate) sni: Option<String>,
    /// Connections (default: echo 64, bulk 4, idle 1000, churn 32 concurrent loops).
    #[arg(long)]
    pub(crate) conns: Option<usize>,
    /// Message payload bytes (default: 64; bulk 65536).
    #[arg(long)]
    pub(crate) size: Option<usize>,
    /// Measured interval (echo, bulk, churn), e.g. 10s, 500ms.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Unmeasured interval before it (echo, bulk, churn).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub(crate) warmup: Duration,
    /// Bulk: messages in flight per connection.
    #[arg(long, default_value_t = 4)]
    pub(crate) window: u32,
    /// Idle: how long to hold the connections once all are open. SIGUSR1, SIGINT or SIGTERM end
    /// the hold early (and end the measured interval in the other modes); a second one exits.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) hold: Duration,
    /// Idle: end the hold as soon as this file exists.
    #[arg(long)]
    pub(crate) stop_file: Option<PathBuf>,
    /// Idle: create this file once every connection is open (or has failed).
    #[arg(long)]
    pub(crate) ready_file: Option<PathBuf>,
    /// Idle: run this command (sh -c) once the connections are open; the hold lasts at least
    /// until it exits. Its stdout goes to our stderr; RINGWAY_BENCH_OPEN holds the open count.
    #[arg(long)]
    pub(crate) during: Option<String>,
    /// Source addresses: round-robin over 127.0.0.2 .. 127.0.0.(K+1) (bind before connect).
    /// 0 = automatic: one address per 25,000 connections, none below that.
    #[arg(long, default_value_t = 0)]
    pub(crate) sources: usize,
    /// Connects/handshakes in progress at once while opening connections.
    #[arg(long, default_value_t = 256)]
    pub(crate) max_pending: usize,
    /// Handshake timeout, and the longest wait for an echo.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Echo, bulk, churn: run this command (sh -c) right before the measured interval starts and
    /// right after it ends, with RINGWAY_BENCH_PHASE=start / end (e.g. to sample a proxy's CPU
    /// time). The event loop waits for it, so keep it short. Its stdout goes to our stderr.
    #[arg(long)]
    pub(crate) on_measure: Option<String>,
    /// Echo: open loop at N messages/s in all instead of the closed loop. Message k goes to
    /// connection k mod conns at start + k/N (a fixed schedule, sent whether or not earlier echoes
    /// came back), and its latency is measured from that scheduled time, so a stalled proxy's
    /// delay is counted, not hidden. At most 64 messages in flight per connection; what the
    /// schedule cannot send past that counts in `skipped`.
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Echo, churn: every message gets a payload of its own (derived from the connection and the
    /// message's number) and every echoed byte is compared with it; a message that differs in
    /// any byte or in length counts in `bad_echo`. For soak runs: it costs the generator a
    /// frame build per message.
    #[arg(long)]
    pub(crate) verify: bool,
    /// wss://: keep TLS sessions (tickets) and resume them on every reconnect, instead of a
    /// full handshake per connection (churn: the `wss-resume` test). Reports `resumed`.
    #[arg(long)]
    pub(crate) resume: bool,
}
