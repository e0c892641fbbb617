//! The request head Ringway sends to a backend: hop-by-hop fields removed (RFC 9110 §7.6.1,
//! including every field named in `Connection`), `X-Forwarded-*` added.

use std::net::IpAddr;

use httparse::Header;

use super::has_token;
use super::head::Request;

/// Fields that describe one hop and are never forwarded (RFC 9110 §7.6.1, plus the
/// de-facto `Proxy-Connection` and `Keep-Alive`).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
];

/// Fields Ringway sets itself; any the client sent are replaced (a client cannot spoof the
/// scheme or host a backend sees). `X-Forwarded-For` is appended to, not replaced.
const REPLACED: [&str; 2] = ["x-forwarded-proto", "x-forwarded-host"];

/// How the forwarded request should ask for an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    WebSocket,
    None,
}

pub struct ForwardInfo {
    pub client_ip: IpAddr,
    /// `"http"` or `"https"`.
    pub proto: &'static str,
}

fn named_in_connection(headers: &[Header<'_>], name: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|h| has_token(h.value, name.to_ascii_lowercase().as_bytes()))
}

fn is_dropped(headers: &[Header<'_>], name: &str) -> bool {
    HOP_BY_HOP
        .iter()
        .chain(REPLACED.iter())
        .any(|h| name.eq_ignore_ascii_case(h))
        || name.eq_ignore_ascii_case("x-forwarded-for")
        || named_in_connection(headers, name)
}

/// Writes the head to forward into `out` (the body, if any, follows separately).
pub fn write_request_head(
    out: &mut Vec<u8>,
    req: &Request<'_, '_>,
    info: &ForwardInfo,
    upgrade: Upgrade,
) {
    out.extend_from_slice(req.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // Connection-named fields are rare; only look for them when a Connection field exists.
    let has_connection = req.header("connection").is_some();
    for h in req.headers {
        let dropped = if has_connection {
            is_dropped(req.headers, h.name)
        } else {
            HOP_BY_HOP
                .iter()
                .chain(REPLACED.iter())
                .any(|d| h.name.eq_ignore_ascii_case(d))
                || h.name.eq_ignore_ascii_case("x-forwarded-for")
        };
        if dropped {
            continue;
        }
        push_field(out, h.name.as_bytes(), h.value);
    }
    if upgrade == Upgrade::WebSocket {
        out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n");
    }
    write_forwarded_for(out, req, info.client_ip);
    push_field(out, b"X-Forwarded-Proto", info.proto.as_bytes());
    if let Some(host) = req.host {
        push_field(out, b"X-Forwarded-Host", host);
    }
    out.extend_from_slice(b"\r\n");
}

fn write_forwarded_for(out: &mut Vec<u8>, req: &Request<'_, '_>, client_ip: IpAddr) {
    out.extend_from_slice(b"X-Forwarded-For: ");
    for h in req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
    {
        let v = h.value.trim_ascii();
        if !v.is_empty() {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
    }
    // Writing into a Vec cannot fail.
    let _ = std::io::Write::write_fmt(out, format_args!("{client_ip}\r\n"));
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{empty_headers, parse_request};

    fn forward(input: &[u8], upgrade: Upgrade) -> String {
        let mut h = empty_headers();
        let req = parse_request(input, &mut h, 1 << 15).unwrap().unwrap();
        let mut out = Vec::new();
        let info = ForwardInfo {
            client_ip: "10.1.2.3".parse().unwrap(),
            proto: "http",
        };
        write_request_head(&mut out, &req, &info, upgrade);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn removes_hop_by_hop_and_adds_forwarded_fields() {
        let got = forward(
            b"GET /chat/x?y HTTP/1.1\r\nHost: Example.com:8080\r\nConnection: Upgrade, X-Secret\r\n\
              Upgrade: websocket\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat\r\n\
              X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Proto: https\r\nX-Other: keep\r\n\r\n",
            Upgrade::WebSocket,
        );
        let want = "GET /chat/x?y HTTP/1.1\r\nHost: Example.com:8080\r\n\
                    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat\r\n\
                    X-Other: keep\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    X-Forwarded-For: 1.1.1.1, 10.1.2.3\r\nX-Forwarded-Proto: http\r\n\
                    X-Forwarded-Host: Example.com:8080\r\n\r\n";
        assert_eq!(got, want);
    }

    #[test]
    fn plain_request_gets_no_upgrade() {
        let got = forward(b"GET / HTTP/1.0\r\nUpgrade: h2c\r\n\r\n", Upgrade::None);
        assert_eq!(
            got,
            "GET / HTTP/1.1\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: http\r\n\r\n"
        );
    }
}
