//! Tunnel mode's decoder (`ws_endpoint::Decoder`: unmasking, reassembly up to `max_message`,
//! UTF-8, close codes) on any bytes, fed whole and in fuzzer-chosen pieces through a buffer
//! that keeps what was not used, as the glue does. Both feedings must give the same events and
//! the same verdict (except that bad UTF-8 in a truncated text frame shows early in pieces); no message may exceed `max_message`, and nothing follows a Close.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringway::protocol::ws_endpoint::{Decoder, Event};

#[derive(Debug, PartialEq, Eq)]
enum Got {
    Msg(bool, Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, Vec<u8>),
    Fail(u16),
}

fn run(stream: &[u8], cuts: &[u8], max: usize) -> Vec<Got> {
    let mut d = Decoder::new(max);
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut fed = 0;
    let mut cut = cuts.iter().cycle();
    loop {
        let held = buf.len();
        match d.decode(&mut buf) {
            Err(v) => {
                out.push(Got::Fail(v.code()));
                return out;
            }
            Ok((n, ev)) => {
                assert!(n <= held);
                let progressed = n > 0 || ev.is_some();
                if let Some(ev) = ev {
                    assert!(!matches!(out.last(), Some(Got::Close(..))), "an event after Close");
                    out.push(match ev {
                        Event::Message { text, payload } => {
                            assert!(payload.len() <= max);
                            if text {
                                assert!(std::str::from_utf8(payload).is_ok());
                            }
                            Got::Msg(text, payload.to_vec())
                        }
                        Event::Ping(p) => Got::Ping(p.to_vec()),
                        Event::Pong(p) => Got::Pong(p.to_vec()),
                        Event::Close { code, reason } => Got::Close(code, reason.to_vec()),
                    });
                }
                buf.drain(..n);
                d.release();
                if !progressed || buf.is_empty() {
                    if fed == stream.len() {
                        return out;
                    }
                    let step = cut.next().map_or(stream.len(), |c| usize::from(*c) + 1);
                    let end = (fed + step).min(stream.len());
                    buf.extend_from_slice(&stream[fed..end]);
                    fed = end;
                }
            }
        }
    }
}

fuzz_target!(|input: (Vec<u8>, Vec<u8>, u16)| {
    let (stream, cuts, max) = input;
    let max = usize::from(max) + 1;
    let mut whole = run(&stream, &[], max);
    let mut pieces = run(&stream, &cuts, max);
    let fail = |v: &mut Vec<Got>| match v.last() {
        Some(Got::Fail(c)) => {
            let c = *c;
            v.pop();
            Some(c)
        }
        _ => None,
    };
    let (fw, fp) = (fail(&mut whole), fail(&mut pieces));
    assert_eq!(whole, pieces);
    match (fw, fp) {
        (a, b) if a == b => {}
        // A truncated text message: in pieces, bad UTF-8 shows before the frame is complete;
        // whole, the decoder still waits for the rest of the frame.
        (None, Some(1007)) | (Some(1007), None) => {}
        other => panic!("verdicts differ: {other:?}"),
    }
});
