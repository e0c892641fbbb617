//! `Range`, `If-None-Match`, `If-Range` and `Accept-Encoding` on arbitrary bytes: never a panic,
//! a part always lies inside the representation, and negotiation only picks an offered coding.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway::protocol::http::coding::{Accept, Coding};
use ringway::protocol::http::conditional::{
    byte_range, etag, if_range_holds, none_match_hits, RangeAnswer,
};

fuzz_target!(|input: (Vec<u8>, u64, u64)| {
    let (value, size, mtime) = input;
    let size = size % (1 << 40);
    match byte_range(&value, size) {
        RangeAnswer::Part { start, end } => assert!(start <= end && end < size),
        RangeAnswer::Unsatisfiable | RangeAnswer::Whole => {}
    }
    let tag = etag(mtime, size);
    let _ = none_match_hits(&value, &tag);
    let _ = if_range_holds(&value, &tag, Some(mtime));
    let offered = [Coding::Br, Coding::Gzip];
    let accept = Accept::parse(Some(&value));
    if let Some(c) = accept.choose(&offered) {
        assert!(offered.contains(&c) && accept.q(c) > 0);
    }
});
