//! Heads that cross Ringway, sans-IO.
//!
//! Towards a backend (`write_request_head`): hop-by-hop fields removed (RFC 9110 §7.6.1,
//! including every field named in `Connection`), `X-Forwarded-For/-Proto/-Host` and
//! `Forwarded` (RFC 7239) added, `Host` passed or overridden.
//!
//! Towards the client (`write_response_head`): the backend's status and fields, hop-by-hop
//! ones removed, `Location`/`Content-Location` pointing at the backend rewritten to the
//! client's host (Apache's ProxyPassReverse), `Connection: close` when the exchange ends the
//! connection.

use std::io::Write;
use std::net::IpAddr;

use httparse::Header;

use super::head::{Body, Request, Response};

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
/// scheme or host a backend sees). `X-Forwarded-For` and `Forwarded` are appended to.
const SET_BY_RINGWAY: [&str; 4] = [
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-for",
    "forwarded",
];

/// What kind of request goes to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// A verified WebSocket handshake: `Upgrade: websocket`, `Connection: Upgrade` are set.
    WebSocket,
    /// Ordinary HTTP: any `Upgrade` is dropped; `Expect` is answered by Ringway (it sends the
    /// client its `100 Continue` itself), so it is dropped too.
    None,
}

pub struct ForwardInfo<'a> {
    pub client_ip: IpAddr,
    /// `"http"` or `"https"`.
    pub proto: &'static str,
    pub upgrade: Upgrade,
    /// `host = "..."` of a proxy context: replaces `Host`.
    pub host_override: Option<&'a str>,
    /// The request body is chunked: `Transfer-Encoding: chunked` is written again (the chunks
    /// pass through unchanged).
    pub chunked: bool,
}

fn named_in_connection(headers: &[Header<'_>], name: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|h| {
            h.value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
        })
}

fn is_one_of(name: &str, list: &[&str]) -> bool {
    list.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Writes the request head to forward into `out` (the body, if any, follows separately).
pub fn write_request_head(out: &mut Vec<u8>, req: &Request<'_, '_>, info: &ForwardInfo<'_>) {
    out.extend_from_slice(req.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // Connection-named fields are rare; only look for them when a Connection field exists.
    let has_connection = req.header("connection").is_some();
    for h in req.headers {
        let dropped = is_one_of(h.name, &HOP_BY_HOP)
            || is_one_of(h.name, &SET_BY_RINGWAY)
            || (info.upgrade == Upgrade::None && h.name.eq_ignore_ascii_case("expect"))
            || (info.host_override.is_some() && h.name.eq_ignore_ascii_case("host"))
            || (has_connection && named_in_connection(req.headers, h.name));
        if !dropped {
            push_field(out, h.name.as_bytes(), h.value);
        }
    }
    if let Some(host) = info.host_override {
        push_field(out, b"Host", host.as_bytes());
    }
    match info.upgrade {
        Upgrade::WebSocket => {
            out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n")
        }
        Upgrade::None if info.chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Upgrade::None => {}
    }
    write_forwarded(out, req, info);
    out.extend_from_slice(b"\r\n");
}

/// `X-Forwarded-For` (appended), `-Proto`, `-Host`, and `Forwarded` (appended).
fn write_forwarded(out: &mut Vec<u8>, req: &Request<'_, '_>, info: &ForwardInfo<'_>) {
    let ip = info.client_ip;
    out.extend_from_slice(b"X-Forwarded-For: ");
    append_existing(out, req, "x-forwarded-for");
    let ip_text = out.len();
    super::push_ip(out, ip);
    let ip_text = ip_text..out.len();
    out.extend_from_slice(b"\r\nX-Forwarded-Proto: ");
    out.extend_from_slice(info.proto.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(host) = req.host {
        push_field(out, b"X-Forwarded-Host", host);
    }
    out.extend_from_slice(b"Forwarded: ");
    append_existing(out, req, "forwarded");
    // RFC 7239 §6: IPv6 addresses are bracketed and quoted.
    match ip {
        IpAddr::V4(_) => {
            out.extend_from_slice(b"for=");
            out.extend_from_within(ip_text);
        }
        IpAddr::V6(a) => {
            let _ = write!(out, "for=\"[{a}]\"");
        }
    }
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(info.proto.as_bytes());
    if let Some(host) = req.host.filter(|h| {
        h.iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    }) {
        out.extend_from_slice(b";host=\"");
        out.extend_from_slice(host);
        out.push(b'"');
    }
    out.extend_from_slice(b"\r\n");
}

fn append_existing(out: &mut Vec<u8>, req: &Request<'_, '_>, name: &str) {
    for h in req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
    {
        let v = h.value.trim_ascii();
        if !v.is_empty() {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
    }
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// How a backend's response head is rewritten for the client.
pub struct ResponseRewrite<'a> {
    /// Authorities the backend may call itself in `Location`: its address (`127.0.0.1:9001`)
    /// and the `Host` override, if any.
    pub backend_authorities: [Option<&'a str>; 2],
    /// The client's `Host`, and its scheme, for rewritten locations.
    pub client_host: Option<&'a [u8]>,
    pub client_scheme: &'static str,
    /// Add `Connection: close` (the client connection ends after this response).
    pub close: bool,
}

/// Writes the response head for the client. `body` is the framing already decided from the
/// backend's head; chunked bodies pass through, so `Transfer-Encoding` is kept.
pub fn write_response_head(
    out: &mut Vec<u8>,
    resp: &Response<'_, '_>,
    body: Body,
    rw: &ResponseRewrite<'_>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    super::push_decimal(out, u64::from(resp.code));
    out.push(b' ');
    out.extend_from_slice(resp.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let has_connection = resp
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("connection"));
    for h in resp.headers {
        let keep_te = body == Body::Chunked && h.name.eq_ignore_ascii_case("transfer-encoding");
        let dropped = (is_one_of(h.name, &HOP_BY_HOP) && !keep_te)
            || (has_connection && named_in_connection(resp.headers, h.name));
        if dropped {
            continue;
        }
        let is_location = h.name.eq_ignore_ascii_case("location")
            || h.name.eq_ignore_ascii_case("content-location");
        match (is_location, rewrite_location(h.value, rw)) {
            (true, Some(path)) => {
                out.extend_from_slice(h.name.as_bytes());
                let _ = write!(out, ": {}://", rw.client_scheme);
                out.extend_from_slice(rw.client_host.unwrap_or_default());
                out.extend_from_slice(path);
                out.extend_from_slice(b"\r\n");
            }
            _ => push_field(out, h.name.as_bytes(), h.value),
        }
    }
    if rw.close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Adds a field at the end of a serialized head (one that ends with its blank line).
pub fn insert_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    if out.ends_with(b"\r\n\r\n") {
        out.truncate(out.len() - 2);
        push_field(out, name.as_bytes(), value);
        out.extend_from_slice(b"\r\n");
    }
}

/// If `value` is `http(s)://<backend authority>[/...]`, returns the path part (may be empty).
fn rewrite_location<'v>(value: &'v [u8], rw: &ResponseRewrite<'_>) -> Option<&'v [u8]> {
    rw.client_host?;
    let rest =
        strip_prefix_ci(value, b"http://").or_else(|| strip_prefix_ci(value, b"https://"))?;
    rw.backend_authorities.iter().flatten().find_map(|auth| {
        let after = strip_prefix_ci(rest, auth.as_bytes())?;
        matches!(after.first(), None | Some(b'/' | b'?' | b'#')).then_some(after)
    })
}

fn strip_prefix_ci<'v>(value: &'v [u8], prefix: &[u8]) -> Option<&'v [u8]> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::http::head::{empty_headers, parse_request, parse_response};

    fn forward(input: &[u8], upgrade: Upgrade, host_override: Option<&str>) -> String {
        let mut h = empty_headers();
        let req = parse_request(input, &mut h, 1 << 15).unwrap().unwrap();
        let mut out = Vec::new();
        let info = ForwardInfo {
            client_ip: "10.1.2.3".parse().unwrap(),
            proto: "http",
            upgrade,
            host_override,
            chunked: req.body == Body::Chunked,
        };
        write_request_head(&mut out, &req, &info);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn websocket_head_removes_hop_by_hop_and_adds_forwarded_fields() {
        let got = forward(
            b"GET /chat/x?y HTTP/1.1\r\nHost: Example.com:8080\r\nConnection: Upgrade, X-Secret\r\n\
              Upgrade: websocket\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat\r\n\
              X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Proto: https\r\nX-Other: keep\r\n\r\n",
            Upgrade::WebSocket,
            None,
        );
        let want = "GET /chat/x?y HTTP/1.1\r\nHost: Example.com:8080\r\n\
                    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat\r\n\
                    X-Other: keep\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    X-Forwarded-For: 1.1.1.1, 10.1.2.3\r\nX-Forwarded-Proto: http\r\n\
                    X-Forwarded-Host: Example.com:8080\r\n\
                    Forwarded: for=10.1.2.3;proto=http;host=\"Example.com:8080\"\r\n\r\n";
        assert_eq!(got, want);
    }

    #[test]
    fn http_head_drops_upgrade_and_expect_keeps_chunking_and_overrides_host() {
        let got = forward(
            b"POST /api HTTP/1.1\r\nHost: a.example\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\
              Expect: 100-continue\r\nTransfer-Encoding: chunked\r\nForwarded: for=9.9.9.9\r\n\r\n",
            Upgrade::None,
            Some("internal.api"),
        );
        let want = "POST /api HTTP/1.1\r\nHost: internal.api\r\nTransfer-Encoding: chunked\r\n\
                    X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a.example\r\n\
                    Forwarded: for=9.9.9.9, for=10.1.2.3;proto=http;host=\"a.example\"\r\n\r\n";
        assert_eq!(got, want);
    }

    fn respond(input: &[u8], rw: &ResponseRewrite<'_>) -> String {
        let mut h = empty_headers();
        let resp = parse_response(input, &mut h, 1 << 15).unwrap().unwrap();
        let body = resp.body("GET").unwrap();
        let mut out = Vec::new();
        write_response_head(&mut out, &resp, body, rw);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn response_head_rewrites_locations_and_strips_hop_by_hop() {
        let rw = ResponseRewrite {
            backend_authorities: [Some("127.0.0.1:9001"), Some("internal.api")],
            client_host: Some(b"example.com"),
            client_scheme: "http",
            close: false,
        };
        let got = respond(
            b"HTTP/1.0 302 Found\r\nLocation: http://127.0.0.1:9001/login?x=1\r\n\
              Content-Location: HTTP://internal.api\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\
              Keep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n",
            &rw,
        );
        assert_eq!(
            got,
            "HTTP/1.1 302 Found\r\nLocation: http://example.com/login?x=1\r\n\
             Content-Location: http://example.com\r\nContent-Length: 0\r\n\r\n"
        );
        // Other hosts, and look-alike authorities, are left alone.
        let got = respond(
            b"HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1:90011/x\r\nTransfer-Encoding: chunked\r\n\r\n",
            &ResponseRewrite { close: true, ..rw },
        );
        assert_eq!(
            got,
            "HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1:90011/x\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n"
        );
    }
}
