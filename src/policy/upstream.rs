//! Backend addresses (sans-IO parsing). The connect path lives in `runtime::backend::upstream`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A backend server address: `IP:port`, `[IPv6]:port`, `uds:///absolute/path`, or
/// `tls://IP:port` (TLS to the backend, verified against the backend's `tls.ca_file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp(SocketAddr),
    Unix(PathBuf),
    Tls(SocketAddr),
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
        if let Some(rest) = text.strip_prefix("tls://") {
            return rest.parse::<SocketAddr>().map(Address::Tls).map_err(|_| {
                format!("invalid address {text:?}: expected tls://IP:port or tls://[IPv6]:port")
            });
        }
        text.parse::<SocketAddr>().map(Address::Tcp).map_err(|_| {
            format!(
                "invalid address {text:?}: expected IP:port, [IPv6]:port, uds:///path or tls://IP:port"
            )
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Unix(p) => write!(f, "uds://{}", p.display()),
            Address::Tls(a) => write!(f, "tls://{a}"),
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
        for bad in ["uds://run/x", "localhost:80", "127.0.0.1", "::1:80", ""] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Address::parse("[::1]:9").unwrap().to_string(), "[::1]:9");
        let tls = Address::parse("tls://127.0.0.1:9443").unwrap();
        assert_eq!(tls, Address::Tls("127.0.0.1:9443".parse().unwrap()));
        assert_eq!(tls.to_string(), "tls://127.0.0.1:9443");
        assert!(Address::parse("tls://example.com:443").is_err());
    }
}
