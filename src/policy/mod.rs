//! Policy room: sans-IO decisions about where a request goes and whether it may. No sockets;
//! time is passed in; randomness comes from seeded generators. Compiled once per
//! configuration, then read on the data path without allocating.
//!
//! May import: `protocol`.
//!
//! - `headers`: header rules (`response_headers`, `request_headers`) and redirect targets.
//! - `access`: who may use a route: Basic users (bcrypt or plain), CIDR allow/deny lists.
//! - `route`: URI matchers and the host table (exact, wildcard, default vhost).
//! - `balance`: server selection (round robin, least connections, IP hash, random of two) and
//!   passive health.
//! - `limits`: per-client-IP connection counts and upgrade token buckets.
//! - `cidr`: CIDR blocks for allow-lists.
//! - `connect`: the CONNECT proxy's target, allow rules and Basic auth.
//! - `upstream`: backend server addresses.
//! - `discovery`: DNS discovery's decisions: TTL bounds, SRV priority groups, the order and
//!   times of a drain's spread closes.
//! - `static_files`: which file answers a path, and its headers.
//! - `sticky`: session stickiness: cookie server ids, hash keys, rendezvous hashing.
//! - `delivery`: a route's compression, precompressed variants and `Cache-Control`, and whether
//!   one response is compressed.

pub mod access;
pub mod balance;
pub mod cidr;
pub mod connect;
pub mod delivery;
pub mod discovery;
pub mod headers;
pub mod limits;
pub mod route;
pub mod static_files;
pub mod sticky;
pub mod upstream;
