//! The compiled, validated configuration. Everything here is immutable after start-up and
//! shared by every shard (`Arc<Config>`); nothing on the hot path parses strings again.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::route::UriMatch;
use crate::upstream::Address;

/// Defaults, named with units last. Each is documented in README's config reference.
pub const HEADER_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
pub const KEEPALIVE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
pub const TUNNEL_IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3600);
/// 32 KiB, as the issue says; nginx's large_client_header_buffers default is 4 x 8k.
pub const HEADER_BYTES_MAX_DEFAULT: usize = 32 * 1024;
/// Per-core connection cap when a `[[runtime.core]]` entry does not set one.
pub const CONNECTIONS_PER_CORE_MAX_DEFAULT: usize = 50_000;

#[derive(Debug, Clone)]
pub struct Config {
    pub runtime: Runtime,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub listeners: Vec<Listener>,
    pub backends: Vec<Backend>,
    pub vhosts: Vec<VHost>,
}

#[derive(Debug, Clone)]
pub struct Runtime {
    /// Number of shards (executors). `"auto"` is resolved at compile time to the online CPUs.
    pub cores: usize,
    pub pin: bool,
    /// Default per-core cap (`[runtime] max_connections`, else the constant above).
    pub max_connections: usize,
    pub core_overrides: Vec<CoreOverride>,
}

#[derive(Debug, Clone)]
pub struct CoreOverride {
    pub id: usize,
    pub max_connections: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub header: Duration,
    pub keepalive: Duration,
    pub connect: Duration,
    pub tunnel_idle: Duration,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_header_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct Backend {
    pub name: String,
    pub servers: Vec<Address>,
}

#[derive(Debug, Clone)]
pub struct VHost {
    pub name: String,
    /// Lower-cased: `"example.com"`, `"*.example.com"`, `"*"`.
    pub domains: Vec<String>,
    /// Names of listeners; empty = every listener.
    pub listeners: Vec<String>,
    /// Absolute (resolved against the config file's directory).
    pub doc_root: PathBuf,
    pub websockets: Vec<WebSocketRoute>,
    pub contexts: Vec<ContextRoute>,
}

#[derive(Debug, Clone)]
pub struct WebSocketRoute {
    pub uri: UriMatch,
    /// Servers to try in order (a backend's servers, or the single `address`).
    pub servers: Vec<Address>,
    /// Backend name for logs (`address` entries use the address text).
    pub target_name: String,
}

#[derive(Debug, Clone)]
pub struct ContextRoute {
    pub uri: UriMatch,
    pub handler: Handler,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    Static,
    Echo,
    /// HTTP reverse proxy to a backend (name). Answered 501 until the backend-pools issue.
    Proxy {
        backend: String,
    },
}
