//! The reconnect-storm path (issue 22 §1): what a handshake costs the client on the wire. A
//! TLS 1.3 handshake, full or resumed, is followed by exactly one session ticket (rustls's
//! default is two), and a client that resumes with it gets a fresh one, so resumption goes on.
//! Client: `openssl s_client -msg`, which prints every handshake message it receives.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{temp_dir, Ringway, WAIT};
use crate::pki::{tls_base, vhost, LeafOpts, Pki};

/// One TLS 1.3 connection that sends one request; resumes from `session` if it exists and saves
/// the newest session there. Returns (resumed, NewSessionTicket messages received).
fn connect(port: u16, session: &Path) -> (bool, usize) {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "a.example", "-tls1_3", "-ign_eof", "-msg"])
        .arg("-sess_out")
        .arg(session);
    if session.exists() {
        cmd.arg("-sess_in").arg(session);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openssl");
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n");
    drop(stdin);
    let mut out = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("openssl s_client did not finish within {WAIT:?}");
        }
        thread::sleep(Duration::from_millis(2));
    }
    let text = reader.join().unwrap();
    assert!(
        text.contains("HTTP/1.1 "),
        "no HTTP response through TLS:\n{text}"
    );
    // `-msg` prints one `<<< TLS 1.3, Handshake [length ...], NewSessionTicket` per ticket.
    let tickets = text
        .lines()
        .filter(|l| l.starts_with("<<<") && l.contains("NewSessionTicket"))
        .count();
    (text.contains("Reused, TLSv1.3"), tickets)
}

#[test]
fn tls13_ticket_one_per_handshake_full_or_resumed_and_resumption_goes_on() {
    let certs = temp_dir();
    let pki = Pki::new(certs.path());
    let leaf = pki.leaf("a", 0x2201, &LeafOpts::dns(&["a.example"]));
    let config = tls_base(1)
        + &vhost(
            "a",
            &["a.example", "*"],
            leaf.chain_path().to_str().unwrap(),
            leaf.key_path().to_str().unwrap(),
        )
        .top("doc_root = \"@DIR@\"")
        .toml();
    let rw = Ringway::builder(config).start();
    let dir = temp_dir();
    let session = dir.path().join("session.pem");
    assert_eq!(
        connect(rw.port(), &session),
        (false, 1),
        "a full handshake: not resumed, one ticket"
    );
    for i in 0..5 {
        assert_eq!(
            connect(rw.port(), &session),
            (true, 1),
            "reconnect {i}: resumed with the last ticket, and one fresh ticket"
        );
    }
}
