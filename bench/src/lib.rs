//! Shared code of Ringway's benchmark instruments: WebSocket frames and handshake, the TLS
//! client set-up, and the few system calls (limits, bound connects) the event loops need.

pub mod frame;
pub mod handshake;
pub mod sys;
pub mod tls;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// A parsed `ws://host:port/path` or `wss://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    pub addr: SocketAddr,
    /// `Host` header value (host[:port] as written).
    pub host: String,
    pub path: String,
    /// `wss://`: TLS over the TCP connection.
    pub tls: bool,
    /// The host without port or IPv6 brackets: the name a TLS client verifies (and sends as SNI
    /// unless it is an IP address).
    pub hostname: String,
}

pub fn parse_ws_url(url: &str) -> Result<WsUrl, String> {
    let (rest, tls) = if let Some(r) = url.strip_prefix("ws://") {
        (r, false)
    } else if let Some(r) = url.strip_prefix("wss://") {
        (r, true)
    } else {
        return Err(format!("{url}: only ws:// and wss:// URLs are supported"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("{url}: missing host"));
    }
    let default_port = if tls { 443 } else { 80 };
    let has_port = !authority.ends_with(']') && authority.contains(':');
    let with_port = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    };
    let hostname = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None if has_port => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
        None => authority,
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: host resolves to nothing"))?;
    Ok(WsUrl {
        addr,
        host: authority.to_string(),
        path: path.to_string(),
        tls,
        hostname: hostname.to_string(),
    })
}

/// Parses `10`, `10s`, `1.5s`, `500ms`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {s:?}"))?;
    if !(v >= 0.0 && v.is_finite()) {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_ws_url("ws://127.0.0.1:8088/ws").unwrap();
        assert_eq!(u.addr, "127.0.0.1:8088".parse().unwrap());
        assert_eq!(
            (u.host.as_str(), u.path.as_str()),
            ("127.0.0.1:8088", "/ws")
        );
        let u = parse_ws_url("ws://127.0.0.1:9001").unwrap();
        assert_eq!(u.path, "/");
        let u = parse_ws_url("ws://[::1]:9001/a?b=c").unwrap();
        assert_eq!(u.addr, "[::1]:9001".parse().unwrap());
        assert_eq!(u.path, "/a?b=c");
        assert_eq!(u.hostname, "::1");
        assert!(!u.tls);
        assert!(parse_ws_url("http://127.0.0.1/").is_err());
    }

    #[test]
    fn wss_urls() {
        let u = parse_ws_url("wss://127.0.0.1:8443/ws").unwrap();
        assert!(u.tls);
        assert_eq!(u.addr, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(
            (u.host.as_str(), u.hostname.as_str(), u.path.as_str()),
            ("127.0.0.1:8443", "127.0.0.1", "/ws")
        );
        let u = parse_ws_url("wss://127.0.0.1/").unwrap();
        assert_eq!(u.addr, "127.0.0.1:443".parse().unwrap());
        let u = parse_ws_url("wss://[::1]/x").unwrap();
        assert_eq!(u.addr, "[::1]:443".parse().unwrap());
        assert_eq!((u.host.as_str(), u.hostname.as_str()), ("[::1]", "::1"));
        let u = parse_ws_url("wss://localhost:8443/").unwrap();
        assert_eq!(u.hostname, "localhost");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
