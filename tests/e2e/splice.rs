//! Bulk tunnels move bytes with `splice(2)` (issue 22 §4): large messages through a proxied
//! WebSocket and large streams through an L4 route arrive byte-exact, the splice was used
//! (`ringway_tunnel_spliced_bytes_total`), the message and byte counters stay right, and a drain
//! in the middle of a bulk transfer still closes at a frame boundary with 1001.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

use crate::backend::EchoBackend;
use crate::edge::tcp_echo_backend;
use crate::harness::*;
use crate::operations::{ops_config, scrape, sum};

const MIB: usize = 1 << 20;

fn spliced(admin: u16) -> f64 {
    sum(&scrape(admin), "ringway_tunnel_spliced_bytes_total", &[])
}

#[test]
fn bulk_websocket_messages_are_spliced_and_arrive_byte_exact() {
    let echo = EchoBackend::tcp_v4();
    let rw = Ringway::builder(ops_config(1, &echo.config_addr, ""))
        .dir(site())
        .start();
    let admin = rw.port_n(1);
    assert_eq!(spliced(admin), 0.0);
    let (mut ws, _) = ws_connect(rw.port(), rw.ws_url("/chat/bulk").as_str());
    let mut sent_messages = 0.0;
    let mut payload_bytes = 0usize;
    // Several 1 MiB messages, binary and text, each a different pattern; two in flight.
    for round in 0..4usize {
        let bin: Vec<u8> = binary_payload(MIB + round * 4099)
            .into_iter()
            .map(|b| b ^ round as u8)
            .collect();
        let text = text_payload(MIB - round * 7);
        ws.send(Message::binary(bin.clone())).unwrap();
        ws.send(Message::text(text.clone())).unwrap();
        sent_messages += 2.0;
        payload_bytes += bin.len() + text.len();
        match ws_next(&mut ws) {
            Message::Binary(b) => assert!(b[..] == bin[..], "round {round}: binary differs"),
            other => panic!("round {round}: expected binary, got {:?}", other.len()),
        }
        match ws_next(&mut ws) {
            Message::Text(t) => assert!(t.as_str() == text, "round {round}: text differs"),
            other => panic!("round {round}: expected text, got {:?}", other.len()),
        }
    }
    // A fragmented message: 3 frames of 512 KiB (text start, continuations), written raw;
    // tungstenite's echo backend reassembles it and answers one 1.5 MiB message.
    let whole = text_payload(3 * MIB / 2);
    let parts = [&whole[..MIB / 2], &whole[MIB / 2..MIB], &whole[MIB..]];
    let mut raw = Vec::new();
    raw.extend(client_frame(false, 0x1, parts[0].as_bytes()));
    raw.extend(client_frame(false, 0x0, parts[1].as_bytes()));
    raw.extend(client_frame(true, 0x0, parts[2].as_bytes()));
    ws.get_mut().write_all(&raw).unwrap();
    sent_messages += 1.0;
    payload_bytes += whole.len();
    match ws_next(&mut ws) {
        Message::Text(t) => assert!(t.as_str() == whole, "fragmented message differs"),
        other => panic!("expected the reassembled text, got {:?}", other.len()),
    }
    // Small messages after the bulk ones still go through (copied again).
    for i in 0..20 {
        ws.send(Message::text(format!("small {i}"))).unwrap();
        assert_eq!(ws_next(&mut ws), Message::text(format!("small {i}")));
    }
    sent_messages += 20.0;

    let m = scrape(admin);
    let spliced = sum(&m, "ringway_tunnel_spliced_bytes_total", &[]);
    // Both directions are bulk for most of the 10.5 MiB each way.
    assert!(
        spliced >= (4 * MIB) as f64,
        "too little spliced: {spliced} bytes"
    );
    assert!(spliced <= (2 * payload_bytes + MIB) as f64, "{spliced}");
    // Every message counted once each way; every client byte counted.
    let msgs = |dir: &str| sum(&m, "ringway_ws_messages_total", &[dir]);
    assert_eq!(msgs("direction=\"in\""), sent_messages);
    assert_eq!(msgs("direction=\"out\""), sent_messages);
    let bytes = |dir: &str| sum(&m, "ringway_bytes_total", &[dir]);
    assert!(bytes("direction=\"in\"") >= payload_bytes as f64);
    assert!(bytes("direction=\"out\"") >= payload_bytes as f64);
    ws_close(&mut ws);
}

#[test]
fn bulk_l4_streams_are_spliced_and_arrive_byte_exact_with_half_close() {
    let backend = tcp_echo_backend();
    let config = format!(
        r#"[runtime]
cores = 1
pin = false

[[listener]]
name = "raw"
address = "127.0.0.1:@PORT@"
mode = "tcp"

[[listener]]
name = "admin"
address = "127.0.0.1:@PORT1@"

[admin]
listener = "admin"

[[backend]]
name = "echo"
servers = ["{backend}"]

[[tcp_route]]
listener = "raw"
backend = "echo"
"#
    );
    let rw = Ringway::builder(config).start();
    let admin = rw.port_n(1);
    let mut total = 0usize;
    for round in 0..2u32 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", rw.port())).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let data: Vec<u8> = (0..8 * MIB as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13 ^ round) as u8)
            .collect();
        let mut writer = s.try_clone().unwrap();
        let sent = data.clone();
        let w = thread::spawn(move || {
            writer.write_all(&sent).unwrap();
            writer.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut back = Vec::new();
        s.read_to_end(&mut back).expect("everything back, then EOF");
        w.join().unwrap();
        assert_eq!(back.len(), data.len(), "round {round}");
        assert!(back == data, "round {round}: bytes differ");
        total += 2 * data.len();
    }
    let spliced = spliced(admin);
    assert!(spliced >= (8 * MIB) as f64, "too little spliced: {spliced}");
    assert!(spliced <= total as f64, "{spliced} > {total}");
}

/// A WebSocket backend: "big N" makes it send N binary messages of 1 MiB (message i filled
/// with byte i); it echoes anything else and records the close codes it receives.
fn bulk_backend() -> (String, Arc<Mutex<Vec<Option<u16>>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let closes = Arc::new(Mutex::new(Vec::new()));
    let seen = closes.clone();
    thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let seen = seen.clone();
            thread::spawn(move || {
                let Ok(mut ws) = tungstenite::accept(s) else {
                    return;
                };
                loop {
                    match ws.read() {
                        Ok(Message::Text(t)) if t.as_str().starts_with("big ") => {
                            let n: u8 = t.as_str()[4..].parse().unwrap();
                            for i in 0..n {
                                if ws.send(Message::binary(vec![i; MIB])).is_err() {
                                    break;
                                }
                            }
                        }
                        Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                            let _ = ws.send(m);
                        }
                        Ok(Message::Close(frame)) => {
                            seen.lock().unwrap().push(frame.map(|f| u16::from(f.code)));
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            });
        }
    });
    (addr, closes)
}

#[test]
fn drain_during_a_spliced_transfer_closes_with_1001_at_a_frame_boundary() {
    let (addr, backend_closes) = bulk_backend();
    let head = format!(
        "{}\n[[listener]]\nname = \"admin\"\naddress = \"127.0.0.1:@PORT1@\"\n\n\
         [admin]\nlistener = \"admin\"\n",
        base_config_timeouts(1, &[("drain", "20s")])
    );
    let mut rw = Ringway::builder(ws_site(&head, &addr)).dir(site()).start();
    let admin = rw.port_n(1);
    let (mut ws, _) = ws_connect(rw.port(), rw.ws_url("/chat/bulk").as_str());
    ws.send(Message::text("big 60")).unwrap();
    let mut next = 0u8;
    fn check(m: Message, next: &mut u8) {
        match m {
            Message::Binary(b) => {
                assert_eq!(b.len(), MIB, "message {next}: a whole message");
                assert!(
                    b.iter().all(|&x| x == *next),
                    "message {next}: bytes differ"
                );
                *next += 1;
            }
            other => panic!("message {next}: expected binary, got {other:?}"),
        }
    }
    // Read a few messages: the backend → client direction is bulk by then.
    for _ in 0..6 {
        check(ws_next(&mut ws), &mut next);
    }
    assert!(
        wait_until(WAIT, || spliced(admin) > 0.0),
        "nothing was spliced"
    );
    // Drain while the backend still streams (the client stops reading for a moment, so
    // Ringway is in the middle of a message when it learns of the drain).
    thread::sleep(Duration::from_millis(100));
    rw.signal(libc::SIGTERM);
    thread::sleep(Duration::from_millis(200));
    // Only whole, unchanged messages, then Close 1001 (going away).
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => {
                assert_eq!(f.code, CloseCode::Away);
                break;
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(m) => check(m, &mut next),
            Err(e) => panic!("after {next} messages: {e}"),
        }
    }
    assert!(
        next < 60,
        "the drain came after the whole transfer: not a test of it"
    );
    drop(ws);
    let status = rw
        .wait_exit(Duration::from_secs(15))
        .expect("ringway did not exit");
    assert!(status.success(), "{status}");
    // The backend got Close 1001 too (once its sends were done).
    assert!(wait_until(WAIT, || !backend_closes
        .lock()
        .unwrap()
        .is_empty()));
    assert_eq!(backend_closes.lock().unwrap().clone(), vec![Some(1001)]);
}

#[test]
fn a_client_that_stops_reading_a_spliced_transfer_is_cut_by_the_send_timeout() {
    let (addr, _) = bulk_backend();
    let head = format!(
        "{}\n[[listener]]\nname = \"admin\"\naddress = \"127.0.0.1:@PORT1@\"\n\n\
         [admin]\nlistener = \"admin\"\n",
        base_config_timeouts(1, &[("send", "2s")])
    );
    let rw = Ringway::builder(ws_site(&head, &addr)).dir(site()).start();
    let admin = rw.port_n(1);
    let (mut ws, _) = ws_connect(rw.port(), rw.ws_url("/chat/bulk").as_str());
    ws.send(Message::text("big 200")).unwrap();
    for i in 0..6u8 {
        match ws_next(&mut ws) {
            Message::Binary(b) => assert!(b.len() == MIB && b.iter().all(|&x| x == i)),
            other => panic!("message {i}: expected binary, got {other:?}"),
        }
    }
    assert!(
        wait_until(WAIT, || spliced(admin) > 0.0),
        "nothing was spliced"
    );
    // The client stops reading: Ringway's splice to it makes no progress, and timeouts.send
    // (2 s) closes the connection.
    assert!(
        wait_until(WAIT, || sum(
            &scrape(admin),
            "ringway_send_timeouts_total",
            &[]
        ) >= 1.0),
        "no send timeout counted"
    );
    // What was already in flight may still be read, then the connection ends well before the
    // 200 MiB the backend meant to send.
    let mut got = 6usize;
    loop {
        match ws.read() {
            Ok(Message::Binary(_)) => got += 1,
            Ok(_) => {}
            Err(_) => break,
        }
        assert!(got < 200, "the whole transfer arrived: nothing was cut");
    }
}
