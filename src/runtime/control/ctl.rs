//! The client side of the control socket, for `ringway ctl` and `ringway reload`: one HTTP/1.1
//! request over the Unix socket, the answer's status and body.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long the client waits for an answer (a reload waits for every core to swap).
const ANSWER_WAIT: Duration = Duration::from_secs(150);

/// Sends one request and returns the answer's status and body.
pub fn request(
    socket: &Path,
    method: &str,
    target: &str,
    body: Option<&[u8]>,
) -> Result<(u16, Vec<u8>), String> {
    let mut conn = UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    let io = |e: std::io::Error| format!("{}: {e}", socket.display());
    conn.set_read_timeout(Some(ANSWER_WAIT)).map_err(io)?;
    conn.set_write_timeout(Some(ANSWER_WAIT)).map_err(io)?;
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n")
        .into_bytes();
    if let Some(body) = body {
        out.extend_from_slice(
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.unwrap_or_default());
    conn.write_all(&out).map_err(io)?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).map_err(io)?;
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the control socket sent no complete answer")?;
    let status = std::str::from_utf8(&answer[..end])
        .ok()
        .and_then(|head| head.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or("the control socket's answer has no status")?;
    Ok((status, answer[end + 4..].to_vec()))
}

/// Percent-encodes one path segment (everything but RFC 3986's unreserved characters).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip() {
        for s in [
            "127.0.0.1:9001",
            "[::1]:9001",
            "chat.internal:9001 (10.0.0.5)",
            "é/%",
        ] {
            let e = encode_segment(s);
            assert!(!e.contains([':', '/', ' ', '[', '%']) || e.contains('%'));
            assert_eq!(
                crate::runtime::control::api::percent_decode(&e).as_deref(),
                Ok(s)
            );
        }
    }
}
