//! The compiled, validated configuration. Everything here is immutable after start-up and
//! shared by every shard (`Arc<Config>`); nothing on the hot path parses strings again.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::policy::route::UriMatch;
use crate::policy::upstream::Address;

/// Defaults, named with units last. Each is documented in README's config reference.
pub const HEADER_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
pub const KEEPALIVE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
pub const TUNNEL_IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3600);
/// 32 KiB, as the issue says; nginx's large_client_header_buffers default is 4 x 8k.
pub const HEADER_BYTES_MAX_DEFAULT: usize = 32 * 1024;
/// Per-core connection cap when a `[[runtime.core]]` entry does not set one.
pub const CONNECTIONS_PER_CORE_MAX_DEFAULT: usize = 50_000;
pub const UPSTREAM_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);
pub const UPSTREAM_KEEPALIVE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Graceful drain: in-flight requests and WebSocket close handshakes get this long.
pub const DRAIN_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// A client that accepts no byte of a pending write for this long is cut (nginx's
/// `send_timeout` is 60 s too).
pub const SEND_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);
/// Further attempts on other servers after a failed one.
pub const RETRIES_DEFAULT: u32 = 2;
pub const MAX_FAILS_DEFAULT: u32 = 3;
pub const FAIL_WINDOW_DEFAULT: Duration = Duration::from_secs(10);
pub const FAIL_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Idle keep-alive connections kept per server per core: no cap by default. A cap below the
/// concurrency of a load makes every burst close and reopen backend connections (measured:
/// 32 under 64 clients cost 1.5x nginx's CPU per request); idle ones are bounded in time by
/// `timeouts.upstream_keepalive` instead, as HAProxy bounds them.
pub const KEEPALIVE_PER_SERVER_DEFAULT: usize = usize::MAX;

#[derive(Debug, Clone)]
pub struct Config {
    pub runtime: Runtime,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub listeners: Vec<Listener>,
    pub backends: Vec<Backend>,
    pub vhosts: Vec<VHost>,
    /// `[admin]`: metrics, dashboard and live feed on one listener; `None` = no admin endpoint.
    pub admin: Option<Admin>,
    /// `[log]`: the access log.
    pub log: Log,
    /// `[[tcp_route]]`: `mode = "tcp"` listeners forwarding raw bytes to a pool.
    pub tcp_routes: Vec<TcpRoute>,
    /// `[[tls_passthrough]]`: TLS connections forwarded untouched, by SNI.
    pub tls_passthrough: Vec<Passthrough>,
    /// `[tls]`: session resumption shared by every TLS listener and core.
    pub tls: TlsSettings,
    /// `[dns]`: resolving server names.
    pub dns: Dns,
    /// What `ringway check` warns about (the config is valid): `LINE:COL: warning: message`.
    pub warnings: Vec<Warning>,
}

/// `[tls] ticket_keys = "FILE", session_cache = N`.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The keys of `ticket_keys` (read and checked at load, so re-read on every reload), and
    /// the file they came from. `None`: the process makes and rotates its own.
    pub ticket_keys: Option<(PathBuf, crate::config::tickets::TicketKeys)>,
    /// Entries in the TLS 1.2 session-ID cache shared by the cores.
    pub session_cache: usize,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            ticket_keys: None,
            session_cache: crate::config::tickets::SESSION_CACHE_DEFAULT,
        }
    }
}

/// Something valid but unwise in a config file, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// `[[tcp_route]] listener = "...", backend = "..."` (indexes into `listeners`, `backends`).
#[derive(Debug, Clone)]
pub struct TcpRoute {
    pub listener: usize,
    pub backend: usize,
}

/// `[[tls_passthrough]] listener = "...", sni = [...], backend = "..."`.
#[derive(Debug, Clone)]
pub struct Passthrough {
    pub listener: usize,
    /// Lower-cased names; `*.suffix` matches one or more labels before the suffix.
    pub sni: Vec<String>,
    pub backend: usize,
}

impl Passthrough {
    pub fn matches(&self, sni: &str) -> bool {
        self.sni.iter().any(|p| {
            p == "*"
                || match p.strip_prefix("*.") {
                    Some(suffix) => sni
                        .strip_suffix(suffix)
                        .and_then(|head| head.strip_suffix('.'))
                        .is_some_and(|labels| !labels.is_empty()),
                    None => p == sni,
                }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerMode {
    Http,
    /// Raw TCP to the listener's `[[tcp_route]]` backend.
    Tcp,
}

/// `[admin]`: served only on `listener` (an index into `Config::listeners`), to peers in `allow`.
#[derive(Debug, Clone)]
pub struct Admin {
    /// The admin listener (`None`: only the control socket).
    pub listener: Option<usize>,
    /// Who may use the admin listener (`/healthz` answers everyone).
    pub allow: Vec<crate::policy::cidr::Cidr>,
    /// `[admin] socket`: the control socket's path (absolute).
    pub socket: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessTarget {
    Off,
    Stderr,
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessFormat {
    Combined,
    Json,
}

#[derive(Debug, Clone)]
pub struct Log {
    pub access: AccessTarget,
    pub access_format: AccessFormat,
}

#[derive(Debug, Clone)]
pub struct Runtime {
    /// Number of shards (executors). `"auto"` is resolved at compile time to the online CPUs.
    pub cores: usize,
    pub pin: bool,
    /// Default per-core cap (`[runtime] max_connections`, else the constant above).
    pub max_connections: usize,
    pub core_overrides: Vec<CoreOverride>,
    /// Where the running process writes its pid (`ringway reload` and `ringway upgrade` read it).
    pub pid_file: Option<PathBuf>,
    /// `[runtime] user` (and `group`): whom Ringway runs as once its listeners are bound and
    /// its keys read.
    pub user: Option<RunAs>,
}

/// A user and group looked up when the config is loaded (`ringway check` says when they do
/// not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub user: String,
    pub uid: u32,
    /// `group`, else the user's primary group.
    pub gid: u32,
}

/// One `[[runtime.core]]` entry (`config::cores` lays it over the defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreOverride {
    pub id: usize,
    pub max_connections: Option<usize>,
    /// `cpu`: pin the core to this CPU (checked against the process's affinity).
    pub cpu: Option<usize>,
    /// `listeners`: accept only on these (names of `[[listener]]`s); `None`: on every one.
    pub listeners: Option<Vec<String>>,
    /// `ring_entries`: the io_uring rings' size (a power of two).
    pub ring_entries: Option<usize>,
    /// `read_buffer`: bytes one tunnel read takes at most.
    pub read_buffer: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub header: Duration,
    pub keepalive: Duration,
    pub connect: Duration,
    pub tunnel_idle: Duration,
    /// No response head from an HTTP backend within this → 504. Between body reads, a stream
    /// with data flowing is never cut; only a silence this long ends it.
    pub upstream_read: Duration,
    /// Idle pooled backend connections are closed after this.
    pub upstream_keepalive: Duration,
    /// Graceful drain (SIGTERM, upgrade): what is still open after this is closed.
    pub drain: Duration,
    /// The drain's 1001 closes of tunnels are spread evenly over this long (shorter than
    /// `drain`; zero: all at once).
    pub drain_spread: Duration,
    /// A write to the client that makes no progress for this long closes the connection.
    pub send: Duration,
    /// After SIGTERM: keep serving this long while `/healthz` answers 503, then drain.
    pub lameduck: Duration,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_header_bytes: usize,
    /// Open connections per client IP, per core; over it a new connection is closed at once.
    pub max_connections_per_ip: Option<u32>,
    /// WebSocket upgrades per client IP, per core (token bucket); over it: 429.
    pub upgrades_per_ip: Option<crate::policy::limits::Rate>,
    /// HTTP/2: streams a client may have open at once on one connection.
    pub max_concurrent_streams: u32,
}

pub const MAX_CONCURRENT_STREAMS_DEFAULT: u32 = 128;

#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    /// Terminate TLS here; certificates come from the vhosts' `[vhost.tls]`, chosen by SNI.
    pub tls: bool,
    /// Every connection starts with a PROXY protocol header (v1 or v2): its client address is
    /// the peer everywhere.
    pub proxy_protocol: bool,
    pub mode: ListenerMode,
    /// CONNECT requests here go to the vhost's `handler = "connect"` context.
    pub forward_proxy: bool,
    /// TLS listeners: the ALPN protocols offered, in order (`h2`, `http/1.1`).
    pub alpn: Vec<String>,
    /// Plain listeners: HTTP/2 with prior knowledge (h2c) besides HTTP/1.1.
    pub http2: bool,
    /// `redirect_https = true` (plain listeners): every request gets a 308 to
    /// `https://{host}{uri}`, except `/.well-known/acme-challenge/` (static, from the doc root).
    pub redirect_https: bool,
}

/// `send_proxy`: the PROXY protocol header Ringway writes first on every backend connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendProxy {
    V1,
    V2,
}

#[derive(Debug, Clone)]
pub struct Backend {
    pub name: String,
    pub servers: Vec<Server>,
    pub balance: Balance,
    /// Further attempts, each on a different server, after a failed one.
    pub retries: u32,
    /// Failed attempts within `fail_window` (on one core) that take a server out...
    pub max_fails: u32,
    pub fail_window: Duration,
    /// ...for this long.
    pub fail_timeout: Duration,
    pub health: Option<Health>,
    pub keepalive_per_server: usize,
    /// Write a PROXY header (the client's address) first on every connection to a server;
    /// such connections are never pooled (each belongs to one client).
    pub send_proxy: Option<SendProxy>,
    /// Made by the loader for a `[[vhost.websocket]] address = "..."` entry.
    pub implicit: bool,
    /// `tls = { ca_file = "...", server_name = "..." }`, for `tls://` servers.
    pub tls: Option<BackendTls>,
    /// A drained server's tunnels are closed spread evenly over this long (`drain_spread`).
    pub drain_spread: Duration,
    /// `hash_key`: where a `balance = "hash"` backend finds a request's key.
    pub hash_key: Option<crate::policy::sticky::HashKey>,
    /// `sticky_cookie`: the cookie a `balance = "cookie"` backend pins clients with.
    pub sticky_cookie: String,
    /// `sticky_secret`: the key of the server ids in that cookie (default: the backend's name).
    pub sticky_secret: String,
}

/// A backend's `sticky_cookie` when it has none.
pub const STICKY_COOKIE_DEFAULT: &str = "rw_srv";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTls {
    pub ca_file: PathBuf,
    /// Name to verify (and send as SNI); `None`: the server's IP, matched against IP SANs.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub address: Address,
    pub weight: u32,
    /// Line and column of the entry in the config file (1-based; 0 when made by the loader),
    /// for `ringway check`'s warnings about names that do not resolve.
    pub pos: (usize, usize),
}

/// `[dns]`: how server names are resolved (by the control plane, never on a serving core).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    /// Name servers to ask; empty: those of `/etc/resolv.conf`.
    pub servers: Vec<std::net::SocketAddr>,
    /// A record's TTL is clamped to `min_ttl..=max_ttl` before it is re-resolved.
    pub min_ttl: Duration,
    pub max_ttl: Duration,
}

impl Default for Dns {
    fn default() -> Dns {
        Dns {
            servers: Vec::new(),
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(300),
        }
    }
}

/// A backend's `drain_spread` when it has none: closes of a drained server's tunnels are
/// spread over this long.
pub const DRAIN_SPREAD_DEFAULT: Duration = Duration::from_secs(30);

pub use crate::policy::balance::Balance;

/// Active health checks, run by one core and published to all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes to mark a down server up.
    pub rise: u32,
    /// Consecutive failures to mark an up server down.
    pub fall: u32,
    /// `GET` this path and expect 2xx/3xx; `None` = TCP connect check.
    pub http_path: Option<String>,
}

impl Backend {
    /// A one-server pool with default settings (for `address = ...` routes).
    /// What the balancer needs of this backend.
    pub fn balance_settings(&self) -> crate::policy::balance::Settings {
        crate::policy::balance::Settings {
            balance: self.balance,
            max_fails: self.max_fails,
            fail_window: self.fail_window,
            fail_timeout: self.fail_timeout,
        }
    }

    pub fn single(address: Address, name: String) -> Backend {
        Backend {
            name: name.clone(),
            servers: vec![Server {
                address,
                weight: 1,
                pos: (0, 0),
            }],
            balance: Balance::RoundRobin,
            retries: 0,
            max_fails: MAX_FAILS_DEFAULT,
            fail_window: FAIL_WINDOW_DEFAULT,
            fail_timeout: FAIL_TIMEOUT_DEFAULT,
            health: None,
            keepalive_per_server: KEEPALIVE_PER_SERVER_DEFAULT,
            send_proxy: None,
            implicit: true,
            tls: None,
            drain_spread: DRAIN_SPREAD_DEFAULT,
            hash_key: None,
            sticky_cookie: STICKY_COOKIE_DEFAULT.to_string(),
            sticky_secret: name.clone(),
        }
    }
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
    pub tls: Option<VHostTls>,
    /// `response_headers`: applied to every answer of this vhost, before a route's own.
    pub response_headers: HeaderRules,
    /// `request_headers`: applied to what a backend sees, before a route's own.
    pub request_headers: HeaderRules,
    /// `error_pages = { 404 = "errors/404.html" }`: the files' contents, read at load.
    pub error_pages: Vec<ErrorPage>,
    /// Set by `Routes::compile` (per core): this vhost's entry in `Routes::styles`, when its
    /// answers need one (header rules or error pages).
    pub style: Option<usize>,
    /// `compress`, `precompressed`, `cache_control`, …: for requests no context matches.
    pub delivery: crate::policy::delivery::Delivery,
}

/// One `error_pages` entry: Ringway's own `status` answers carry `body` as `text/html`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPage {
    pub status: u16,
    pub body: Vec<u8>,
}

pub use crate::policy::access::{Access, Auth};
pub use crate::policy::headers::{HeaderRules, RedirectTarget};

/// What a context or WebSocket route adds to its vhost: header rules, who may use it, a
/// per-IP request rate, and timeouts of its own.
#[derive(Debug, Clone, Default)]
pub struct RouteRules {
    pub response_headers: HeaderRules,
    pub request_headers: HeaderRules,
    /// `auth`, `allow_from`, `deny_from`.
    pub access: Access,
    /// `requests_per_ip = "100/1s"` (contexts): a token bucket per client IP per core.
    pub requests_per_ip: Option<crate::policy::limits::Rate>,
    pub timeouts: RouteTimeouts,
    /// Set by `Routes::compile` (per core): the route's entry in `Routes::styles`.
    pub style: Option<usize>,
    /// Set by `Routes::compile` (per core): the route's bucket table in `Routes::limiters`.
    pub limiter: Option<usize>,
}

/// `timeouts = { ... }` on a route: each overrides the global `[timeouts]` value where the
/// route uses it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteTimeouts {
    pub connect: Option<Duration>,
    pub upstream_read: Option<Duration>,
    pub tunnel_idle: Option<Duration>,
    pub send: Option<Duration>,
    /// The backend's answer head (a WebSocket route's `101`, a proxy context's response head).
    pub header: Option<Duration>,
}

/// `[vhost.tls]`: the certificate for this vhost's names on TLS listeners.
#[derive(Debug, Clone)]
pub struct VHostTls {
    /// PEM: leaf first, then the chain.
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ocsp: Option<Ocsp>,
}

/// `[vhost.tls.ocsp]`: stapling for this vhost's certificate.
#[derive(Debug, Clone)]
pub struct Ocsp {
    /// `http://` responder URL; default: the certificate's AIA OCSP URL.
    pub responder: Option<String>,
    /// Trust anchor for responses; default: the issuer from the certificate chain.
    pub ca_file: Option<PathBuf>,
    /// Good responses are kept here and reloaded at start-up while still valid.
    pub cache_dir: Option<PathBuf>,
    pub retry_min: Duration,
    pub retry_max: Duration,
}

#[derive(Debug, Clone)]
pub struct WebSocketRoute {
    pub uri: UriMatch,
    /// Index into `Config::backends` (an `address` entry has an implicit backend).
    pub backend: usize,
    /// `origins`: allowed `Origin` values (lower-cased; `scheme://*.domain[:port]` wildcards).
    /// Empty: no check.
    pub origins: Vec<String>,
    /// `allow_missing_origin`: an upgrade without `Origin` passes the list (non-browser
    /// clients send none).
    pub allow_missing_origin: bool,
    /// `mode = "tunnel"`: Ringway ends the WebSocket itself and passes message payloads to a
    /// raw TCP/UDS backend. `None`: `mode = "proxy"`, the upgrade goes to the backend.
    pub tunnel: Option<TunnelMode>,
    pub rules: RouteRules,
}

/// `[[vhost.websocket]] mode = "tunnel"` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelMode {
    /// `frame`: what the backend's bytes are sent to the client as (`"text"`, the default, or
    /// `"binary"`).
    pub text: bool,
    /// `subprotocols`: offered back when the client asks for one of them.
    pub subprotocols: Vec<String>,
    /// `ping_interval` (default 30 s; `"0s"` = `None`, no pings).
    pub ping_interval: Option<Duration>,
    /// `max_message` (default 1 MiB): a larger message from the client → Close 1009.
    pub max_message: usize,
}

pub const TUNNEL_PING_INTERVAL_DEFAULT: Duration = Duration::from_secs(30);
pub const TUNNEL_MAX_MESSAGE_DEFAULT: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ContextRoute {
    pub uri: UriMatch,
    pub handler: Handler,
    pub rules: RouteRules,
    /// The context's delivery keys over its vhost's.
    pub delivery: crate::policy::delivery::Delivery,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    Static,
    Echo,
    /// HTTP reverse proxy to `Config::backends[backend]`, optionally with a fixed `Host`.
    Proxy {
        backend: usize,
        host: Option<String>,
    },
    /// CONNECT forward proxy (on a `forward_proxy = true` listener): tunnels to targets that
    /// `allow` admits; `users` (from `auth.users_file`) demand `Proxy-Authorization: Basic`.
    Connect {
        allow: Vec<crate::policy::connect::Rule>,
        users: Option<crate::policy::access::Users>,
    },
    /// `handler = "redirect"`: `status` (301, 302, 303, 307, 308) with `Location: to`.
    Redirect {
        to: RedirectTarget,
        status: u16,
    },
    /// `handler = "respond"`: a fixed answer, `body` as `text/plain`.
    Respond {
        status: u16,
        body: String,
    },
}
