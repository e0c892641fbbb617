//! The control plane: what runs off the data path and publishes to the cores.
//!
//! - `hub`: the cross-core mailboxes (crossbeam) and the configuration `Generation` they carry.
//! - `signals`: the main thread's control loop: SIGHUP reload, SIGTERM drain, SIGUSR2 binary
//!   upgrade (socket hand-over), pid file, systemd notification.
//! - `ocsp`: the dedicated OCSP core that fetches, verifies and publishes staples.
//! - `lifecycle`: each core's side: its mailbox loop, drain, swapping in a generation.
//! - `directory`: every backend's servers (static and found by DNS), admin states and weights,
//!   published to the cores; `dns`: the resolver it asks (hickory, off the cores).
//!
//! `hub` imports only `net`, `backend` and `directory`; `directory` imports `backend` and
//! `dns`; `lifecycle` may import `shard` and `conn::accept`.

pub mod directory;
pub(crate) mod dns;
pub mod hub;
pub(crate) mod lifecycle;
pub(crate) mod ocsp;
pub(crate) mod signals;
