//! OCSP responses: any bytes through parse and verification for a fixed certificate and
//! issuer (the seed corpus holds a real `openssl ocsp` response for them).
#![no_main]
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use ringway::protocol::ocsp::{verify, CertInfo};

fn info() -> &'static CertInfo {
    static I: OnceLock<CertInfo> = OnceLock::new();
    I.get_or_init(|| {
        CertInfo::new(
            include_bytes!("../fixtures/leaf.der"),
            include_bytes!("../fixtures/ca.der"),
        )
        .expect("fixture certificates")
    })
}

fuzz_target!(|data: &[u8]| {
    // A minute after the fixture response's thisUpdate (2026-12-05 08:44:28 UTC).
    let now = UNIX_EPOCH + Duration::from_secs(1_796_460_268 + 60);
    let _ = verify(data, info(), now);
    let _ = ringway::protocol::ocsp::parse_http_response(data);
    let _ = SystemTime::now();
});
