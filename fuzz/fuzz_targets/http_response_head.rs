//! Backend response heads: parsed from any bytes, with the body framing derived for GET and
//! HEAD; never a panic, and a complete head never longer than the input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway::protocol::http::head::{empty_headers, parse_response};

fuzz_target!(|data: &[u8]| {
    let mut headers = empty_headers();
    if let Ok(Some(resp)) = parse_response(data, &mut headers, 64 * 1024) {
        assert!(resp.head_len <= data.len());
        let _ = resp.body("GET");
        let _ = resp.body("HEAD");
        let _ = resp.keep_alive();
    }
});
