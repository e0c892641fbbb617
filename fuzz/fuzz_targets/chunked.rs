//! The chunked decoder against the reference (`ringway_fuzz::chunked_end`): fed in pieces
//! whose sizes the fuzzer picks, it must accept, refuse or wait exactly as the reference does,
//! and end the body at the same byte.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway::protocol::http::chunked::ChunkedDecoder;

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (body, cuts) = input;
    let want = ringway_fuzz::chunked_end(&body);
    let mut d = ChunkedDecoder::default();
    let mut at = 0;
    let mut cuts = cuts.iter().map(|&c| usize::from(c) + 1).cycle();
    let got = loop {
        if d.is_done() {
            break Ok(Some(at));
        }
        if at == body.len() {
            break Ok(None);
        }
        let n = cuts.next().unwrap_or(body.len()).min(body.len() - at);
        match d.feed(&body[at..at + n]) {
            Ok(k) => at += k,
            Err(_) => break Err(()),
        }
        if d.is_done() {
            break Ok(Some(at));
        }
    };
    assert_eq!(
        got,
        want,
        "decoder vs reference on {:?}",
        String::from_utf8_lossy(&body)
    );
});
