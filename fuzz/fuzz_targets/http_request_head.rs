//! Request heads: any bytes, parsed whole and split at a fuzzer-chosen byte (a prefix must be
//! "incomplete" or the same refusal, never a different head); and a differential check against
//! the strict reference parser: what it accepts, Ringway reads the same way.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway::protocol::http::head::{check_request_line, empty_headers, parse_request, HeadError};

const MAX: usize = 32 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut headers = empty_headers();
    let whole = parse_request(data, &mut headers, MAX).map(|r| {
        r.map(|r| {
            (
                r.method.to_string(),
                r.target.to_string(),
                r.minor_version,
                r.headers.len(),
                r.head_len,
            )
        })
    });
    let _ = check_request_line(data);
    if let Some(&cut) = data.first() {
        let cut = usize::from(cut).min(data.len());
        let mut h = empty_headers();
        let prefix = parse_request(&data[..cut], &mut h, MAX).map(|r| r.map(|r| r.head_len));
        if let (Ok(Some(len)), Ok(Some(whole))) = (&prefix, &whole) {
            assert_eq!(*len, whole.4, "a complete prefix must be the same head");
        }
    }
    if let Some((method, target, minor, count, len)) = ringway_fuzz::strict_request_head(data) {
        match &whole {
            Ok(Some(got)) => {
                assert_eq!(
                    (&got.0, &got.1, got.2, got.3, got.4),
                    (&method, &target, minor, count, len)
                );
            }
            // Semantic refusals (Host rules, body framing, size) are Ringway's, not syntax.
            Err(
                HeadError::BadHost
                | HeadError::BadFraming
                | HeadError::TooLarge
                | HeadError::UriTooLong,
            ) => {}
            other => panic!("strict head refused: {other:?}"),
        }
    }
});
