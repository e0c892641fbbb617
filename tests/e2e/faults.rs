//! Fault runs (issue 13, section 2), bounded in time, loopback only: descriptor exhaustion and
//! a backend killed mid-tunnel and mid-response while other tunnels echo.

use std::io::Read;
use std::time::{Duration, Instant};

use tungstenite::Message;

use crate::backend::EchoBackend;
use crate::harness::*;

/// With RLIMIT_NOFILE lowered, connections beyond it wait in the kernel's queue: Ringway keeps
/// serving the ones it has, says so at most once a second, and takes the waiting ones as soon
/// as descriptors are free again.
#[test]
fn descriptor_exhaustion_keeps_serving_and_recovers() {
    let config = format!(
        "{}\n[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n\
         [[vhost.context]]\nuri = \"/echo\"\nhandler = \"echo\"\n",
        base_config(1)
    );
    let rw = Ringway::builder(config).dir(site()).nofile(64).start();
    // `/echo` without an upgrade is answered 426 without opening anything: a request that
    // needs no descriptor of its own.
    let probe = "GET /echo HTTP/1.1\r\nHost: site\r\n\r\n";
    // Open keep-alive connections until one is not answered: the limit is reached.
    let mut held = Vec::new();
    let mut waiting = None;
    for _ in 0..80 {
        let mut c = rw.conn();
        c.send(probe);
        match c.try_response(Duration::from_millis(500), false) {
            Ok(r) => {
                assert_eq!(r.status, 426);
                held.push(c);
            }
            Err(_) => {
                waiting = Some(c);
                break;
            }
        }
    }
    let mut waiting = waiting.expect("the descriptor limit was never reached");
    assert!(
        held.len() > 10,
        "only {} connections before the limit",
        held.len()
    );
    // The connections it has are served as before; a file it cannot open now is a 503
    // (Ringway's shortage), not a 404.
    for c in held.iter_mut().take(5) {
        c.send(probe);
        assert_eq!(c.response().status, 426);
    }
    held[0].send("GET /index.html HTTP/1.1\r\nHost: site\r\n\r\n");
    assert_eq!(held[0].response().status, 503);
    // Logged, at most once a second, while it lasts.
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let lines = rw.log().matches("accept failed").count();
    assert!(lines >= 1, "no log line about the failed accepts");
    assert!(
        lines as u64 <= t0.elapsed().as_secs() + 2,
        "{lines} log lines in 3 s"
    );
    // Free descriptors: the waiting connection is accepted and answered.
    held.truncate(held.len() - 10);
    let resp = waiting
        .try_response(WAIT, false)
        .expect("the waiting connection is served once descriptors are free");
    assert_eq!(resp.status, 426);
    assert_eq!(
        request(
            rw.port(),
            "GET /index.html HTTP/1.1\r\nHost: site\r\nConnection: close\r\n\r\n"
        )
        .status,
        200
    );
}

/// A second Ringway (a real process) with the built-in echo endpoint is a WebSocket backend
/// that can be SIGKILLed; 500 other tunnels go to the in-process echo backend.
#[test]
fn backend_killed_mid_tunnel_closes_its_clients_and_no_other_tunnel_loses_a_byte() {
    let victim_config = format!(
        "{}\n[[vhost]]\nname = \"v\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n[[vhost.context]]\nuri = \"/\"\nhandler = \"echo\"\n",
        base_config(1)
    );
    let mut victim = Ringway::builder(victim_config).dir(site()).start();
    let echo = EchoBackend::tcp_v4();
    let config = format!(
        r#"{}
[[vhost]]
name = "site"
domains = ["*"]
doc_root = "www"

[[vhost.websocket]]
uri = "/chat/"
address = "{}"

[[vhost.websocket]]
uri = "/doomed/"
address = "127.0.0.1:{}"
"#,
        base_config(2),
        echo.config_addr,
        victim.port()
    );
    let rw = Ringway::builder(config).dir(site()).start();
    let url = |p: &str| rw.ws_url(p);
    let mut others: Vec<Ws> = (0..500)
        .map(|i| ws_connect(rw.port(), url(&format!("/chat/{i}")).as_str()).0)
        .collect();
    let mut doomed: Vec<Ws> = (0..10)
        .map(|i| ws_connect(rw.port(), url(&format!("/doomed/{i}")).as_str()).0)
        .collect();
    for ws in &mut doomed {
        ws.send(Message::text("before")).unwrap();
        assert_eq!(ws_next(ws), Message::text("before"));
    }
    let round = |others: &mut Vec<Ws>, r: usize| {
        for (i, ws) in others.iter_mut().enumerate() {
            ws.send(Message::binary(vec![(i + r) as u8; 1000 + i]))
                .unwrap();
        }
        for (i, ws) in others.iter_mut().enumerate() {
            assert_eq!(
                ws_next(ws),
                Message::binary(vec![(i + r) as u8; 1000 + i]),
                "tunnel {i} round {r}"
            );
        }
    };
    round(&mut others, 0);
    victim.signal(libc::SIGKILL);
    let _ = victim.wait_exit(WAIT);
    round(&mut others, 1);
    // Every client of the dead backend sees its connection end: no frame, no garbage.
    for (i, ws) in doomed.iter_mut().enumerate() {
        let s = ws.get_mut();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut rest = Vec::new();
        let got = s.read_to_end(&mut rest);
        assert!(got.is_ok() || rest.is_empty(), "tunnel {i}: {got:?}");
        assert!(rest.is_empty(), "tunnel {i}: {} stray bytes", rest.len());
    }
    round(&mut others, 2);
}

/// A backend killed in the middle of a large response: the client gets the bytes that came,
/// then the connection closes (short of Content-Length), never a different length.
#[test]
fn backend_killed_mid_response_cuts_the_client_short() {
    let dir = site();
    write_file(dir.path(), "www/big.bin", vec![7u8; 64 << 20]);
    let victim_config = format!(
        "{}\n[[vhost]]\nname = \"v\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n",
        base_config(1)
    );
    let mut victim = Ringway::builder(victim_config).dir(dir).start();
    let config = format!(
        "{}\n[[backend]]\nname = \"api\"\nservers = [\"127.0.0.1:{}\"]\n\n[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\n\n[[vhost.context]]\nuri = \"/\"\nhandler = \"proxy\"\nbackend = \"api\"\n",
        base_config(1),
        victim.port()
    );
    let rw = Ringway::builder(config).start();
    let mut c = rw.conn();
    c.send("GET /big.bin HTTP/1.1\r\nHost: site\r\n\r\n");
    let head = c.try_head(WAIT).expect("the response head");
    let length: usize = head.get("content-length").unwrap().parse().unwrap();
    assert_eq!(length, 64 << 20);
    // Read a little (the client is slow), then the backend dies.
    let first = c.read_exact(1 << 20);
    assert!(first.iter().all(|&b| b == 7));
    victim.signal(libc::SIGKILL);
    let _ = victim.wait_exit(WAIT);
    let rest = c
        .read_until_closed(Duration::from_secs(30))
        .unwrap_or_default();
    let total = first.len() + rest.len();
    assert!(
        total < length,
        "got all {total} bytes from a killed backend?"
    );
    assert!(rest.iter().all(|&b| b == 7), "only the file's bytes");
}

/// A backend that sends a 10 GiB body to a client that reads slowly: Ringway holds back (it
/// reads from the backend only as fast as the client takes), so its memory stays flat.
#[test]
fn endless_body_to_a_slow_reader_is_backpressure_not_buffering() {
    use crate::http_backends::{head, HttpBackend, Then};
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    let api = HttpBackend::with_handler("huge", move |_, _, w| {
        let mut out = head(200, &[("Content-Length", &(10u64 << 30).to_string())]);
        out.extend_from_slice(b"\r\n");
        if w.write_all(&out).is_err() {
            return Then::Close;
        }
        let chunk = vec![b'x'; 64 << 10];
        while w.write_all(&chunk).is_ok() {
            counter.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Then::Close
    });
    let config = format!(
        "{}\n[[backend]]\nname = \"api\"\nservers = [\"{}\"]\n\n[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\n\n[[vhost.context]]\nuri = \"/\"\nhandler = \"proxy\"\nbackend = \"api\"\n",
        base_config(1),
        api.config_addr
    );
    let rw = Ringway::builder(config).start();
    let before = rw.rss_kib();
    let mut c = rw.conn();
    c.send("GET /huge HTTP/1.1\r\nHost: site\r\n\r\n");
    assert_eq!(
        c.try_head(WAIT).expect("head").get("content-length"),
        Some("10737418240")
    );
    // Read 64 KiB every 100 ms for 3 s.
    let mut got = 0;
    for _ in 0..30 {
        got += c.read_exact(64 << 10).len();
        std::thread::sleep(Duration::from_millis(100));
    }
    let grown = rw.rss_kib().saturating_sub(before);
    let pushed = sent.load(std::sync::atomic::Ordering::Relaxed);
    // What the backend could push is what the client read plus the sockets' buffers: a few
    // MiB, not the 10 GiB it wanted to send.
    assert!(
        pushed < (got as u64) + (64 << 20),
        "backend pushed {pushed} bytes for {got} read"
    );
    assert!(
        grown < 16 * 1024,
        "Ringway grew by {grown} KiB while relaying to a slow reader"
    );
}

/// A backend whose response head never ends: 502 once `limits.max_header_bytes` is passed,
/// and the backend connection is dropped (it is not read forever).
#[test]
fn endless_response_head_gives_502() {
    use crate::http_backends::{HttpBackend, Then};
    let api = HttpBackend::with_handler("endless", |_, _, w| {
        if w.write_all(b"HTTP/1.1 200 OK\r\nX-Endless: ").is_ok() {
            let chunk = vec![b'a'; 4096];
            while w.write_all(&chunk).is_ok() {}
        }
        Then::Close
    });
    let config = format!(
        "{}\n[[backend]]\nname = \"api\"\nservers = [\"{}\"]\nretries = 0\n\n[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\n\n[[vhost.context]]\nuri = \"/\"\nhandler = \"proxy\"\nbackend = \"api\"\n",
        base_config(1),
        api.config_addr
    );
    let rw = Ringway::builder(config).start();
    let t0 = Instant::now();
    let resp = request(
        rw.port(),
        "GET /x HTTP/1.1\r\nHost: site\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 502);
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(
        wait_until(WAIT, || api.closed() >= 1),
        "the backend connection was dropped"
    );
}

/// OCSP responders that misbehave: garbage, a 10 MiB body, silence for 30 s. Serving never
/// waits on them (beyond the documented start-up wait), nothing is stapled, every fetch is
/// counted as an error.
#[test]
fn ocsp_responder_garbage_huge_or_silent_never_stalls_serving() {
    use crate::ocsp_responders::{Answer, MiniResponder};
    use crate::pki::{ocsp_lines, tls_base, vhost, LeafOpts, Pki};
    use crate::tls_clients::s_client;
    let huge = {
        let mut b = b"HTTP/1.0 200 OK\r\nContent-Type: application/ocsp-response\r\nContent-Length: 10485760\r\n\r\n".to_vec();
        b.resize(b.len() + (10 << 20), 0x30);
        b
    };
    let garbage = b"HTTP/1.0 200 OK\r\nContent-Length: 24\r\n\r\nthis is not DER at all!!".to_vec();
    for (what, answer) in [
        ("garbage", Answer::Raw(garbage)),
        ("10 MiB body", Answer::Raw(huge)),
        ("silent for 30 s", Answer::Silent(Duration::from_secs(30))),
    ] {
        let responder = MiniResponder::start(answer);
        let dir = site();
        let pki = Pki::new(dir.path());
        let a = pki.leaf("a", 0x1001, &LeafOpts::dns(&["a.example"]));
        let cfg = tls_base(1)
            + &vhost("a", &["a.example", "*"], &a.chain_file(), &a.key_file())
                .ocsp(&ocsp_lines(Some(&responder.url()), "1s", "2s"))
                .toml();
        let t0 = Instant::now();
        let rw = Ringway::builder(cfg).dir(dir).start();
        // Start-up waits at most 5 s for the first fetches (documented), then serves.
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "{what}: start took {:?}",
            t0.elapsed()
        );
        for _ in 0..3 {
            let t = Instant::now();
            let o = s_client(rw.port(), Some("a.example"), &[]);
            assert!(o.handshake_ok(), "{what}: {}", o.text());
            assert!(
                o.out.contains("OCSP response: no response sent"),
                "{what}: stapled? {}",
                o.text()
            );
            assert!(
                t.elapsed() < Duration::from_secs(3),
                "{what}: a handshake took {:?}",
                t.elapsed()
            );
        }
        assert!(
            responder.requests() >= 1,
            "{what}: the responder was never asked"
        );
        let log = rw.log();
        if what != "silent for 30 s" {
            assert!(log.contains("OCSP fetch failed"), "{what}: {log}");
        }
    }
}

/// The p99 (of `p99_us`) above which the slow connections of a fault run count as disturbing
/// others. A core held up by them would keep a request waiting for whole seconds (the header and
/// send timeouts are 3 s), while scheduling beside 5,000 open connections on this 2-CPU machine
/// reaches tens of milliseconds when other tests run beside it (3–25 ms seen, against 0.3–0.7 ms
/// unloaded, for the builds before and after 2026-12-07 alike). The figures themselves are
/// printed for the record; speed belongs in the benchmarks (`bench/`), not in a timed bound here.
const DISTURBED_P99_US: u64 = 200_000;

/// p99 of `n` keep-alive requests on one connection, in microseconds.
fn p99_us(rw: &Ringway, n: usize) -> u64 {
    let mut c = rw.conn();
    let mut lat: Vec<u64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            c.send("GET /index.html HTTP/1.1\r\nHost: site\r\n\r\n");
            assert_eq!(c.response().status, 200);
            t.elapsed().as_micros() as u64
        })
        .collect();
    lat.sort_unstable();
    lat[n * 99 / 100]
}

/// Slowloris, the slow-header half: 5,000 connections sending their head one byte a second.
/// Other clients keep their latency, memory per slow connection stays small, and
/// `timeouts.header` cuts the slow ones (408).
#[test]
fn slow_header_senders_are_cut_by_the_header_timeout_and_disturb_no_one() {
    use std::io::Write;
    let config = format!(
        "{}\n[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n",
        base_config_timeouts(1, &[("header", "3s")])
    );
    let rw = Ringway::builder(config).dir(site()).start();
    let base = p99_us(&rw, 300);
    let rss_before = rw.rss_kib();
    let mut slow: Vec<std::net::TcpStream> = (0..5000)
        .map(|_| {
            let s = std::net::TcpStream::connect(("127.0.0.1", rw.port())).expect("connect");
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let opened = Instant::now();
    let head = b"GET /index.html HTTP/1.1\r\n";
    // One byte a second on every connection, for two seconds.
    for i in 0..2 {
        for s in &mut slow {
            let _ = s.write(&head[i..i + 1]);
        }
        std::thread::sleep(Duration::from_millis(900));
    }
    let rss_per_conn = (rw.rss_kib().saturating_sub(rss_before)) as f64 / 5000.0;
    let loaded = p99_us(&rw, 300);
    eprintln!(
        "slowloris: p99 {base} µs unloaded, {loaded} µs beside 5,000 slow heads; \
         {rss_per_conn:.2} KiB RSS per slow connection"
    );
    assert!(
        loaded < DISTURBED_P99_US,
        "p99 {loaded} µs loaded vs {base} µs unloaded"
    );
    assert!(
        rss_per_conn < 16.0,
        "{rss_per_conn:.2} KiB per slow connection"
    );
    // `header` (3 s from accept) cuts them: each gets 408, then EOF. The deadline is generous
    // (ten times the timeout): under load the 5,000 accepts and the p99 runs above take seconds
    // of their own (with 10 s, not every sampled connection had read its 408 once, in a run of
    // the suite beside a build), while a
    // connection the timeout never cut would wait for it all the same.
    let deadline = opened + Duration::from_secs(30);
    let mut cut = 0;
    for s in slow.iter_mut().step_by(50) {
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10)),
        ))
        .unwrap();
        let mut got = Vec::new();
        if s.read_to_end(&mut got).is_ok() && got.starts_with(b"HTTP/1.1 408") {
            cut += 1;
        }
    }
    assert_eq!(
        cut, 100,
        "every sampled slow connection gets 408 and is closed"
    );
    assert!(opened.elapsed() < Duration::from_secs(30));
}

/// Slowloris, the slow-reader half: 5,000 connections each ask for an 8 MiB file and then read
/// one byte a second. Other clients keep their latency; the slow ones hold no buffer of
/// Ringway's (the file goes out by `sendfile`), and `timeouts.send` cuts them, each logged once.
#[test]
fn slow_readers_are_cut_by_the_send_timeout_and_disturb_no_one() {
    use std::io::Write;
    const BIG: usize = 8 << 20;
    const SLOW: usize = 5000;
    let config = format!(
        "{}\n[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n",
        base_config_timeouts(1, &[("send", "3s")])
    );
    let dir = site();
    let big: Vec<u8> = (0..BIG).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.path().join("www/big.bin"), &big).unwrap();
    let rw = Ringway::builder(config).dir(dir).start();
    let base = p99_us(&rw, 300);
    let rss_before = rw.rss_kib();
    let mut slow: Vec<std::net::TcpStream> = (0..SLOW)
        .map(|_| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            // A small window: the kernel buffers little on either side, so the writes stall.
            s.set_recv_buffer_size(4096).unwrap();
            s.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], rw.port())).into())
                .expect("connect");
            let mut s: std::net::TcpStream = s.into();
            s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: site\r\n\r\n")
                .unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let opened = Instant::now();
    let mut got = vec![0usize; SLOW];
    let mut read_round = |slow: &mut Vec<std::net::TcpStream>| {
        for (s, n) in slow.iter_mut().zip(got.iter_mut()) {
            let mut b = [0u8; 1];
            if let Ok(1) = s.read(&mut b) {
                *n += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(900));
    };
    // One byte a second from every connection, for two seconds; then measure.
    read_round(&mut slow);
    read_round(&mut slow);
    let rss_per_conn = (rw.rss_kib().saturating_sub(rss_before)) as f64 / SLOW as f64;
    let loaded = p99_us(&rw, 300);
    eprintln!(
        "slow readers: p99 {base} µs unloaded, {loaded} µs beside {SLOW} slow readers; \
         {rss_per_conn:.2} KiB RSS per slow connection"
    );
    assert!(
        loaded < DISTURBED_P99_US,
        "p99 {loaded} µs loaded vs {base} µs unloaded"
    );
    assert!(
        rss_per_conn < 16.0,
        "{rss_per_conn:.2} KiB per slow connection"
    );
    // Still one byte a second while `send` (3 s without progress) runs out: each is cut and
    // logged once.
    while opened.elapsed() < Duration::from_secs(5) {
        read_round(&mut slow);
    }
    assert!(
        rw.wait_log("timeouts.send", SLOW, Duration::from_secs(10)),
        "{} of {SLOW} slow readers cut",
        rw.log().matches("timeouts.send").count()
    );
    assert_eq!(rw.log().matches("timeouts.send").count(), SLOW);
    // A sampled one reads what the kernel still held, then the connection ends short of the
    // promised length: a truncated body, never a wrong one.
    for (s, n) in slow.iter_mut().zip(&got).step_by(250) {
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        let total = n + rest.len();
        assert!(total < BIG, "{total} bytes: the connection was not cut");
    }
    // Serving goes on.
    assert!(p99_us(&rw, 50) > 0);
}

/// A WebSocket client that sends and never reads: the echoes back up until Ringway's writes to
/// it stall, and `timeouts.send` closes the tunnel (logged once); a reading client beside it is
/// served throughout.
#[test]
fn tunnel_client_that_never_reads_is_cut_by_the_send_timeout() {
    let echo = EchoBackend::tcp_v4();
    let config = format!(
        "{}\n[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n\
         [[vhost.websocket]]\nuri = \"/chat/\"\naddress = \"{}\"\n",
        base_config_timeouts(1, &[("send", "2s")]),
        echo.config_addr
    );
    let rw = Ringway::builder(config).dir(site()).start();
    let (mut deaf, _) = ws_connect(rw.port(), rw.ws_url("/chat/deaf").as_str());
    let (mut good, _) = ws_connect(rw.port(), rw.ws_url("/chat/good").as_str());
    deaf.get_mut()
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Write until the whole chain is full (our send blocks); keep going until it fails.
    let t0 = Instant::now();
    let mut failed = false;
    while t0.elapsed() < Duration::from_secs(15) {
        if deaf.send(Message::binary(vec![7u8; 64 * 1024])).is_err() {
            failed = true;
            break;
        }
        good.send(Message::text("still here")).unwrap();
        assert_eq!(ws_next(&mut good), Message::text("still here"));
    }
    assert!(
        rw.wait_log("timeouts.send: tunnel closed", 1, Duration::from_secs(10)),
        "the deaf client was not cut (its own send failed: {failed}): {}",
        rw.log()
    );
    assert_eq!(rw.log().matches("timeouts.send").count(), 1);
    good.send(Message::text("after")).unwrap();
    assert_eq!(ws_next(&mut good), Message::text("after"));
}

/// WebSocket backends that fail at the handshake: one accepts and never answers (the client
/// gets 504 when `timeouts.header` runs out), one answers a valid 101 and closes at once (the
/// client's connection ends cleanly: no frame, no stray byte). A tunnel beside them echoes
/// throughout.
#[test]
fn websocket_backend_silent_or_closing_after_101() {
    use std::io::Write;
    // Accepts, reads the request, never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming().flatten() {
            held.push(s);
        }
    });
    // Answers a correct 101, then closes.
    let quitter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let quitter_addr = quitter.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in quitter.incoming().flatten() {
            let mut head = Vec::new();
            let mut b = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                }
            }
            let text = String::from_utf8_lossy(&head).into_owned();
            let key = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .starts_with("sec-websocket-key:")
                        .then(|| l[18..].trim().to_string())
                })
                .unwrap_or_default();
            let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
            let _ = write!(
                s,
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
        }
    });
    let echo = EchoBackend::tcp_v4();
    let config = format!(
        "{}\n[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n\
         [[vhost.websocket]]\nuri = \"/chat/\"\naddress = \"{}\"\n\
         [[vhost.websocket]]\nuri = \"/silent/\"\naddress = \"{silent_addr}\"\n\
         [[vhost.websocket]]\nuri = \"/quits/\"\naddress = \"{quitter_addr}\"\n",
        base_config_timeouts(1, &[("header", "1s")]),
        echo.config_addr
    );
    let rw = Ringway::builder(config).dir(site()).start();
    let (mut good, _) = ws_connect(rw.port(), rw.ws_url("/chat/good").as_str());
    let upgrade = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: site\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    // Silent: 504 after about `header`.
    let t0 = Instant::now();
    let mut c = rw.conn();
    c.send(upgrade("/silent/x"));
    assert_eq!(c.response().status, 504);
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    good.send(Message::text("during")).unwrap();
    assert_eq!(ws_next(&mut good), Message::text("during"));
    // 101 then EOF: the client gets the 101, then its connection ends with nothing more.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", rw.port())).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(upgrade("/quits/x").as_bytes()).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    let body = &got[text.find("\r\n\r\n").expect("a complete head") + 4..];
    assert!(body.is_empty(), "{} stray bytes after the 101", body.len());
    good.send(Message::text("after")).unwrap();
    assert_eq!(ws_next(&mut good), Message::text("after"));
}
