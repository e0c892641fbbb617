//! HTTP/1.1, sans-IO: request/response head parsing over borrowed buffers (`head`), the head
//! written towards a backend (`forward`), response heads written by Ringway (`response`) and the
//! chunked body framing used to find where a relayed body ends (`chunked`).

pub mod chunked;
pub mod forward;
pub mod head;
pub mod response;

/// True if a comma-separated header value (e.g. `Connection: keep-alive, Upgrade`) contains
/// `token`, compared case-insensitively (RFC 9110 §5.6.1 lists; `token` must be lower-case).
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_lists() {
        assert!(super::has_token(b"keep-alive, Upgrade", b"upgrade"));
        assert!(super::has_token(b"UPGRADE", b"upgrade"));
        assert!(!super::has_token(b"upgrades", b"upgrade"));
        assert!(!super::has_token(b"", b"upgrade"));
    }
}
