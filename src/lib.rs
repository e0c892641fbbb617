//! Ringway: a thread-per-core io_uring reverse proxy for WebSockets and HTTP/1.1.
//!
//! Protocol logic is sans-IO and unit-tested: `http` (heads, forwarding, chunked framing),
//! `ws` (handshake checks, frames), `route` (vhosts and URIs), `static_files`, `config`.
//! `runtime` is the thin glommio layer that moves bytes between sockets.

pub mod accesslog;
pub mod balance;
pub mod cidr;
pub mod config;
pub mod connect;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod ocsp;
pub mod proxy_protocol;
pub mod route;
pub mod runtime;
pub mod static_files;
pub mod tls;
pub mod tls_hello;
pub mod upstream;
pub mod ws;
pub mod ws_endpoint;
