//! The control plane: what runs off the data path and publishes to the cores.
//!
//! - `directory`: every backend's servers, their admin state and weight (the control API's
//!   model).
//! - `api`: the control API's answers (`/api/...`, `/healthz`), on control-plane threads.
//! - `socket`: the control socket (`[admin] socket`), HTTP/1.1 over a Unix socket, mode 0600.
//! - `ctl`: the socket's client side (`ringway ctl`, `ringway reload`).
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

pub mod api;
pub mod ctl;
pub mod directory;
pub(crate) mod dns;
pub mod hub;
pub(crate) mod lifecycle;
pub(crate) mod ocsp;
pub(crate) mod signals;
pub(crate) mod socket;
