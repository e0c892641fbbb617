//! Operating Ringway, the process's life: configuration reloads (SIGHUP), graceful drain
//! (SIGTERM), binary upgrade (SIGUSR2), systemd readiness, the default keep-alive pool and
//! HTTP version checks, all against the real binary with real signals; and the config, request,
//! metrics-scrape and tunnel helpers that `observability` shares.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

use crate::backend::EchoBackend;
use crate::harness::*;
use crate::http_backends::HttpBackend;

/// `main` on @PORT@ (a static site, `/chat/` to the echo backend `server`) and `admin` on
/// @PORT1@; `extra` is appended.
pub fn ops_config(cores: usize, server: &str, extra: &str) -> String {
    ops_config_timeouts(cores, &[], server, extra)
}

fn ops_config_timeouts(
    cores: usize,
    timeouts: &[(&str, &str)],
    server: &str,
    extra: &str,
) -> String {
    let head = format!(
        "{}\n[[listener]]\nname = \"admin\"\naddress = \"127.0.0.1:@PORT1@\"\n\n\
         [admin]\nlistener = \"admin\"\n",
        base_config_timeouts(cores, timeouts)
    );
    format!("{}{extra}\n", ws_site(&head, server))
}

/// One core, everything proxied to the HTTP backend `server`.
fn api_config(timeouts: &[(&str, &str)], server: &str) -> String {
    format!(
        r#"{}
[[backend]]
name = "api"
servers = ["{server}"]

[[vhost]]
name = "site"
domains = ["*"]

[[vhost.context]]
uri = "/"
handler = "proxy"
backend = "api"
"#,
        base_config_timeouts(1, timeouts)
    )
}

/// Prometheus text parsed: every sample as (series, value). Fails on a sample whose family
/// has no `# TYPE` line before it, on a bad value, or on a line that is not a sample.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    let mut typed: Vec<String> = Vec::new();
    let mut helped: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap().to_string();
            let kind = parts.next().unwrap();
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "bad type in {line:?}"
            );
            typed.push(name);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.push(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let name = series.split('{').next().unwrap();
        // `process_*`: the standard family every Prometheus client library writes.
        assert!(
            name.starts_with("ringway_") || name.starts_with("process_"),
            "{name} lacks the prefix"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|b| typed.iter().any(|t| t == b))
            })
            .unwrap_or(name);
        assert!(typed.iter().any(|t| t == family), "{name}: no # TYPE");
        assert!(helped.iter().any(|t| t == family), "{name}: no # HELP");
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        out.push((series.to_string(), v));
    }
    out
}

/// The sum over samples of metric `name` whose labels include every `label="value"` given.
pub fn sum(samples: &[(String, f64)], name: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(s, _)| s.split('{').next() == Some(name))
        .filter(|(s, _)| labels.iter().all(|l| s.contains(l)))
        .map(|(_, v)| v)
        .sum()
}

pub fn scrape(admin_port: u16) -> Vec<(String, f64)> {
    let resp = request(
        admin_port,
        "GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    let kind = resp.header("content-type").unwrap_or_default().to_string();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    parse_metrics(&resp.body_text())
}

pub fn get(port: u16, path: &str) -> Response {
    request(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: site\r\nConnection: close\r\n\r\n"),
    )
}

/// N tunnels to the echo backend, each a raw tungstenite client.
pub fn open_tunnels(rw: &Ringway, n: usize) -> Vec<Ws> {
    (0..n)
        .map(|i| ws_connect(rw.port(), rw.ws_url(&format!("/chat/t{i}")).as_str()).0)
        .collect()
}

/// One message on every tunnel; every echo must come back unchanged.
pub fn echo_round(tunnels: &mut [Ws], round: usize) {
    for (i, ws) in tunnels.iter_mut().enumerate() {
        ws.send(Message::text(format!(
            "r{round}-t{i}-{}",
            "x".repeat(i % 50)
        )))
        .unwrap_or_else(|e| panic!("round {round} tunnel {i}: {e}"));
    }
    for (i, ws) in tunnels.iter_mut().enumerate() {
        let want = Message::text(format!("r{round}-t{i}-{}", "x".repeat(i % 50)));
        assert_eq!(ws_next(ws), want, "round {round} tunnel {i}");
    }
}

#[test]
fn reloads_keep_1000_tunnels_and_serve_new_routes_and_refuse_broken_configs() {
    let echo = EchoBackend::tcp_v4();
    let template = ops_config(2, &echo.config_addr, "")
        .replace("pin = false\n", "pin = false\npid_file = \"ringway.pid\"\n");
    let rw = Ringway::builder(template.clone()).dir(site()).start();
    write_file(rw.dir_path(), "www/added/page.html", "added\n");
    let mut tunnels = open_tunnels(&rw, 1000);
    echo_round(&mut tunnels, 0);
    // The route added by the reloads: /added/ answers 404 until a reload makes it an echo
    // endpoint (426 to a plain request).
    assert_eq!(get(rw.port(), "/added/page.html").status, 200);
    let with_route = template.replace(
        "[[vhost.context]]\nuri = \"/\"",
        "[[vhost.context]]\nuri = \"/added/\"\nhandler = \"echo\"\n\n[[vhost.context]]\nuri = \"/\"",
    );
    for round in 1..=10 {
        let text = if round % 2 == 1 {
            &with_route
        } else {
            &template
        };
        rw.rewrite_config(text);
        rw.signal(libc::SIGHUP);
        assert!(
            rw.wait_log("configuration reloaded generation=", round, WAIT),
            "reload {round} not done"
        );
        echo_round(&mut tunnels, round);
    }
    // After 10 reloads (the last without the route), add it once more (with `ringway
    // reload`, which signals the pid in the pid file) and use it.
    rw.rewrite_config(&with_route);
    let (status, out, err) = run_cli(&["reload", "--config", rw.config_path().to_str().unwrap()]);
    assert!(status.success(), "{out}{err}");
    assert!(
        out.contains(&format!("reload signalled to pid {}", rw.pid())),
        "{out}"
    );
    assert!(rw.wait_log("configuration reloaded generation=", 11, WAIT));
    assert_eq!(get(rw.port(), "/added/page.html").status, 426);
    let m = scrape(rw.port_n(1));
    assert_eq!(sum(&m, "ringway_config_generation", &[]), 12.0);
    assert_eq!(
        sum(&m, "ringway_config_reloads_total", &["result=\"ok\""]),
        11.0
    );
    assert_eq!(sum(&m, "ringway_tunnels_active", &[]), 1000.0);

    // A broken config: logged with FILE:LINE:COL, counted, and nothing changes.
    let broken = format!("{with_route}\n[[vhost.context]]\nuri = \"/x\"\nhandler = \"nope\"\n");
    rw.rewrite_config(&broken);
    rw.signal(libc::SIGHUP);
    assert!(rw.wait_log("reload refused", 1, WAIT));
    let log = rw.log();
    let file = rw.config_path().display().to_string();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("{file}:")) && l.contains("nope")),
        "{log}"
    );
    assert_eq!(get(rw.port(), "/added/page.html").status, 426);
    echo_round(&mut tunnels, 11);
    let m = scrape(rw.port_n(1));
    assert_eq!(
        sum(&m, "ringway_config_reloads_total", &["result=\"error\""]),
        1.0
    );
    assert_eq!(sum(&m, "ringway_config_generation", &[]), 12.0);
    // runtime.cores needs a restart: said, and the old value kept.
    rw.rewrite_config(&with_route.replace("cores = 2", "cores = 1"));
    rw.signal(libc::SIGHUP);
    assert!(rw.wait_log(
        "runtime.cores changed: that needs a restart; keeping 2",
        1,
        WAIT
    ));
    echo_round(&mut tunnels, 12);
}

/// Runs wrk against `path` for `secs`; returns (requests, non-2xx/3xx, socket errors).
fn wrk(port: u16, path: &str, secs: u32) -> (u64, u64, u64) {
    let out = Command::new("wrk")
        .args(["-t2", "-c16", &format!("-d{secs}s"), "--latency"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let number_after = |needle: &str| -> u64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(needle))
            .map_or(0, |rest| {
                rest.trim()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            })
    };
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("wrk output: {text}"));
    let errors = text
        .lines()
        .find(|l| l.contains("Socket errors"))
        .map_or(0, |l| {
            l.split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse::<u64>().ok())
                .sum()
        });
    (requests, number_after("Non-2xx or 3xx responses:"), errors)
}

#[test]
fn reloads_under_wrk_lose_no_request_and_listeners_come_and_go() {
    let echo = EchoBackend::tcp_v4();
    let api = HttpBackend::named("api");
    // The HTTP proxy path: /api/ to a backend pool (each reload makes new pools).
    let template = ops_config(2, &echo.config_addr, "")
        .replace(
            "[[vhost]]",
            &format!("[[backend]]\nname = \"api\"\nservers = [\"{}\"]\n\n[[vhost]]", api.config_addr),
        )
        .replace(
            "[[vhost.context]]\nuri = \"/\"",
            "[[vhost.context]]\nuri = \"/api/\"\nhandler = \"proxy\"\nbackend = \"api\"\n\n[[vhost.context]]\nuri = \"/\"",
        );
    let rw = Ringway::builder(template.clone()).dir(site()).start();
    let extra_port = free_port();
    let with_listener = template
        .replace(
            "[admin]",
            &format!(
                "[[listener]]\nname = \"extra\"\naddress = \"127.0.0.1:{extra_port}\"\n\n[admin]"
            ),
        )
        .replace(
            "listeners = [\"main\"]",
            "listeners = [\"main\", \"extra\"]",
        );
    let stop = Arc::new(AtomicBool::new(false));
    let reloads = {
        let (stop, cfg, path) = (stop.clone(), rw.render(&template), rw.config_path());
        let alt = rw.render(&with_listener);
        let pid = rw.pid() as i32;
        thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                std::fs::write(&path, if n % 2 == 0 { &alt } else { &cfg }).unwrap();
                // SAFETY: signal to the test's own child.
                unsafe { libc::kill(pid, libc::SIGHUP) };
                n += 1;
                thread::sleep(Duration::from_millis(150));
            }
            n
        })
    };
    let (requests, bad, errors) = wrk(rw.port(), "/api/x", 3);
    stop.store(true, Ordering::SeqCst);
    let n = reloads.join().unwrap();
    assert!(n >= 10, "only {n} reloads");
    assert!(requests > 100, "{requests} requests");
    assert!(api.accepted() > 0 && api.requests().len() as u64 >= requests);
    assert_eq!(
        (bad, errors),
        (0, 0),
        "non-2xx and socket errors during reloads"
    );
    // The added listener serves after a reload and is closed by the next.
    rw.rewrite_config(&with_listener);
    rw.signal(libc::SIGHUP);
    assert!(wait_until(WAIT, || TcpStream::connect((
        "127.0.0.1",
        extra_port
    ))
    .is_ok_and(|_| get(extra_port, "/index.html").status == 200)));
    rw.rewrite_config(&template);
    rw.signal(libc::SIGHUP);
    assert!(wait_until(WAIT, || TcpStream::connect((
        "127.0.0.1",
        extra_port
    ))
    .is_err()));
    assert_eq!(get(rw.port(), "/index.html").status, 200);
}

/// A WebSocket backend that answers "big" with one 4 MiB binary message sent in small
/// writes, echoes anything else, and records the close code it receives.
fn big_message_backend() -> (String, Arc<std::sync::Mutex<Vec<Option<u16>>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let closes = Arc::new(std::sync::Mutex::new(Vec::new()));
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
                        Ok(Message::Text(t)) if t.as_str() == "big" => {
                            let _ = ws.send(Message::binary(vec![0xAB; 4 << 20]));
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
fn sigterm_closes_tunnels_with_1001_at_frame_boundaries_and_exits_0() {
    let (addr, backend_closes) = big_message_backend();
    let config = ops_config_timeouts(2, &[("drain", "20s")], &addr, "");
    let mut rw = Ringway::builder(config).dir(site()).start();
    // Idle tunnels, and one in the middle of a 4 MiB message that the client reads slowly.
    let mut idle = open_tunnels(&rw, 20);
    echo_round(&mut idle, 0);
    let (mut busy, _) = ws_connect(rw.port(), rw.ws_url("/chat/busy").as_str());
    busy.send(Message::text("big")).unwrap();
    // A keep-alive HTTP connection with an answered request, idle.
    let mut keep = rw.conn();
    keep.send("GET /index.html HTTP/1.1\r\nHost: site\r\n\r\n");
    assert_eq!(keep.response().status, 200);
    // Let the backend start streaming (the client has not read yet: Ringway holds a spill).
    thread::sleep(Duration::from_millis(300));
    rw.signal(libc::SIGTERM);
    // New connections are refused once the listeners close.
    assert!(wait_until(WAIT, || TcpStream::connect((
        "127.0.0.1",
        rw.port()
    ))
    .is_err()));
    // The busy client gets the whole message, then Close 1001.
    match ws_next(&mut busy) {
        Message::Binary(b) => assert!(b.len() == 4 << 20 && b.iter().all(|&x| x == 0xAB)),
        other => panic!("expected the whole 4 MiB message, got {other:?}"),
    }
    match ws_next(&mut busy) {
        Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Away),
        other => panic!("expected Close 1001, got {other:?}"),
    }
    // Idle ones: Close 1001 straight away.
    for (i, ws) in idle.iter_mut().enumerate() {
        match ws_next(ws) {
            Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Away, "tunnel {i}"),
            other => panic!("tunnel {i}: expected Close 1001, got {other:?}"),
        }
    }
    // The idle keep-alive connection is closed without a byte.
    keep.assert_closed("idle keep-alive connection after SIGTERM");
    // tungstenite answers the Close; then Ringway ends and exits 0 well before the drain
    // time-out.
    drop(idle);
    drop(busy);
    let status = rw
        .wait_exit(Duration::from_secs(10))
        .expect("ringway did not exit");
    assert!(status.success(), "{status}");
    // Every backend got Close 1001 too.
    let closes = backend_closes.lock().unwrap().clone();
    assert_eq!(closes.len(), 21, "{closes:?}");
    assert!(closes.iter().all(|c| *c == Some(1001)), "{closes:?}");
}

#[test]
fn sigterm_lets_requests_in_flight_finish_and_a_second_sigterm_exits_at_once() {
    let api = HttpBackend::named("api");
    let config = api_config(&[("drain", "30s")], &api.config_addr);
    let mut rw = Ringway::builder(config).start();
    let mut slow = rw.conn();
    slow.send("GET /slow HTTP/1.1\r\nHost: site\r\n\r\n");
    assert!(wait_until(WAIT, || api
        .requests()
        .iter()
        .any(|r| r.path() == "/slow")));
    rw.signal(libc::SIGTERM);
    thread::sleep(Duration::from_millis(300));
    api.release();
    let resp = slow.response();
    assert_eq!(resp.status, 200, "the request in flight completes");
    assert_eq!(resp.header("connection"), Some("close"));
    slow.assert_closed("connection after its last response in a drain");
    let status = rw.wait_exit(WAIT).expect("exit after the drain");
    assert!(status.success(), "{status}");

    // A tunnel whose peer never answers the Close holds the drain; a second SIGTERM ends it.
    let echo = EchoBackend::tcp_v4();
    let mut rw = Ringway::builder(ops_config(1, &echo.config_addr, ""))
        .dir(site())
        .start();
    let mut raw = TcpStream::connect(("127.0.0.1", rw.port())).unwrap();
    raw.write_all(&Req::upgrade("/chat/x", "site").bytes())
        .unwrap();
    let mut head = [0u8; 1024];
    let n = raw.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 101"));
    rw.signal(libc::SIGTERM);
    // The raw client never answers the Close it gets.
    raw.set_read_timeout(Some(WAIT)).unwrap();
    let mut close = [0u8; 4];
    raw.read_exact(&mut close).unwrap();
    assert_eq!(close, [0x88, 0x02, 0x03, 0xE9]);
    assert!(
        rw.wait_exit(Duration::from_millis(800)).is_none(),
        "drain waits for the peer"
    );
    let t0 = Instant::now();
    rw.signal(libc::SIGTERM);
    assert!(
        rw.wait_exit(Duration::from_secs(2)).is_some(),
        "second SIGTERM exits at once"
    );
    assert!(t0.elapsed() < Duration::from_secs(2));
    let _ = raw.shutdown(Shutdown::Both);
}

#[test]
fn upgrade_hands_sockets_to_a_new_process_without_refusing_a_connection() {
    let echo = EchoBackend::tcp_v4();
    let config = ops_config(2, &echo.config_addr, "")
        .replace("pin = false\n", "pin = false\npid_file = \"ringway.pid\"\n");
    let mut rw = Ringway::builder(config).dir(site()).start();
    let pid_file = rw.dir_path().join("ringway.pid");
    let old_pid = rw.pid().to_string();
    assert!(wait_until(WAIT, || std::fs::read_to_string(&pid_file)
        .is_ok_and(|p| p.trim() == old_pid)));
    // An open tunnel on the old process: it is drained (1001), not cut.
    let (mut ws, _) = ws_connect(rw.port(), rw.ws_url("/chat/old").as_str());
    // The Close comes once the new process serves, and starting it takes seconds of its own on
    // a loaded machine, so this read waits up to 60 s rather than the default 10 s. (This read
    // failed once in a run of the suite beside a build; the reason was not kept. A tunnel cut
    // without a Close still fails here at once, with the error in the message.)
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // Connection churn during the upgrade: every connect must succeed and be answered.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let churn: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed, port) = (stop.clone(), ok.clone(), failed.clone(), rw.port());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let answered = TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
                        s.set_read_timeout(Some(WAIT)).unwrap();
                        let req =
                            b"GET /index.html HTTP/1.1\r\nHost: site\r\nConnection: close\r\n\r\n";
                        let mut body = Vec::new();
                        s.write_all(req).is_ok()
                            && s.read_to_end(&mut body).is_ok()
                            && body.starts_with(b"HTTP/1.1 200")
                    });
                    let counter = if answered { &ok } else { &failed };
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let (status, out, err) = run_cli(&["upgrade", "--config", rw.config_path().to_str().unwrap()]);
    assert!(status.success(), "{out}{err}");
    // The old process drains: the tunnel gets 1001, then the process exits 0.
    match ws_next(&mut ws) {
        Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Away),
        other => panic!("expected Close 1001, got {other:?}"),
    }
    drop(ws);
    let exit = rw
        .wait_exit(Duration::from_secs(15))
        .expect("old process exits");
    assert!(exit.success(), "{exit}");
    let new_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(new_pid.to_string(), old_pid);
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    for t in churn {
        t.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    // The new process serves, tunnels included.
    let (mut ws, _) = ws_connect(rw.port(), rw.ws_url("/chat/new").as_str());
    ws.send(Message::text("after")).unwrap();
    assert_eq!(ws_next(&mut ws), Message::text("after"));
    drop(ws);
    // SAFETY: the new Ringway (our grandchild) is stopped by its pid.
    unsafe { libc::kill(new_pid, libc::SIGKILL) };
    assert!(ok > 20, "{ok} connections answered");
    assert_eq!(
        failed,
        0,
        "{failed} of {} connections failed during the upgrade",
        ok + failed
    );
}

#[test]
fn default_keepalive_pool_holds_64_concurrent_clients_without_churn() {
    let api = HttpBackend::named("api");
    let config = api_config(&[], &api.config_addr);
    let rw = Ringway::builder(config).start();
    let barrier = Arc::new(std::sync::Barrier::new(64));
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let (port, barrier) = (rw.port(), barrier.clone());
            thread::spawn(move || {
                let mut c = Conn::open(port);
                for _ in 0..20 {
                    barrier.wait();
                    c.send("GET /x HTTP/1.1\r\nHost: site\r\n\r\n");
                    assert_eq!(c.response().status, 200);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    // 64 clients in lock-step need at most 64 backend connections; with a per-server idle
    // cap below 64 (the old default was 32) each round would close and reopen the excess.
    let accepted = api.accepted();
    assert!(
        accepted <= 64,
        "{accepted} backend connections for 64 clients"
    );
}

#[test]
fn a_malformed_version_is_400_and_an_unsupported_one_505() {
    let rw = Ringway::builder(format!(
        "{}\n[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n",
        base_config(1)
    ))
    .dir(site())
    .start();
    for (line, status) in [
        ("GET / HTTQ/1.1", 400),
        ("GET / HTTP/1.1x", 400),
        ("GET / http/1.1", 400),
        ("GET / HTTP/2.0", 505),
        ("GET / HTTP/0.9", 505),
        ("GET / HTTP/1.1", 200),
    ] {
        let resp = request(
            rw.port(),
            format!("{line}\r\nHost: a\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(resp.status, status, "{line}");
    }
}

#[test]
fn systemd_gets_ready_with_the_main_pid() {
    let dir = site();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let rw = Ringway::builder(format!(
        "{}\n[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n",
        base_config(1)
    ))
    .dir(dir)
    .env("NOTIFY_SOCKET", socket_path.to_str().unwrap())
    .start();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("a notification");
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert_eq!(text, format!("READY=1\nMAINPID={}\n", rw.pid()));
}

#[test]
fn drain_closes_what_is_left_after_timeouts_drain() {
    let echo = EchoBackend::tcp_v4();
    let config = ops_config_timeouts(1, &[("drain", "1s")], &echo.config_addr, "");
    let mut rw = Ringway::builder(config).dir(site()).start();
    // A raw WebSocket client that never answers the Close.
    let mut raw = TcpStream::connect(("127.0.0.1", rw.port())).unwrap();
    raw.write_all(&Req::upgrade("/chat/x", "site").bytes())
        .unwrap();
    let mut head = [0u8; 1024];
    let n = raw.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 101"));
    let t0 = Instant::now();
    rw.signal(libc::SIGTERM);
    let status = rw.wait_exit(WAIT).expect("exit after timeouts.drain");
    assert!(status.success(), "{status}");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "left before timeouts.drain: {took:?}"
    );
    assert!(rw
        .log()
        .contains("drain time-out: closing the connections left"));
    // The client saw Close 1001, then the connection closed.
    raw.set_read_timeout(Some(WAIT)).unwrap();
    let mut rest = Vec::new();
    let _ = raw.read_to_end(&mut rest);
    assert_eq!(rest, [0x88, 0x02, 0x03, 0xE9]);
}
