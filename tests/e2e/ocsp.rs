//! OCSP stapling against real responders (`openssl ocsp`) and a small in-process responder
//! that serves fixed or crafted DER responses: first handshake stapled, late responder, staple
//! kept through an outage and dropped at expiry, revoked / rogue / wrong-certificate / expired
//! responses never stapled, and the on-disk cache across a restart. What the server staples is
//! read with `openssl s_client -status` and with rustls.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use x509_ocsp::CertStatus;

use crate::harness::{free_port, site, temp_dir, wait_until, Ringway, WAIT};
use crate::ocsp_responders::{
    parse_staple, Answer, Craft, CraftSigner, MiniResponder, OpensslResponder, Relay,
};
use crate::pki::{
    ocsp_lines, path_str, self_signed, tls_base, vhost, IndexStatus, Leaf, LeafOpts, Pki,
};
use crate::tls_clients::{s_client, s_client_until, tls, Staple, TlsOpts};

fn is_good(s: &Staple) -> bool {
    matches!(s, Staple::Good { .. })
}

fn is_none(s: &Staple) -> bool {
    *s == Staple::None
}

/// s_client's view of the staple for `sni`, which must be a good one for `leaf`.
fn assert_stapled(port: u16, sni: &str, leaf: &Leaf, what: &str) -> String {
    let o = s_client(port, Some(sni), &[]);
    match o.staple() {
        Staple::Good {
            this_update,
            serial,
        } => {
            assert_eq!(
                serial,
                leaf.serial_hex(),
                "{what}: staple for another serial"
            );
            this_update
        }
        other => panic!(
            "{what}: expected a good staple for {sni}, got {other:?}\n{}",
            o.text()
        ),
    }
}

fn assert_not_stapled(port: u16, sni: &str, what: &str) {
    let o = s_client(port, Some(sni), &[]);
    assert!(
        o.handshake_ok(),
        "{what}: handshake for {sni} failed:\n{}",
        o.text()
    );
    assert_eq!(
        o.staple(),
        Staple::None,
        "{what}: {sni} must not be stapled\n{}",
        o.text()
    );
}

/// Log lines that mention `needle` (case-insensitive).
fn log_lines_with(rw: &Ringway, needle: &str) -> Vec<String> {
    let needle = needle.to_lowercase();
    rw.log()
        .lines()
        .filter(|l| l.to_lowercase().contains(&needle))
        .map(str::to_string)
        .collect()
}

/// Serials as DER INTEGER contents (0x1001 → [0x10, 0x01]).
fn serial_bytes(leaf: &Leaf) -> Vec<u8> {
    vec![(leaf.serial >> 8) as u8, leaf.serial as u8]
}

#[test]
fn first_handshake_is_stapled() {
    let dir = site();
    let pki = Pki::new(dir.path());
    // A delegated responder (EKU OCSPSigning); ringway finds the responder through the
    // certificate's AIA and the issuer through the chain.
    let signer = pki.ocsp_signer("responder", 0x1f00);
    let port = free_port();
    let a = pki.leaf(
        "a",
        0x1001,
        &LeafOpts {
            aia_ocsp: Some(format!("http://127.0.0.1:{port}")),
            ..LeafOpts::dns(&["a.example"])
        },
    );
    let index = pki.index("index.txt", &[(&a, IndexStatus::Valid)]);
    let _responder = OpensslResponder::start(&pki, &index, &signer, port);
    let cfg = tls_base(2)
        + &vhost("a", &["a.example", "*"], &a.chain_file(), &a.key_file())
            .ocsp("")
            .toml();
    let rw = Ringway::builder(cfg).dir(dir).start();

    // The very first handshake (TLS 1.3) carries the staple, then TLS 1.2.
    assert_stapled(rw.port(), "a.example", &a, "first handshake");
    let o = s_client(rw.port(), Some("a.example"), &["-tls1_2"]);
    assert!(is_good(&o.staple()), "TLS 1.2 staple:\n{}", o.text());

    // rustls sees it too, and it is a good response for this certificate.
    let (_s, seen) = tls(rw.port(), "a.example", &TlsOpts::verify(&pki.ca_path()));
    assert!(!seen.ocsp.is_empty(), "rustls client got no staple");
    let (serial, good, _) = parse_staple(&seen.ocsp).unwrap();
    assert_eq!(serial, serial_bytes(&a));
    assert!(good);

    // Every core staples (connections spread over both).
    for i in 0..8 {
        assert_stapled(rw.port(), "a.example", &a, &format!("handshake {i}"));
    }
}

#[test]
fn responder_down_at_start_then_stapled_without_restart() {
    let dir = site();
    let pki = Pki::new(dir.path());
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let a = pki.leaf(
        "a",
        0x1001,
        &LeafOpts {
            must_staple: true,
            ..LeafOpts::dns(&["a.example"])
        },
    );
    let index = pki.index("index.txt", &[(&a, IndexStatus::Valid)]);
    let cfg = tls_base(2)
        + &vhost("a", &["a.example", "*"], &a.chain_file(), &a.key_file())
            .ocsp(&ocsp_lines(Some(&url), "1s", "2s"))
            .toml();
    let started = Instant::now();
    let rw = Ringway::builder(cfg).dir(dir).start();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "start-up took {:?} with the responder down",
        started.elapsed()
    );

    assert_not_stapled(rw.port(), "a.example", "responder down");
    assert!(
        wait_until(WAIT, || !log_lines_with(&rw, "must-staple").is_empty()),
        "no log line about the must-staple certificate; log:\n{}",
        rw.log()
    );

    let _responder = OpensslResponder::start(&pki, &index, &pki.ca_signer(), port);
    let (ok, o) = s_client_until(
        rw.port(),
        Some("a.example"),
        Duration::from_secs(8),
        is_good,
    );
    assert!(
        ok,
        "no staple within 8 s of the responder coming up (retry_min 1s, retry_max 2s):\n{}",
        o.text()
    );
    // And on every core.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut streak = 0;
    while streak < 8 {
        let o = s_client(rw.port(), Some("a.example"), &[]);
        streak = if is_good(&o.staple()) { streak + 1 } else { 0 };
        assert!(
            Instant::now() < deadline,
            "staple not on every connection 5 s after the first one:\n{}",
            o.text()
        );
    }
}

#[test]
fn staple_kept_through_outage_and_dropped_at_expiry() {
    let dir = site();
    let pki = Pki::new(dir.path());
    let a = pki.leaf("a", 0x1001, &LeafOpts::dns(&["a.example"]));
    let signer = CraftSigner::load(&pki.ca_signer(), false);
    // A 12 s validity window: ringway refreshes at about 6 s, and the staple expires at 12 s.
    let short = Craft {
        signer: signer.clone(),
        status: CertStatus::good(),
        this_update: 0,
        next_update: Some(12),
    };
    let responder = MiniResponder::start(Answer::Crafted(short));
    let cfg = tls_base(1)
        + &vhost("a", &["a.example", "*"], &a.chain_file(), &a.key_file())
            .ocsp(&ocsp_lines(Some(&responder.url()), "1s", "1s"))
            .toml();
    let rw = Ringway::builder(cfg).dir(dir).start();
    let t0 = Instant::now();
    let first = assert_stapled(rw.port(), "a.example", &a, "responder up");
    assert!(responder.served() >= 1);

    // Outage: every fetch from now on fails.
    responder.set(Answer::Unavailable);
    let asked = responder.requests();
    assert!(
        wait_until(Duration::from_secs(10), || responder.requests() > asked),
        "ringway did not try to refresh a 12 s response within 10 s (refresh at half the window)"
    );
    let o = s_client(rw.port(), Some("a.example"), &[]);
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "machine too slow: the staple is about to expire ({:?}), cannot check it is kept",
        t0.elapsed()
    );
    match o.staple() {
        Staple::Good { this_update, .. } => {
            assert_eq!(
                this_update, first,
                "the kept staple should be the first response"
            )
        }
        other => panic!(
            "staple dropped during a responder outage before it expired: {other:?}\n{}",
            o.text()
        ),
    }

    // Past nextUpdate (12 s, plus slack) the staple must be gone.
    let left = Duration::from_secs(15).saturating_sub(t0.elapsed());
    let (ok, o) = s_client_until(rw.port(), Some("a.example"), left, is_none);
    assert!(
        ok,
        "expired staple still served {:?} after it was fetched:\n{}",
        t0.elapsed(),
        o.text()
    );
    assert!(
        t0.elapsed() >= Duration::from_secs(10),
        "staple dropped after {:?}, before it expired",
        t0.elapsed()
    );

    // The responder comes back: stapled again, with a new response, no restart.
    responder.set(Answer::Crafted(Craft {
        signer,
        status: CertStatus::good(),
        this_update: 0,
        next_update: Some(3600),
    }));
    let (ok, o) = s_client_until(
        rw.port(),
        Some("a.example"),
        Duration::from_secs(5),
        is_good,
    );
    assert!(ok, "not stapled again after the outage:\n{}", o.text());
}

#[test]
fn revoked_certificate_is_never_stapled() {
    let dir = site();
    let pki = Pki::new(dir.path());
    let good = pki.leaf("good", 0x1001, &LeafOpts::dns(&["good.example"]));
    let rev = pki.leaf("rev", 0x1002, &LeafOpts::dns(&["revoked.example"]));
    let index = pki.index(
        "index.txt",
        &[(&good, IndexStatus::Valid), (&rev, IndexStatus::Revoked)],
    );
    let responder = OpensslResponder::start_any(&pki, &index, &pki.ca_signer());
    let relay = Relay::start(responder.port);
    let lines = ocsp_lines(Some(&relay.url()), "1s", "2s");
    // The revoked vhost names its trust anchor with ca_file and serves the leaf alone.
    let cfg = tls_base(1)
        + &vhost(
            "good",
            &["good.example", "*"],
            &good.chain_file(),
            &good.key_file(),
        )
        .ocsp(&lines)
        .toml()
        + &vhost(
            "rev",
            &["revoked.example"],
            &rev.cert_file(),
            &rev.key_file(),
        )
        .ocsp(&format!("{lines}ca_file = {:?}\n", pki.ca_file()))
        .toml();
    let rw = Ringway::builder(cfg).dir(dir).start();

    assert_stapled(rw.port(), "good.example", &good, "control");
    assert_not_stapled(rw.port(), "revoked.example", "revoked");
    assert!(
        relay.connections() >= 2,
        "responder asked {} times",
        relay.connections()
    );
    assert!(
        wait_until(WAIT, || !log_lines_with(&rw, "revoked").is_empty()),
        "no log line saying `revoked`; log:\n{}",
        rw.log()
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_not_stapled(rw.port(), "revoked.example", "revoked, later");
}

#[test]
fn response_signed_by_a_rogue_or_unauthorized_key_is_rejected() {
    let dir = site();
    let pki = Pki::new(dir.path());
    let good = pki.leaf("good", 0x1001, &LeafOpts::dns(&["good.example"]));
    let r = pki.leaf("r", 0x1002, &LeafOpts::dns(&["rogue.example"]));
    let n = pki.leaf("n", 0x1003, &LeafOpts::dns(&["noeku.example"]));
    let index = pki.index(
        "index.txt",
        &[
            (&good, IndexStatus::Valid),
            (&r, IndexStatus::Valid),
            (&n, IndexStatus::Valid),
        ],
    );
    // Unrelated self-signed key; and a cert from the right CA without the OCSPSigning EKU.
    let rogue = self_signed(dir.path(), "rogue");
    let not_delegated = pki.leaf("notocsp", 0x1f01, &LeafOpts::dns(&["notocsp.test"]));
    let ok = OpensslResponder::start_any(&pki, &index, &pki.ca_signer());
    let bad = OpensslResponder::start_any(&pki, &index, &rogue);
    let bad_relay = Relay::start(bad.port);
    let noeku = OpensslResponder::start_any(&pki, &index, &not_delegated);
    let noeku_relay = Relay::start(noeku.port);
    let cfg = tls_base(1)
        + &vhost(
            "good",
            &["good.example", "*"],
            &good.chain_file(),
            &good.key_file(),
        )
        .ocsp(&ocsp_lines(Some(&ok.url()), "1s", "2s"))
        .toml()
        + &vhost("rogue", &["rogue.example"], &r.chain_file(), &r.key_file())
            .ocsp(&ocsp_lines(Some(&bad_relay.url()), "1s", "2s"))
            .toml()
        + &vhost("noeku", &["noeku.example"], &n.chain_file(), &n.key_file())
            .ocsp(&ocsp_lines(Some(&noeku_relay.url()), "1s", "2s"))
            .toml();
    let rw = Ringway::builder(cfg).dir(dir).start();

    assert_stapled(rw.port(), "good.example", &good, "control");
    assert!(
        wait_until(WAIT, || bad_relay.connections() >= 1
            && noeku_relay.connections() >= 1),
        "ringway never asked the rogue / unauthorized responders"
    );
    assert_not_stapled(rw.port(), "rogue.example", "rogue signer");
    assert_not_stapled(rw.port(), "noeku.example", "delegate without OCSPSigning");
    for name in ["rogue", "noeku"] {
        assert!(
            wait_until(WAIT, || log_lines_with(&rw, "ocsp")
                .iter()
                .any(|l| l.contains(name))),
            "no log line about the rejected OCSP response for vhost {name}; log:\n{}",
            rw.log()
        );
    }
    // Retries get the same answers: still nothing stapled.
    let asked = bad_relay.connections();
    assert!(
        wait_until(Duration::from_secs(5), || bad_relay.connections() > asked),
        "no retry of the rejected fetch within 5 s (retry_min 1s)"
    );
    assert_not_stapled(rw.port(), "rogue.example", "rogue signer, after a retry");
}

#[test]
fn response_for_another_certificate_is_rejected() {
    let dir = site();
    let pki = Pki::new(dir.path());
    let a = pki.leaf("a", 0x1001, &LeafOpts::dns(&["a.example"]));
    let other = pki.leaf("other", 0x1002, &LeafOpts::dns(&["other.example"]));
    let c = pki.leaf("c", 0x1003, &LeafOpts::dns(&["c.example"]));
    let index = pki.index(
        "index.txt",
        &[
            (&a, IndexStatus::Valid),
            (&other, IndexStatus::Valid),
            (&c, IndexStatus::Valid),
        ],
    );
    // Another CA whose responder vouches for its own certificate with the same serial.
    let pki2 = Pki::new_named(dir.path(), "ca2", "Another Test CA");
    let b = pki2.leaf("b2", 0x1004, &LeafOpts::dns(&["b.example"]));
    let b_own = pki.leaf("b", 0x1004, &LeafOpts::dns(&["b.example"]));
    let index2 = pki2.index("index2.txt", &[(&b, IndexStatus::Valid)]);

    // Fixed DER responses made by `openssl ocsp`, all good and signed by a real CA.
    let for_other = MiniResponder::start(Answer::Fixed(pki.openssl_response(
        &index,
        &pki.ca_signer(),
        &other,
    )));
    let for_c = MiniResponder::start(Answer::Fixed(pki.openssl_response(
        &index,
        &pki.ca_signer(),
        &c,
    )));
    let other_ca = MiniResponder::start(Answer::Fixed(pki2.openssl_response(
        &index2,
        &pki2.ca_signer(),
        &b,
    )));
    let cfg = tls_base(1)
        + &vhost("c", &["c.example", "*"], &c.chain_file(), &c.key_file())
            .ocsp(&ocsp_lines(Some(&for_c.url()), "1s", "2s"))
            .toml()
        + &vhost("a", &["a.example"], &a.chain_file(), &a.key_file())
            .ocsp(&ocsp_lines(Some(&for_other.url()), "1s", "2s"))
            .toml()
        + &vhost("b", &["b.example"], &b_own.chain_file(), &b_own.key_file())
            .ocsp(&ocsp_lines(Some(&other_ca.url()), "1s", "2s"))
            .toml();
    let rw = Ringway::builder(cfg).dir(dir).start();

    assert_stapled(
        rw.port(),
        "c.example",
        &c,
        "control: fixed DER for the right certificate",
    );
    assert!(
        wait_until(WAIT, || for_other.served() >= 1 && other_ca.served() >= 1),
        "ringway never fetched the wrong responses"
    );
    assert_not_stapled(rw.port(), "a.example", "response for another serial");
    assert_not_stapled(rw.port(), "b.example", "response from another CA");
}

#[test]
fn expired_or_future_response_is_not_stapled() {
    let dir = site();
    let pki = Pki::new(dir.path());
    let ok = pki.leaf("ok", 0x1001, &LeafOpts::dns(&["ok.example"]));
    let del = pki.leaf("del", 0x1002, &LeafOpts::dns(&["delegated.example"]));
    let exp = pki.leaf("exp", 0x1003, &LeafOpts::dns(&["expired.example"]));
    let fut = pki.leaf("fut", 0x1004, &LeafOpts::dns(&["future.example"]));
    let ca = CraftSigner::load(&pki.ca_signer(), false);
    let delegate = CraftSigner::load(&pki.ocsp_signer("responder", 0x1f00), true);
    let craft = |signer: &CraftSigner, this_update: i64, next_update: i64| {
        Answer::Crafted(Craft {
            signer: signer.clone(),
            status: CertStatus::good(),
            this_update,
            next_update: Some(next_update),
        })
    };
    let r_ok = MiniResponder::start(craft(&ca, -60, 3600));
    let r_del = MiniResponder::start(craft(&delegate, -60, 3600));
    // nextUpdate an hour ago; thisUpdate an hour ahead (beyond the 5 min skew allowance).
    let r_exp = MiniResponder::start(craft(&ca, -7200, -3600));
    let r_fut = MiniResponder::start(craft(&ca, 3600, 7200));
    let mut cfg = tls_base(1);
    for (name, domains, leaf, r) in [
        ("ok", vec!["ok.example", "*"], &ok, &r_ok),
        ("del", vec!["delegated.example"], &del, &r_del),
        ("exp", vec!["expired.example"], &exp, &r_exp),
        ("fut", vec!["future.example"], &fut, &r_fut),
    ] {
        cfg += &vhost(name, &domains, &leaf.chain_file(), &leaf.key_file())
            .ocsp(&ocsp_lines(Some(&r.url()), "1s", "2s"))
            .toml();
    }
    let rw = Ringway::builder(cfg).dir(dir).start();

    assert_stapled(rw.port(), "ok.example", &ok, "control: crafted by the CA");
    assert_stapled(
        rw.port(),
        "delegated.example",
        &del,
        "crafted by a delegated responder",
    );
    assert!(
        wait_until(WAIT, || r_exp.served() >= 1 && r_fut.served() >= 1),
        "ringway never fetched the expired / future responses"
    );
    assert_not_stapled(rw.port(), "expired.example", "nextUpdate in the past");
    assert_not_stapled(rw.port(), "future.example", "thisUpdate an hour ahead");
}

#[test]
fn cached_response_staples_after_restart_with_responder_down() {
    // PKI and cache outlive both ringway processes (absolute paths in the config).
    let keep = temp_dir();
    let pki = Pki::new(keep.path());
    let a = pki.leaf("a", 0x1001, &LeafOpts::dns(&["a.example"]));
    let index = pki.index("index.txt", &[(&a, IndexStatus::Valid)]);
    let cache = keep.path().join("ocspcache");
    let responder = OpensslResponder::start_any(&pki, &index, &pki.ca_signer());
    let port = responder.port;
    let cfg = tls_base(1)
        + &vhost(
            "a",
            &["a.example", "*"],
            &path_str(&a.chain_path()),
            &path_str(&a.key_path()),
        )
        .ocsp(&format!(
            "{}cache_dir = {:?}\n",
            ocsp_lines(Some(&responder.url()), "1s", "2s"),
            path_str(&cache)
        ))
        .toml();

    let rw = Ringway::builder(cfg.clone()).dir(site()).start();
    let fetched = assert_stapled(rw.port(), "a.example", &a, "responder up");
    assert!(
        wait_until(WAIT, || fs::read_dir(&cache)
            .map(|d| d.count() > 0)
            .unwrap_or(false)),
        "nothing written to cache_dir {cache:?}"
    );
    drop(rw);
    drop(responder);
    assert!(
        TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_millis(500)
        )
        .is_err(),
        "the responder is still up"
    );

    let rw = Ringway::builder(cfg).dir(site()).start();
    let cached = assert_stapled(
        rw.port(),
        "a.example",
        &a,
        "restarted with the responder down",
    );
    assert_eq!(
        cached, fetched,
        "the staple after restart should be the cached response"
    );
}
