//! The backend side of a core: server pools (balancing, passive and active health, keep-alive
//! connections, `Lease`) in `pools`, and connecting to one server (TCP, Unix socket, TLS,
//! PROXY header) in `upstream`; the server sets the control plane publishes to the cores in
//! `servers`.
//!
//! May import: `net`.

pub(crate) mod pools;
pub mod servers;
pub(crate) mod upstream;
