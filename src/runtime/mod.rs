//! Runtime room: the thin glommio layer. One pinned `LocalExecutor` per configured core, each
//! with its own `SO_REUSEPORT` listeners, routes, buffer pools and connection cap.
//! Connections live and die on the core that accepted them; cores share nothing mutable. The
//! process's main thread runs the control plane (signals, reload, OCSP core, upgrade) and talks
//! to the cores over mailboxes.
//!
//! Folders, lowest first; each may import only those before it (and the crate's sans-IO rooms):
//!
//! - `net`: I/O building blocks: read buffers and write helpers, the client stream (TCP or
//!   TLS), per-core buffer pools, per-connection timers (`idle`), the byte pump of a tunnel.
//! - `backend`: the backend side: per-core server pools with balancing and keep-alive
//!   connections, active health checks, connecting to a server (`upstream`).
//! - `control::hub`: the cross-core mailboxes and the configuration generation they carry.
//! - `shard`: a core (`Core`) and what one configuration compiles to on it (`Shard`).
//! - `conn::client`, `conn::access`, `conn::perip`: the HTTP/1.1 connection's session types
//!   and error responders, the access-log writer, per-IP limit tables.
//! - `handlers`: one module per `handler`/`mode`: admin, echo, static files, HTTP proxy (and
//!   its streamed relay), WebSocket proxy, tunnel mode, CONNECT, L4. They import
//!   `conn::client`, never the dispatcher.
//! - `h2`: HTTP/2 (the h2 crate): the connection driver, streams, extended CONNECT.
//! - `conn::dispatch`: read a head, route it, call the handler; `conn::accept`: accept loops,
//!   PROXY header, TLS handshake, then HTTP/1.1, HTTP/2 or L4.
//! - `control`: signals, reload, drain, binary upgrade, the OCSP core, each core's mailbox
//!   loop (`lifecycle`).
//! - `preflight`: what start, reload and `ringway check` check before serving (io_uring,
//!   listener addresses, descriptors, certificates and files); `privdrop`: `[runtime] user`.
//! - `start`: process start.

mod backend;
mod conn;
pub mod control;
mod h2;
mod handlers;
pub mod net;
pub mod preflight;
mod privdrop;
mod shard;
mod start;

pub use control::directory::unresolved as unresolved_names;
pub use control::signals::{send_signal, Inherited};
pub use start::run;
