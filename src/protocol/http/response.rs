//! Response heads that Ringway writes itself (errors, static files, the echo handshake).

use std::cell::RefCell;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        // Redirects, `respond` answers and the rest: the standard phrase.
        _ => http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Unknown"),
    }
}

thread_local! {
    /// The `Date` value, formatted once per second per core.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

fn with_date<R>(f: impl FnOnce(&str) -> R) -> R {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != now.as_secs() || d.1.is_empty() {
            d.0 = now.as_secs();
            d.1 = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(now.as_secs()));
        }
        f(&d.1)
    })
}

/// Writes a status line, `Date`, `Server`, the given fields, `Content-Length` (if `Some`) and
/// `Connection: close` (if `close`), then the blank line.
pub fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    fields: &[(&str, &[u8])],
    content_length: Option<u64>,
    close: bool,
) {
    // Writes into a Vec cannot fail.
    out.extend_from_slice(b"HTTP/1.1 ");
    super::push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    with_date(|d| {
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(d.as_bytes());
        out.extend_from_slice(b"\r\n");
    });
    out.extend_from_slice(b"Server: ringway\r\n");
    for (name, value) in fields {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(n) = content_length {
        out.extend_from_slice(b"Content-Length: ");
        super::push_decimal(out, n);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A complete short error response: `"<status> <reason>\n"` as a text body.
pub fn write_error(out: &mut Vec<u8>, status: u16, extra: &[(&str, &[u8])], close: bool) {
    let body_len = 3 + 1 + reason(status).len() + 1;
    let mut fields: [(&str, &[u8]); 4] = [("", b""); 4];
    fields[0] = ("Content-Type", b"text/plain; charset=utf-8");
    let n = extra.len().min(3);
    fields[1..=n].copy_from_slice(&extra[..n]);
    write_head(out, status, &fields[..=n], Some(body_len as u64), close);
    let _ = writeln!(out, "{status} {}", reason(status));
}

/// A short response whose body is `text` and a newline (`503` with `no servers`).
pub fn write_text(out: &mut Vec<u8>, status: u16, text: &str, close: bool) {
    let fields: [(&str, &[u8]); 1] = [("Content-Type", b"text/plain; charset=utf-8")];
    write_head(out, status, &fields, Some(text.len() as u64 + 1), close);
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_is_complete_and_consistent() {
        let mut out = Vec::new();
        write_error(&mut out, 426, &[("Sec-WebSocket-Version", b"13")], true);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.contains("\r\nDate: "));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, "426 Upgrade Required\n");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}
