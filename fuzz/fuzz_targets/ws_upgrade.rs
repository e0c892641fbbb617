//! Upgrade validation: a client request head classified (WebSocket, invalid with a status, or
//! plain), and a backend's 101 checked against a fixed key.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway::protocol::http::head::{empty_headers, parse_request, parse_response};
use ringway::protocol::ws::{accept_key, check_backend_101, classify, Upgrade};

const KEY: &[u8] = b"dGhlIHNhbXBsZSBub25jZQ==";

fuzz_target!(|data: &[u8]| {
    let mut headers = empty_headers();
    if let Ok(Some(req)) = parse_request(data, &mut headers, 64 * 1024) {
        match classify(&req) {
            Upgrade::WebSocket { key } => assert_eq!(accept_key(key).len(), 28),
            Upgrade::Invalid { status, .. } => assert!(status == 400 || status == 426),
            Upgrade::None => {}
        }
    }
    let mut headers = empty_headers();
    if let Ok(Some(resp)) = parse_response(data, &mut headers, 64 * 1024) {
        let _ = check_backend_101(&resp, KEY);
    }
});
