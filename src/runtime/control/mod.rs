//! The control plane: what runs off the data path and publishes to the cores.
//!
//! - `directory`: every backend's servers, their admin state and weight (the control API's
//!   model).
//! - `hub`: the cross-core mailboxes (crossbeam) and the configuration `Generation` they carry.
//! - `signals`: the main thread's control loop: SIGHUP reload, SIGTERM drain, SIGUSR2 binary
//!   upgrade (socket hand-over), pid file, systemd notification.
//! - `ocsp`: the dedicated OCSP core that fetches, verifies and publishes staples.
//! - `lifecycle`: each core's side: its mailbox loop, drain, swapping in a generation.
//!
//! `hub` imports only `net` and `backend`; `lifecycle` may import `shard` and `conn::accept`.

pub mod directory;
pub mod hub;
pub(crate) mod lifecycle;
pub(crate) mod ocsp;
pub(crate) mod signals;
