//! Backend addresses (sans-IO parsing). The connect path lives in `runtime::backend::upstream`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A backend server address: `IP:port`, `[IPv6]:port`, `uds:///absolute/path`, or
/// `tls://IP:port` (TLS to the backend, verified against the backend's `tls.ca_file`); or a
/// name the control plane resolves into such addresses: `name:port`, `tls://name:port`, or
/// `srv://_service._proto.name` (an SRV record set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp(SocketAddr),
    Unix(PathBuf),
    Tls(SocketAddr),
    /// `name:port` (A and AAAA records), `tls://name:port` with `tls`.
    Name {
        host: String,
        port: u16,
        tls: bool,
    },
    /// `srv://name`: the SRV records of `name` give targets, ports and weights.
    Srv(String),
}

impl Address {
    pub fn parse(text: &str) -> Result<Address, String> {
        if let Some(path) = text.strip_prefix("uds://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "unix socket address {text:?} needs an absolute path: uds:///path/to.sock"
                ));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        if let Some(name) = text.strip_prefix("srv://") {
            return if is_host_name(name) {
                Ok(Address::Srv(
                    name.trim_end_matches('.').to_ascii_lowercase(),
                ))
            } else {
                Err(format!(
                    "invalid address {text:?}: expected srv://_service._proto.name"
                ))
            };
        }
        if let Some(rest) = text.strip_prefix("tls://") {
            if let Ok(a) = rest.parse::<SocketAddr>() {
                return Ok(Address::Tls(a));
            }
            return named(rest, true).ok_or_else(|| {
                format!("invalid address {text:?}: expected tls://IP:port, tls://[IPv6]:port or tls://name:port")
            });
        }
        if let Ok(a) = text.parse::<SocketAddr>() {
            return Ok(Address::Tcp(a));
        }
        named(text, false).ok_or_else(|| {
            format!(
                "invalid address {text:?}: expected IP:port, [IPv6]:port, name:port, uds:///path, tls://IP:port or srv://name"
            )
        })
    }

    /// Whether this is a name the control plane resolves (`name:port` or `srv://`).
    pub fn is_name(&self) -> bool {
        matches!(self, Address::Name { .. } | Address::Srv(_))
    }
}

/// `name:port` with a DNS host name (not an IP literal).
fn named(text: &str, tls: bool) -> Option<Address> {
    let (host, port) = text.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|&p| p > 0)?;
    if !is_host_name(host) || host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    // A name of digits and dots only is a mistyped IPv4 address, not a host.
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    Some(Address::Name { host, port, tls })
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_`, each 1 to 63 bytes,
/// 253 bytes in all (a final dot allowed).
fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Unix(p) => write!(f, "uds://{}", p.display()),
            Address::Tls(a) => write!(f, "tls://{a}"),
            Address::Name { host, port, tls } => {
                let scheme = if *tls { "tls://" } else { "" };
                write!(f, "{scheme}{host}:{port}")
            }
            Address::Srv(name) => write!(f, "srv://{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_forms() {
        assert_eq!(
            Address::parse("127.0.0.1:9001").unwrap(),
            Address::Tcp("127.0.0.1:9001".parse().unwrap())
        );
        assert_eq!(
            Address::parse("[::1]:9002").unwrap(),
            Address::Tcp("[::1]:9002".parse().unwrap())
        );
        assert_eq!(
            Address::parse("uds:///run/chat.sock").unwrap(),
            Address::Unix("/run/chat.sock".into())
        );
        for bad in [
            "uds://run/x",
            "127.0.0.1",
            "::1:80",
            "",
            "localhost",
            "localhost:0",
            "a..b:80",
            "1.2.3:80",
            "srv://",
            "srv://a b",
            "tls://x",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
        let name = Address::parse("Chat.Internal:9001").unwrap();
        assert_eq!(
            name,
            Address::Name {
                host: "chat.internal".into(),
                port: 9001,
                tls: false
            }
        );
        assert_eq!(name.to_string(), "chat.internal:9001");
        let tls = Address::parse("tls://api.internal:443").unwrap();
        assert_eq!(tls.to_string(), "tls://api.internal:443");
        let srv = Address::parse("srv://_chat._tcp.chat.internal").unwrap();
        assert_eq!(srv, Address::Srv("_chat._tcp.chat.internal".into()));
        assert!(srv.is_name() && tls.is_name() && !Address::parse("[::1]:1").unwrap().is_name());
        assert_eq!(Address::parse("[::1]:9").unwrap().to_string(), "[::1]:9");
        let tls = Address::parse("tls://127.0.0.1:9443").unwrap();
        assert_eq!(tls, Address::Tls("127.0.0.1:9443".parse().unwrap()));
        assert_eq!(tls.to_string(), "tls://127.0.0.1:9443");
    }
}
