//! Protocol room: sans-IO parsers, codecs and state machines. Nothing here opens a socket,
//! reads a file or reads the clock (a time, when one matters, is passed in), so every module
//! is tested with byte slices and fuzzed (`fuzz/`).
//!
//! May import: nothing else in the crate (only other `protocol` modules).
//!
//! - `http`: HTTP/1.1 heads (httparse, zero-copy), the head forwarded to a backend, heads
//!   Ringway writes, chunked framing, and the HTTP/2 ↔ HTTP/1.1 field mapping.
//! - `ws`: WebSocket upgrades (RFC 6455 handshake checks) and the frame header codec.
//! - `ws_endpoint`: the server end of a WebSocket (tunnel mode's and the echo endpoint's
//!   decoder: reassembly, UTF-8, close codes).
//! - `proxy_protocol`: PROXY protocol v1/v2, read and written.
//! - `tls_hello`: the SNI of a ClientHello (TLS passthrough).
//! - `ocsp`: OCSP requests, responses and their verification (RFC 6960), refresh schedule.

pub mod http;
pub mod ocsp;
pub mod proxy_protocol;
pub mod tls_hello;
pub mod ws;
pub mod ws_endpoint;
