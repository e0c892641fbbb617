//! HTTP/2 downstream (RFC 9113) with RFC 8441 WebSockets, over the `h2` crate.
//!
//! A connection is an `h2` server connection driven over the client stream (`io::Wire` maps
//! glommio's futures-io traits onto the tokio ones `h2` takes). Its task polls
//! the connection (which does its I/O) and spawns one task per stream. A stream is routed like
//! an HTTP/1.1 request on the same listener: vhost by `:authority`, then the URI's route.
//! Errors get the same statuses as over HTTP/1.1.
//!
//! Modules, lowest first; each imports only those before it (by their own paths, never through
//! this file, which declares them and re-exports the entry point `serve`):
//!
//! - `preface`: the client stream under h2, watched until the client's preface (magic and
//!   SETTINGS) is complete.
//! - `ctx`: what a connection's streams share (`ConnCtx`, with the rapid-reset count), one
//!   stream's record for the access log and metrics (`Exchange`), the error answer.
//! - `io`: the client stream under h2 (`Wire`); sending within a stream's flow-control window; `H2Io`, a stream's DATA frames as a
//!   byte stream.
//! - `proxy`: a stream proxied to an HTTP/1.1 backend, bodies streamed both ways, trailers.
//! - `connect`: extended CONNECT (RFC 8441): WebSocket proxy mode, tunnel mode, echo.
//! - `stream`: one request stream: routing, static files, the hand-off to `proxy`/`connect`.
//! - `driver`: the connection: handshake and SETTINGS, the accept loop, GOAWAY on drain,
//!   keep-alive and rapid reset.

mod connect;
mod ctx;
mod driver;
mod io;
mod preface;
mod proxy;
mod stream;

pub use driver::serve;
