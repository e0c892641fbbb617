//! One module per `handler` / `mode`: what Ringway does with a routed request.
//!
//! - `admin`: `/metrics`, the dashboard, the `/live` feed.
//! - `echo`: the built-in WebSocket echo endpoint.
//! - `static_serve`: static files (`sendfile` for large ones).
//! - `compress`: on-the-fly compression of static files and proxied bodies (HTTP/1.1).
//! - `proxy`: the HTTP backend path (keep-alive pools, retries); `relay`: streamed bodies.
//! - `wsproxy`: WebSocket upgrades to a backend, checked `101`, then a tunnel.
//! - `wstunnel`: tunnel mode (Ringway ends the WebSocket, raw TCP/UDS backend).
//! - `forward`: the CONNECT forward proxy's tunnel.
//! - `l4`: `mode = "tcp"` listeners and TLS passthrough by SNI.
//!
//! May import: `net`, `backend`, `shard`, `conn::client`, `conn::access`, `conn::perip`, and
//! other handlers below them (relay → proxy, wsproxy → wstunnel). Never `conn::dispatch` or
//! `conn::accept`, which import the handlers.

pub(crate) mod admin;
pub(crate) mod compress;
pub(crate) mod echo;
pub(crate) mod forward;
pub(crate) mod l4;
pub(crate) mod proxy;
pub(crate) mod relay;
pub(crate) mod static_serve;
pub(crate) mod wsproxy;
pub(crate) mod wstunnel;
