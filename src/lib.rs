//! Ringway: a thread-per-core io_uring reverse proxy for WebSockets, HTTP/1.1 and HTTP/2.
//!
//! The crate is five rooms, each allowed to import only the rooms listed before it
//! (ARCHITECTURE.md; `tests/layout.rs` enforces it, and that no module imports another in a
//! circle):
//!
//! 1. [`protocol`]: sans-IO parsers and state machines (HTTP/1.1 heads and bodies, WebSocket
//!    handshakes and frames, PROXY protocol, ClientHello SNI, OCSP). No sockets, no clock, no
//!    files.
//! 2. [`policy`]: sans-IO decisions (routing by host and URI, balancing and passive health,
//!    per-IP limits, CIDR lists, CONNECT rules, which static file answers a path). Time is
//!    passed in.
//! 3. [`config`]: TOML text → checked `Config` → the immutable tables the cores use
//!    (`Routes`, TLS server configs). Runs at start and at reload, never per request.
//! 4. [`observe`]: per-core metrics and access-log lines (formatting only; the runtime writes
//!    them).
//! 5. [`runtime`]: the thin glommio layer: cores, sockets, the data path, the control plane.

pub mod config;
pub mod observe;
pub mod policy;
pub mod protocol;
pub mod runtime;
