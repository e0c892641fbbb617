//! ClientHello SNI: any bytes (TLS records as received); never a panic, and a split of the
//! same bytes never gives a different name.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway::protocol::tls_hello::{sni, Hello};

fuzz_target!(|data: &[u8]| {
    let whole = sni(data);
    if let Some(&cut) = data.first() {
        let cut = usize::from(cut).min(data.len());
        if let (Ok(Hello::Complete(a)), Ok(Hello::Complete(b))) = (sni(&data[..cut]), &whole) {
            assert_eq!(&a, b);
        }
    }
});
