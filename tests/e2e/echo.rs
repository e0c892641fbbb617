//! The built-in echo endpoint (`handler = "echo"`) over HTTP/1.1 as a conforming WebSocket
//! server end (RFC 6455): fragments reassembled, control frames answered, every violation
//! failed with its Close code, like tunnel mode and the HTTP/2 echo. The full Autobahn suite
//! runs against it in `tests/autobahn.sh` (`.ci/run`).

use std::io::Write;

use crate::harness::*;
use crate::ws_tunnel::{fragments_around_control_frames, rfc6455_violations, Raw};

fn echo_config() -> String {
    format!(
        "{}\n[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n\
         [[vhost.context]]\nuri = \"/echo\"\nhandler = \"echo\"\n",
        base_config(1)
    )
}

/// Data frames until a whole message: its opcode and payload (the echo sends each message as
/// one frame, so a continuation here is a failure).
fn message(c: &mut Raw) -> (u8, Vec<u8>) {
    let (op, p) = c.next().expect("a frame");
    assert!(
        op == 0x1 || op == 0x2,
        "want a data frame, got opcode {op:#x}"
    );
    (op, p)
}

#[test]
fn echo_endpoint_reassembles_fragments_and_answers_control_frames() {
    let rw = Ringway::builder(echo_config()).dir(site()).start();
    // Fragments with a ping and an unsolicited pong between them: the pong first (the message
    // is not complete before it), then the message as one text frame.
    let mut c = fragments_around_control_frames(rw.port(), "/echo");
    assert_eq!(c.next(), Some((0xA, b"p1".to_vec())));
    assert_eq!(message(&mut c), (0x1, "fragmenté".as_bytes().to_vec()));
    // A character split between fragments is fine.
    let e = "é".as_bytes();
    c.send(0x01, &e[..1]);
    c.send(0x80, &e[1..]);
    assert_eq!(message(&mut c), (0x1, e.to_vec()));
    // Empty messages, and frames larger than the read buffer.
    c.send(0x81, b"");
    assert_eq!(message(&mut c), (0x1, vec![]));
    let big = binary_payload(100_000);
    c.send(0x82, &big);
    assert_eq!(message(&mut c), (0x2, big.clone()));
    // A 3 MiB message in three fragments comes back whole.
    let huge = binary_payload(3 << 20);
    let third = huge.len() / 3;
    c.send(0x02, &huge[..third]);
    c.send(0x00, &huge[third..2 * third]);
    c.send(0x80, &huge[2 * third..]);
    assert_eq!(message(&mut c), (0x2, huge));
    // The client's Close is answered with its code, then the connection ends.
    let mut close = 4000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    c.send(0x88, &close);
    assert_eq!(c.until_close(), (vec![], Some(4000)));
    assert!(c.at_eof());
    // An empty Close gets an empty one.
    let (mut c, _) = Raw::connect(rw.port(), "/echo", "");
    c.send(0x88, b"");
    assert_eq!(c.until_close(), (vec![], None));
    assert!(c.at_eof());
}

/// Every violation gets its Close code (1002 protocol, 1007 not UTF-8, 1009 too big) and the
/// end of the connection; nothing of the bad message is echoed.
#[test]
fn echo_endpoint_fails_violations_with_the_rfc_6455_codes() {
    let rw = Ringway::builder(echo_config()).dir(site()).start();
    // A frame header announcing 16 MiB + 1 (the echo's limit is 16 MiB), no payload sent.
    let mut too_big = vec![0x82, 0xFF];
    too_big.extend_from_slice(&((16u64 << 20) + 1).to_be_bytes());
    too_big.extend_from_slice(&[1, 2, 3, 4]);
    let close = |code: u16, reason: &[u8]| {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason);
        Raw::frame(0x88, &p, true)
    };
    let mut cases = rfc6455_violations();
    cases.extend([
        ("close code 999", close(999, b""), 1002),
        ("close reason not UTF-8", close(1000, &[0xFF, 0xFE]), 1007),
        (
            "UTF-8 broken in the second fragment",
            [
                Raw::frame(0x01, "κόσμε".as_bytes(), true),
                Raw::frame(0x00, &[0xED, 0xA0, 0x80], true),
            ]
            .concat(),
            1007,
        ),
        (
            "text ending inside a character",
            Raw::frame(0x81, &"é".as_bytes()[..1], true),
            1007,
        ),
        ("message over 16 MiB", too_big, 1009),
    ]);
    for (name, wire, code) in &cases {
        let (mut c, _) = Raw::connect(rw.port(), "/echo", "");
        c.s.write_all(wire).unwrap();
        let (data, got) = c.until_close();
        assert!(data.is_empty(), "{name}: data came back");
        assert_eq!(got, Some(*code), "{name}");
        assert!(c.at_eof(), "{name}: still open after the Close");
    }
}
