//! WebSocket frames: the header parser on any bytes, and the frame tracker (drain, message
//! counts) fed in fuzzer-chosen pieces: it must count the same messages, end at the same
//! boundary state, and never advise reading past the next boundary.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway::protocol::ws::{FrameHeader, FrameTracker};

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (stream, cuts) = input;
    if let Ok(Some(h)) = FrameHeader::parse(&stream) {
        assert!(h.header_len >= 2 && h.header_len <= 14);
    }
    let mut whole = FrameTracker::default();
    let want = whole.feed(&stream);
    let mut t = FrameTracker::default();
    let mut got = 0;
    let mut at = 0;
    for c in cuts.iter().cycle().take(stream.len() + 1) {
        if at == stream.len() {
            break;
        }
        let mut n = (usize::from(*c) + 1).min(stream.len() - at);
        if !t.at_boundary() {
            // Reading no more than `to_boundary` must land on the boundary, not past it.
            n = n.min(t.to_boundary());
        }
        got += t.feed(&stream[at..at + n]);
        at += n;
    }
    if at == stream.len() {
        assert_eq!(got, want);
        assert_eq!(t.at_boundary(), whole.at_boundary());
        assert_eq!(t.close_seen, whole.close_seen);
    }
});
