//! Backends that change (issue 19): server names and SRV records resolved from a real DNS
//! server (dnsmasq, started by each test on loopback with a hosts file the test rewrites and
//! reloads with SIGHUP), followed at their TTL; a server that leaves DNS is drained (its
//! tunnels get Close 1012, spread over `drain_spread`; the backend gets 1001), one that joins
//! takes new upgrades; DNS down keeps the last set; a name that does not resolve at start is
//! not fatal (503 `no servers`, a `check` warning).

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

use crate::harness::*;

/// A dnsmasq answering from `hosts` (and `--srv-host` records) on 127.0.0.1:`port`, TTL 1 s.
struct Dns {
    child: Option<Child>,
    port: u16,
    hosts: PathBuf,
    srv: Vec<String>,
}

impl Dns {
    fn start(dir: &Path, hosts: &str, srv: &[&str]) -> Dns {
        let hosts_path = dir.join("dns-hosts");
        std::fs::write(&hosts_path, hosts).unwrap();
        let mut d = Dns {
            child: None,
            port: free_udp_port(),
            hosts: hosts_path,
            srv: srv.iter().map(|s| s.to_string()).collect(),
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("dnsmasq");
        cmd.args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--pid-file=",
            "--user=root",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--no-resolv",
            "--no-hosts",
            "--local-ttl=1",
            "--domain-needed",
            "--local=/test/",
        ])
        .arg(format!("--port={}", self.port))
        .arg(format!("--addn-hosts={}", self.hosts.display()));
        for s in &self.srv {
            cmd.arg(format!("--srv-host={s}"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (Debian: dnsmasq-base)");
        self.child = Some(child);
        // Serving once a question gets an answer.
        let port = self.port;
        assert!(
            wait_until(WAIT, || dns_answers("127.0.0.1", port)),
            "dnsmasq did not start on port {port}"
        );
    }

    /// New hosts file contents, read again on SIGHUP.
    fn set_hosts(&self, hosts: &str) {
        std::fs::write(&self.hosts, hosts).unwrap();
        if let Some(c) = &self.child {
            // SAFETY: kill with our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGHUP) };
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_udp_port() -> u16 {
    loop {
        let p = free_port();
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// A WebSocket backend on `ip:port` that says who it is ("who" → its address), echoes the
/// rest, and records the close code of every Close it receives.
struct Server {
    addr: String,
    closes: Arc<Mutex<Vec<Option<u16>>>>,
}

impl Server {
    fn start(ip: &str, port: u16) -> Server {
        let listener =
            TcpListener::bind((ip, port)).unwrap_or_else(|e| panic!("bind {ip}:{port}: {e}"));
        let addr = listener.local_addr().unwrap().to_string();
        let closes = Arc::new(Mutex::new(Vec::new()));
        let (me, seen) = (addr.clone(), closes.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (me, seen) = (me.clone(), seen.clone());
                thread::spawn(move || serve_ws(stream, &me, &seen));
            }
        });
        Server { addr, closes }
    }

    fn closes(&self) -> Vec<Option<u16>> {
        self.closes.lock().unwrap().clone()
    }

    /// Waits until at least `count` tunnels have closed here, then checks that every close
    /// Ringway sent this server carried `code`.
    fn assert_closed(&self, count: usize, code: u16) {
        assert!(
            wait_until(WAIT, || self.closes().len() >= count),
            "backend closes: {:?}",
            self.closes()
        );
        assert!(
            self.closes().iter().all(|c| *c == Some(code)),
            "{:?}",
            self.closes()
        );
    }
}

fn serve_ws(stream: TcpStream, me: &str, closes: &Mutex<Vec<Option<u16>>>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let Ok(mut ws) = tungstenite::accept(stream) else {
        return;
    };
    loop {
        match ws.read() {
            Ok(Message::Text(t)) if t.as_str() == "who" => {
                if ws.send(Message::text(me)).is_err() {
                    return;
                }
            }
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.send(m).is_err() {
                    return;
                }
            }
            Ok(Message::Close(f)) => {
                closes.lock().unwrap().push(f.map(|f| u16::from(f.code)));
                let _ = ws.flush();
                return;
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// A port free on every loopback address the tests use.
fn shared_port() -> u16 {
    loop {
        let p = free_port();
        let free = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
            .iter()
            .all(|ip| TcpListener::bind((*ip, p)).is_ok());
        if free {
            return p;
        }
    }
}

fn config(dns: &Dns, server: &str, extra_backend: &str) -> String {
    config_route(dns, server, extra_backend, "")
}

/// `route`: more keys of the `/chat/` route (`mode = "tunnel"`).
fn config_route(dns: &Dns, server: &str, extra_backend: &str, route: &str) -> String {
    let head = format!(
        "{}\n[[listener]]\nname = \"admin\"\naddress = \"127.0.0.1:@PORT1@\"\n\n\
         [admin]\nlistener = \"admin\"\n\n[dns]\nservers = [\"{}\"]\nmin_ttl = \"1s\"\n",
        base_config(2),
        dns.addr()
    );
    chat_site(&head, &[server], extra_backend, route)
}

/// Opens a tunnel and asks the backend who it is.
fn upgrade_who(rw: &Ringway) -> (Ws, String) {
    let (mut ws, _) = ws_connect(rw.port(), rw.ws_url("/chat/x").as_str());
    ws.send(Message::text("who")).unwrap();
    match ws_next(&mut ws) {
        Message::Text(t) => {
            let who = t.to_string();
            (ws, who)
        }
        other => panic!("expected who, got {other:?}"),
    }
}

fn metrics(rw: &Ringway) -> String {
    let resp = request(
        rw.port_n(1),
        "GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    resp.body_text()
}

fn metric(text: &str, prefix: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn names_resolve_at_start_changes_are_followed_and_a_removed_server_is_drained() {
    let dir = site();
    let port = shared_port();
    let a = Server::start("127.0.0.2", port);
    let b = Server::start("127.0.0.3", port);
    let dns = Dns::start(dir.path(), "127.0.0.2 chat.test\n", &[]);
    let extra = "drain_spread = \"2s\"";
    let rw = Ringway::builder(config(&dns, &format!("chat.test:{port}"), extra))
        .dir(dir)
        .start();
    // At start: the name's one address.
    let mut on_a = Vec::new();
    for _ in 0..6 {
        let (ws, who) = upgrade_who(&rw);
        assert_eq!(who, a.addr);
        on_a.push(ws);
    }
    let m = metrics(&rw);
    let name = format!("chat.test:{port} (127.0.0.2:{port})");
    assert!(
        m.contains("ringway_backend_servers{backend=\"chat\",state=\"ready\"} 1"),
        "{m}"
    );
    assert!(
        metric(
            &m,
            "ringway_dns_resolutions_total{backend=\"chat\",result=\"ok\"}"
        )
        .is_some(),
        "{m}"
    );
    // A second address: followed within the TTL (1 s) and a resolution (+1 s); the machine
    // is shared, so the wait allows more, and the time taken is checked loosely after.
    let changed = Instant::now();
    dns.set_hosts("127.0.0.2 chat.test\n127.0.0.3 chat.test\n");
    let mut seen_b = None;
    assert!(
        wait_until(WAIT, || {
            let (ws, who) = upgrade_who(&rw);
            if who == b.addr {
                seen_b = Some(ws);
                true
            } else {
                false
            }
        }),
        "the new address never took an upgrade"
    );
    assert!(
        changed.elapsed() < Duration::from_secs(5),
        "{:?}",
        changed.elapsed()
    );
    let m = metrics(&rw);
    assert!(
        m.contains("ringway_backend_servers{backend=\"chat\",state=\"ready\"} 2"),
        "{m}"
    );
    assert!(
        rw.log().contains(&name) || m.contains(&name),
        "servers named name:port (address)"
    );
    // The first address leaves DNS: its tunnels get 1012 at a frame boundary, spread over
    // `drain_spread` (2 s); the backend hears 1001; new upgrades go to the other server.
    let removed = Instant::now();
    dns.set_hosts("127.0.0.3 chat.test\n");
    // One reader per tunnel, so that each close is timed when it comes.
    let readers: Vec<_> = on_a
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            thread::spawn(move || {
                ws.get_mut()
                    .set_read_timeout(Some(Duration::from_secs(15)))
                    .unwrap();
                match ws_next(&mut ws) {
                    Message::Close(Some(f)) => {
                        assert_eq!(f.code, CloseCode::Restart, "tunnel {i}");
                        removed.elapsed()
                    }
                    other => panic!("tunnel {i}: expected Close 1012, got {other:?}"),
                }
            })
        })
        .collect();
    let mut when: Vec<Duration> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    // Spread: not all at once (6 tunnels over 2 s: the first and last at least ~1 s apart).
    when.sort();
    let span = when[when.len() - 1] - when[0];
    assert!(span >= Duration::from_millis(900), "closes at {when:?}");

    a.assert_closed(6, 1001);
    // The other server's tunnel was not touched.
    let mut kept = seen_b.take().unwrap();
    kept.send(Message::text("still here")).unwrap();
    assert_eq!(ws_next(&mut kept), Message::text("still here"));
    for _ in 0..6 {
        let (_ws, who) = upgrade_who(&rw);
        assert_eq!(who, b.addr, "a new upgrade reached the drained server");
    }
    let m = metrics(&rw);
    assert!(
        m.contains("ringway_ws_closes_sent_total{core=\"0\",code=\"1012\"}"),
        "{m}"
    );
    let sent: u64 = m
        .lines()
        .filter(|l| l.starts_with("ringway_ws_closes_sent_total") && l.contains("code=\"1012\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(sent, 6, "{m}");
}

#[test]
fn a_server_found_by_dns_joins_the_active_health_checks() {
    let dir = site();
    let port = shared_port();
    let a = Server::start("127.0.0.2", port);
    let dns = Dns::start(dir.path(), "127.0.0.2 chat.test\n", &[]);
    let extra = "health = { interval = \"200ms\", timeout = \"200ms\", rise = 1, fall = 1 }";
    let rw = Ringway::builder(config(&dns, &format!("chat.test:{port}"), extra))
        .dir(dir)
        .start();
    // 127.0.0.3 has nothing listening: its checks take it out as soon as it appears.
    dns.set_hosts("127.0.0.2 chat.test\n127.0.0.3 chat.test\n");
    assert!(
        wait_until(WAIT, || {
            let m = metrics(&rw);
            m.contains("ringway_backend_servers{backend=\"chat\",state=\"down\"} 1")
                && m.contains("ringway_backend_servers{backend=\"chat\",state=\"ready\"} 1")
        }),
        "{}",
        metrics(&rw)
    );
    for _ in 0..6 {
        let (_ws, who) = upgrade_who(&rw);
        assert_eq!(who, a.addr);
    }
    assert!(
        rw.log().contains("health check: server down"),
        "{}",
        rw.log()
    );
}

/// The spread, measured: 120 tunnels of a server that leaves DNS, `drain_spread = "3s"`: each
/// gets 1012, the closes cover the spread evenly (no 0.5 s holds much more than its share,
/// 1/6), and the last comes within the spread (plus the machine's slack) of the first.
#[test]
fn a_drain_spreads_its_closes_evenly() {
    let dir = site();
    let port = shared_port();
    let a = Server::start("127.0.0.2", port);
    let b = Server::start("127.0.0.3", port);
    let dns = Dns::start(dir.path(), "127.0.0.2 chat.test\n", &[]);
    let extra = "drain_spread = \"3s\"";
    let rw = Ringway::builder(config(&dns, &format!("chat.test:{port}"), extra))
        .dir(dir)
        .start();
    let tunnels: Vec<Ws> = (0..120)
        .map(|_| {
            let (ws, who) = upgrade_who(&rw);
            assert_eq!(who, a.addr);
            ws
        })
        .collect();
    let origin = Instant::now();
    dns.set_hosts("127.0.0.3 chat.test\n");
    let readers: Vec<_> = tunnels
        .into_iter()
        .map(|mut ws| {
            thread::spawn(move || {
                ws.get_mut()
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                match ws_next(&mut ws) {
                    Message::Close(Some(f)) if f.code == CloseCode::Restart => origin.elapsed(),
                    other => panic!("expected Close 1012, got {other:?}"),
                }
            })
        })
        .collect();
    let mut when: Vec<Duration> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    when.sort();
    let (first, last) = (when[0], when[when.len() - 1]);
    assert!(
        last - first >= Duration::from_millis(2000),
        "{first:?}..{last:?}"
    );
    assert!(
        last - first <= Duration::from_millis(4000),
        "{first:?}..{last:?}"
    );
    for &t in &when {
        let within = when
            .iter()
            .filter(|&&u| u >= t && u < t + Duration::from_millis(500))
            .count();
        // The even share of 0.5 s out of 3 s is 20 of 120; allow for two cores' grids and the
        // machine's jitter, but not for a burst.
        assert!(
            within <= 34,
            "{within} closes within 0.5 s after {t:?}: {when:?}"
        );
    }
    let (_ws, who) = upgrade_who(&rw);
    assert_eq!(who, b.addr);
}

#[test]
fn dns_down_keeps_the_last_set() {
    let dir = site();
    let port = shared_port();
    let a = Server::start("127.0.0.2", port);
    let mut dns = Dns::start(dir.path(), "127.0.0.2 chat.test\n", &[]);
    let rw = Ringway::builder(config(&dns, &format!("chat.test:{port}"), ""))
        .dir(dir)
        .start();
    let (_ws, who) = upgrade_who(&rw);
    assert_eq!(who, a.addr);
    dns.stop();
    // Several TTLs pass with every question failing.
    assert!(
        wait_until(WAIT, || {
            let m = metrics(&rw);
            metric(
                &m,
                "ringway_dns_resolutions_total{backend=\"chat\",result=\"error\"}",
            )
            .is_some_and(|n| n >= 2)
        }),
        "no failed resolutions counted"
    );
    for _ in 0..4 {
        let (_ws, who) = upgrade_who(&rw);
        assert_eq!(who, a.addr);
    }
    // Logged once for the change of state, not once per failure.
    assert_eq!(
        rw.log().matches("resolution failed").count(),
        1,
        "{}",
        rw.log()
    );
}

#[test]
fn a_name_that_does_not_resolve_at_start_is_503_no_servers_and_a_check_warning() {
    let dir = site();
    let port = shared_port();
    let a = Server::start("127.0.0.2", port);
    let dns = Dns::start(dir.path(), "127.0.0.9 other.test\n", &[]);
    let config_text = config(&dns, &format!("later.test:{port}"), "");
    let rw = Ringway::builder(config_text).dir(dir).start();
    let resp = request(
        rw.port(),
        "GET /chat/x HTTP/1.1\r\nHost: site\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(resp.status, 503);
    assert_eq!(resp.body_text(), "no servers\n");
    // `ringway check`: a warning with the entry's position, exit 0.
    let path = rw.config_path();
    let file = path.to_str().unwrap();
    let (status, out, err) = run_cli(&["check", "--config", file]);
    assert!(status.success(), "{out}{err}");
    let line = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("servers = [\"later.test"))
        .unwrap()
        + 1;
    let expected = format!("{file}:{line}:12: warning: ");
    assert!(err.contains(&expected), "{expected} not in {out}{err}");
    // The name appears: the backend follows it within a resolution.
    dns.set_hosts("127.0.0.2 later.test\n");
    assert!(
        wait_until(WAIT, || ws_accepted(rw.port(), &rw.ws_url("/chat/x"))),
        "the name appeared but upgrades are still refused"
    );
    let (_ws, who) = upgrade_who(&rw);
    assert_eq!(who, a.addr);
}

#[test]
fn http2_and_plain_requests_to_a_backend_without_servers_are_503_no_servers() {
    use crate::h2::h2c_config;
    let dir = site();
    let dns = Dns::start(dir.path(), "127.0.0.9 other.test\n", &[]);
    let text = h2c_config(&format!(
        "[dns]\nservers = [\"{}\"]\n\
         [[backend]]\nname = \"app\"\nservers = [\"nowhere.test:80\"]\n\
         [[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n\
         [[vhost.context]]\nuri = \"/api/\"\nhandler = \"proxy\"\nbackend = \"app\"\n",
        dns.addr()
    ));
    let rw = Ringway::builder(text).dir(dir).start();
    let url = format!("http://127.0.0.1:{}/api/x", rw.port());
    for http in ["--http1.1", "--http2-prior-knowledge"] {
        let out = Command::new("curl")
            .args([
                "-s",
                "-m",
                "10",
                "-w",
                "\n%{http_code} %{http_version}",
                http,
                &url,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let expected_version = if http == "--http1.1" { "1.1" } else { "2" };
        assert_eq!(
            text,
            format!("no servers\n\n503 {expected_version}"),
            "{http}"
        );
    }
}

/// Whether an upgrade is accepted now (no panic on refusal).
fn ws_accepted(port: u16, url: &str) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    stream.set_read_timeout(Some(WAIT)).unwrap();
    tungstenite::client(url, stream).is_ok()
}

#[test]
fn srv_records_give_targets_ports_and_the_lowest_priority_in_use() {
    let dir = site();
    let (p1, p2) = (free_port(), free_port());
    let first = Server::start("127.0.0.1", p1);
    let backup = Server::start("127.0.0.1", p2);
    let srv = [
        format!("_chat._tcp.chat.test,a.chat.test,{p1},10,5"),
        format!("_chat._tcp.chat.test,b.chat.test,{p2},20,5"),
    ];
    let srv: Vec<&str> = srv.iter().map(String::as_str).collect();
    let dns = Dns::start(
        dir.path(),
        "127.0.0.1 a.chat.test\n127.0.0.1 b.chat.test\n",
        &srv,
    );
    let rw = Ringway::builder(config(&dns, "srv://_chat._tcp.chat.test", ""))
        .dir(dir)
        .start();
    for _ in 0..6 {
        let (_ws, who) = upgrade_who(&rw);
        assert_eq!(
            who, first.addr,
            "priority 10 is in use while its server is up"
        );
    }
    let m = metrics(&rw);
    assert!(
        m.contains("ringway_backend_servers{backend=\"chat\",state=\"ready\"} 2"),
        "{m}"
    );
    let _ = backup;
}

#[test]
fn tunnel_mode_routes_get_1012_and_the_raw_backend_connection_is_closed() {
    let dir = site();
    let port = shared_port();
    // A raw TCP backend: echoes lines, and notes when a connection reaches EOF.
    let listener = TcpListener::bind(("127.0.0.2", port)).unwrap();
    let eofs = Arc::new(Mutex::new(0usize));
    let seen = eofs.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let seen = seen.clone();
            thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                *seen.lock().unwrap() += 1;
            });
        }
    });
    let dns = Dns::start(dir.path(), "127.0.0.2 raw.test\n", &[]);
    let text = config_route(
        &dns,
        &format!("raw.test:{port}"),
        "drain_spread = \"1s\"",
        "mode = \"tunnel\"\nframe = \"text\"",
    );
    let rw = Ringway::builder(text).dir(dir).start();
    let mut tunnels: Vec<Ws> = (0..3)
        .map(|_| ws_connect(rw.port(), rw.ws_url("/chat/t").as_str()).0)
        .collect();
    for ws in &mut tunnels {
        ws.send(Message::text("hello\n")).unwrap();
        assert_eq!(ws_next(ws), Message::text("hello\n"));
    }
    // The name now points elsewhere: the server is drained.
    dns.set_hosts("127.0.0.9 raw.test\n");
    for (i, ws) in tunnels.iter_mut().enumerate() {
        match ws_next(ws) {
            Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Restart, "tunnel {i}"),
            other => panic!("tunnel {i}: expected Close 1012, got {other:?}"),
        }
    }
    drop(tunnels);
    assert!(
        wait_until(WAIT, || *eofs.lock().unwrap() == 3),
        "raw backend connections closed: {}",
        eofs.lock().unwrap()
    );
}

#[test]
fn sigterm_with_drain_spread_spreads_its_1001_closes() {
    let dir = site();
    let port = shared_port();
    let a = Server::start("127.0.0.2", port);
    let head = base_config_timeouts(2, &[("drain", "20s"), ("drain_spread", "2s")]);
    let text = chat_site(&head, &[&a.addr], "", "");
    let mut rw = Ringway::builder(text).dir(dir).start();
    let tunnels: Vec<Ws> = (0..8).map(|_| upgrade_who(&rw).0).collect();
    let started = Instant::now();
    rw.signal(libc::SIGTERM);
    let readers: Vec<_> = tunnels
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            thread::spawn(move || match ws_next(&mut ws) {
                Message::Close(Some(f)) => {
                    assert_eq!(f.code, CloseCode::Away, "tunnel {i}");
                    started.elapsed()
                }
                other => panic!("tunnel {i}: expected Close 1001, got {other:?}"),
            })
        })
        .collect();
    let mut when: Vec<Duration> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    when.sort();
    let span = when[when.len() - 1] - when[0];
    assert!(span >= Duration::from_millis(900), "closes at {when:?}");
    assert!(
        when[when.len() - 1] < Duration::from_secs(8),
        "closes at {when:?}"
    );
    let status = rw
        .wait_exit(Duration::from_secs(15))
        .expect("ringway did not exit");
    assert!(status.success(), "{status}");
    a.assert_closed(8, 1001);
}

#[test]
fn http2_websocket_streams_of_a_drained_server_get_1012_on_their_stream() {
    use crate::h2::{h2c, h2c_config, rt};
    use crate::h2_websockets::H2Ws;
    let dir = site();
    let port = shared_port();
    let a = Server::start("127.0.0.2", port);
    let dns = Dns::start(dir.path(), "127.0.0.2 chat.test\n", &[]);
    let text = h2c_config(&format!(
        "[dns]\nservers = [\"{}\"]\n\
         [[backend]]\nname = \"chat\"\nservers = [\"chat.test:{port}\"]\ndrain_spread = \"1s\"\n\
         [[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n\
         [[vhost.websocket]]\nuri = \"/chat/\"\nbackend = \"chat\"\n",
        dns.addr()
    ));
    let rw = Ringway::builder(text).dir(dir).start();
    let rport = rw.port();
    let codes = rt().block_on(async {
        let mut client = h2c(rport).await;
        let mut streams = Vec::new();
        for i in 0..3 {
            let mut ws = H2Ws::open(&mut client, rport, &format!("/chat/{i}"), &[])
                .await
                .unwrap();
            ws.send(0x1, b"who");
            assert_eq!(ws.next().await, Some((0x1, a.addr.clone().into_bytes())));
            streams.push(ws);
        }
        dns.set_hosts("127.0.0.9 chat.test\n");
        let mut codes = Vec::new();
        for ws in &mut streams {
            let (op, p) = ws.next().await.expect("a frame after the drain");
            assert_eq!(op, 0x8);
            codes.push(u16::from_be_bytes([p[0], p[1]]));
            ws.send(0x8, &1012u16.to_be_bytes());
        }
        codes
    });
    assert_eq!(codes, vec![1012; 3]);
    a.assert_closed(3, 1001);
}

#[test]
fn srv_moves_to_the_next_priority_while_no_server_of_the_lowest_is_up() {
    let dir = site();
    // Priority 10 names a port nothing listens on; priority 20 a live server.
    let (dead, p2) = (free_port(), free_port());
    let backup = Server::start("127.0.0.1", p2);
    let srv = [
        format!("_chat._tcp.chat.test,a.chat.test,{dead},10,5"),
        format!("_chat._tcp.chat.test,b.chat.test,{p2},20,5"),
    ];
    let srv: Vec<&str> = srv.iter().map(String::as_str).collect();
    let dns = Dns::start(
        dir.path(),
        "127.0.0.1 a.chat.test\n127.0.0.1 b.chat.test\n",
        &srv,
    );
    let extra = "health = { interval = \"200ms\", timeout = \"200ms\", rise = 1, fall = 1 }";
    let rw = Ringway::builder(config(&dns, "srv://_chat._tcp.chat.test", extra))
        .dir(dir)
        .start();
    // Once the checks find priority 10 down, priority 20 is in use.
    assert!(
        wait_until(WAIT, || ws_accepted(rw.port(), &rw.ws_url("/chat/x"))),
        "priority 20 never took over"
    );
    for _ in 0..4 {
        let (_ws, who) = upgrade_who(&rw);
        assert_eq!(who, backup.addr);
    }
}

/// Issue 19's acceptance test for the control API's drain (the HTTP API on the admin
/// listener).
#[test]
fn drain_600_tunnels_with_spread_6s_through_the_api() {
    let dir = site();
    let port = shared_port();
    let a = Server::start("127.0.0.2", port);
    let b = Server::start("127.0.0.3", port);
    let head = format!(
        "{}\n[[listener]]\nname = \"admin\"\naddress = \"127.0.0.1:@PORT1@\"\n\n\
         [admin]\nlistener = \"admin\"\nallow = [\"127.0.0.0/8\"]\n",
        base_config(2)
    );
    let text = chat_site(&head, &[&a.addr, &b.addr], "balance = \"round_robin\"", "");
    let rw = Ringway::builder(text).dir(dir).nofile(8192).start();
    let mut on_a = Vec::new();
    let mut on_b = Vec::new();
    while on_a.len() < 600 {
        let (ws, who) = upgrade_who(&rw);
        if who == a.addr {
            on_a.push(ws);
        } else {
            on_b.push(ws);
        }
    }
    let body = r#"{"state": "drain", "spread": "6s"}"#;
    let server = a.addr.replace(':', "%3A");
    let req = format!(
        "POST /api/backends/chat/servers/{server} HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    let resp = request(rw.port_n(1), req);
    assert_eq!(resp.status, 200, "{}", resp.body_text());
    assert!(
        resp.body_text().contains("\"drain\""),
        "{}",
        resp.body_text()
    );
    // Every tunnel on the drained server: 1012, at a frame boundary; when each came.
    let when: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let readers: Vec<_> = on_a
        .into_iter()
        .map(|mut ws| {
            let when = when.clone();
            thread::spawn(move || {
                ws.get_mut()
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                match ws.read() {
                    Ok(Message::Close(Some(f))) if f.code == CloseCode::Restart => {
                        when.lock().unwrap().push(started.elapsed());
                    }
                    other => panic!("expected Close 1012, got {other:?}"),
                }
            })
        })
        .collect();
    // Meanwhile the other server's tunnels echo, and new upgrades never reach the drained one.
    for _ in 0..20 {
        for ws in on_b.iter_mut().take(10) {
            ws.send(Message::text("ping")).unwrap();
            assert_eq!(ws_next(ws), Message::text("ping"));
        }
        let (_ws, who) = upgrade_who(&rw);
        assert_eq!(who, b.addr);
        thread::sleep(Duration::from_millis(200));
    }
    for r in readers {
        r.join().unwrap();
    }
    let mut when = when.lock().unwrap().clone();
    when.sort();
    assert_eq!(when.len(), 600);
    assert!(
        *when.last().unwrap() <= Duration::from_millis(6500),
        "{when:?}"
    );
    for &t in &when {
        let within = when
            .iter()
            .filter(|&&u| u >= t && u < t + Duration::from_millis(500))
            .count();
        assert!(within <= 66, "{within} closes within 0.5 s after {t:?}");
    }
    // The state reads drained once the last tunnel is gone.
    let api = |port| {
        request(
            port,
            "GET /api/backends HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
        )
        .body_text()
    };
    assert!(wait_until(WAIT, || api(rw.port_n(1)).contains("\"drained\"")));
}
