//! The reconnect-storm path (issue 22 §1): what a handshake costs the client on the wire. A
//! TLS 1.3 handshake, full or resumed, is followed by exactly one session ticket (rustls's
//! default is two), and a client that resumes with it gets a fresh one, so resumption goes on.
//! Client: `openssl s_client -msg`, which prints every handshake message it receives.

use std::path::Path;

use crate::harness::{temp_dir, Ringway};
use crate::pki::{tls_base, vhost, LeafOpts, Pki};
use crate::tls_resumption::s_client;

/// One TLS 1.3 connection that sends one request; resumes from `session` if it exists and saves
/// the newest session there. Returns (resumed, NewSessionTicket messages received).
fn connect(port: u16, session: &Path) -> (bool, usize) {
    let text = s_client(port, &["-tls1_3", "-msg"], session);
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
