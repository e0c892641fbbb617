//! I/O building blocks every connection uses; no routing, no handlers.
//!
//! - `io`: the read buffer and head search, bounded peeks, write helpers.
//! - `stream`: a client's stream (plain TCP or TLS) behind one type.
//! - `pool`: per-core buffer pools (two size classes, decaying).
//! - `idle`: per-connection deadlines (header, keep-alive, tunnel idle, send), swept per core.
//! - `memory`: resident and heap figures for `/metrics`.
//! - `process`: the standard `process_*` figures for `/metrics`, from `/proc`.
//! - `tunnel`: the byte pump between a client and a backend (WebSocket, CONNECT, L4), with
//!   frame tracking for the drain.
//! - `evict`: open WebSocket tunnels by backend server, closed spread over time by a drain.
//! - `splice`: bulk tunnels' zero-copy path (pipes, `splice(2)`), used by `tunnel`.
//!
//! May import: nothing else in the runtime.

pub mod evict;
pub(crate) mod idle;
pub(crate) mod io;
pub(crate) mod memory;
pub mod pool;
pub(crate) mod process;
pub mod splice;
pub(crate) mod stream;
pub mod tunnel;
