//! Watching Ringway run: the admin listener (Prometheus metrics, who may read them), the access
//! log (combined and JSON, reopened on SIGUSR1), and the live dashboard in headless Chromium
//! showing what /metrics says.

use std::collections::BTreeMap;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::Message;

use crate::backend::EchoBackend;
use crate::harness::*;
use crate::operations::{echo_round, get, open_tunnels, ops_config, scrape, sum};

#[test]
fn metrics_count_requests_tunnels_messages_and_bytes() {
    let echo = EchoBackend::tcp_v4();
    let rw = Ringway::builder(ops_config(2, &echo.config_addr, ""))
        .dir(site())
        .start();
    let admin = rw.port_n(1);
    for _ in 0..5 {
        assert_eq!(get(rw.port(), "/index.html").status, 200);
    }
    assert_eq!(get(rw.port(), "/missing").status, 404);
    let (mut ws, _) = ws_connect(rw.port(), rw.ws_url("/chat/a").as_str());
    for i in 0..7 {
        ws.send(Message::text(format!("m{i}"))).unwrap();
        assert_eq!(ws_next(&mut ws), Message::text(format!("m{i}")));
    }
    // A bad request head and an upgrade with a bad version.
    assert_eq!(
        request(rw.port(), "GET / HTTQ/1.1\r\nHost: a\r\n\r\n").status,
        400
    );
    let bad_version = Req::upgrade("/chat/x", "site").set("Sec-WebSocket-Version", "8");
    assert_eq!(request(rw.port(), bad_version.bytes()).status, 426);

    let m = scrape(admin);
    let requests = |labels: &[&str]| sum(&m, "ringway_requests_total", labels);
    assert_eq!(requests(&["handler=\"static\"", "code=\"2xx\""]), 5.0);
    assert_eq!(requests(&["handler=\"static\"", "code=\"4xx\""]), 1.0);
    assert_eq!(
        requests(&["vhost=\"site\"", "handler=\"websocket\"", "code=\"1xx\""]),
        1.0
    );
    assert_eq!(
        requests(&["vhost=\"-\"", "handler=\"error\"", "code=\"4xx\""]),
        1.0
    );
    assert_eq!(
        sum(&m, "ringway_bad_requests_total", &["status=\"400\""]),
        1.0
    );
    assert_eq!(
        sum(
            &m,
            "ringway_upgrade_rejected_total",
            &["reason=\"version\""]
        ),
        1.0
    );
    assert_eq!(
        sum(&m, "ringway_tunnels_active", &["backend=\"chat\""]),
        1.0
    );
    assert_eq!(sum(&m, "ringway_tunnels_total", &["backend=\"chat\""]), 1.0);
    assert_eq!(
        sum(&m, "ringway_ws_messages_total", &["direction=\"in\""]),
        7.0
    );
    assert_eq!(
        sum(&m, "ringway_ws_messages_total", &["direction=\"out\""]),
        7.0
    );
    // The tunnel and this scrape are open: at least those two connections.
    assert!(sum(&m, "ringway_connections_active", &["listener=\"main\""]) >= 1.0);
    assert!(sum(&m, "ringway_connections_total", &["listener=\"main\""]) >= 9.0);
    assert!(sum(&m, "ringway_bytes_total", &["direction=\"in\""]) > 500.0);
    assert!(sum(&m, "ringway_bytes_total", &["direction=\"out\""]) > 500.0);
    // No active health checks: no `up` series (nothing to alert on), `checked` says so.
    assert!(!m.iter().any(|(s, _)| s.starts_with("ringway_backend_up{")));
    assert_eq!(
        sum(&m, "ringway_backend_checked", &["backend=\"chat\""]),
        0.0
    );
    assert_eq!(sum(&m, "ringway_config_generation", &[]), 1.0);
    assert_eq!(sum(&m, "ringway_build_info", &["version=\""]), 1.0);
    // Histograms: 6 static requests, buckets cumulative, +Inf = count.
    let h = |le: &str| {
        sum(
            &m,
            "ringway_request_duration_seconds_bucket",
            &["handler=\"static\"", &format!("le=\"{le}\"")],
        )
    };
    assert_eq!(h("+Inf"), 6.0);
    assert!(h("0.0005") <= h("0.01") && h("0.01") <= h("+Inf"));
    assert_eq!(
        sum(
            &m,
            "ringway_request_duration_seconds_count",
            &["handler=\"static\""]
        ),
        6.0
    );
    assert_eq!(sum(&m, "ringway_backend_connect_seconds_count", &[]), 1.0);
    // Each core reports its own series.
    for core in ["core=\"0\"", "core=\"1\""] {
        assert!(m
            .iter()
            .any(|(s, _)| s.starts_with("ringway_bytes_total{") && s.contains(core)));
    }
    // The tunnel closes: active back to 0, its duration recorded.
    ws_close(&mut ws);
    drop(ws);
    assert!(wait_until(WAIT, || {
        let m = scrape(admin);
        sum(&m, "ringway_tunnels_active", &[]) == 0.0
            && sum(&m, "ringway_tunnel_duration_seconds_count", &[]) == 1.0
    }));
}

#[test]
fn admin_serves_only_its_listener_and_allowed_peers() {
    let echo = EchoBackend::tcp_v4();
    let rw = Ringway::builder(ops_config(1, &echo.config_addr, ""))
        .dir(site())
        .start();
    let admin = rw.port_n(1);
    // On the site's listener /metrics is just a path (static: 404).
    assert_eq!(get(rw.port(), "/metrics").status, 404);
    assert_eq!(get(admin, "/nothing").status, 404);
    let post =
        "POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(request(admin, post).status, 405);
    let page = get(admin, "/");
    assert_eq!(page.status, 200);
    let html = page.body_text();
    assert!(html.contains("/live") && html.contains("id=\"requests-total\""));
    for external in [
        "src=\"http",
        "href=\"http",
        "url(http",
        "src=\"//",
        "@import",
    ] {
        assert!(!html.contains(external), "external asset: {external}");
    }
    // `/live` without an upgrade.
    assert_eq!(get(admin, "/live").status, 426);
    // /live: JSON snapshots, one a second.
    let url = format!("ws://127.0.0.1:{admin}/live");
    let (mut live, _) = ws_connect(admin, url.as_str());
    let first = ws_next(&mut live).into_text().unwrap().to_string();
    assert!(
        first.starts_with("{\"version\":") && first.contains("\"cores\":[{\"core\":0"),
        "{first}"
    );
    let t0 = Instant::now();
    let _second = ws_next(&mut live);
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "snapshots come once a second"
    );
    ws_close(&mut live);

    // A peer outside `allow` gets 403 for everything.
    let denied = ops_config(1, &echo.config_addr, "").replace(
        "listener = \"admin\"\n",
        "listener = \"admin\"\nallow = [\"10.0.0.0/8\", \"::1/128\"]\n",
    );
    let rw2 = Ringway::builder(denied).dir(site()).start();
    assert_eq!(get(rw2.port_n(1), "/metrics").status, 403);
    assert_eq!(get(rw2.port_n(1), "/").status, 403);
}

#[test]
fn access_log_combined_json_and_reopen_on_sigusr1() {
    let echo = EchoBackend::tcp_v4();
    let extra = "[log]\naccess = \"access.log\"\n";
    let rw = Ringway::builder(ops_config(2, &echo.config_addr, extra))
        .dir(site())
        .start();
    let path = rw.dir_path().join("access.log");
    let agent = "GET /index.html?q=1 HTTP/1.1\r\nHost: site\r\nUser-Agent: probe/1\r\nReferer: http://r.test/\r\nConnection: close\r\n\r\n";
    assert_eq!(request(rw.port(), agent).status, 200);
    let (mut ws, _) = ws_connect(rw.port(), rw.ws_url("/chat/room").as_str());
    ws.send(Message::text("hello")).unwrap();
    assert_eq!(ws_next(&mut ws), Message::text("hello"));
    ws_close(&mut ws);
    drop(ws);
    // Flushed within a second, without more traffic.
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        wait_until(WAIT, || read().lines().count() >= 2),
        "log: {}",
        read()
    );
    let text = read();
    let http = text
        .lines()
        .find(|l| l.contains("\"GET /index.html?q=1 HTTP/1.1\""))
        .unwrap_or_else(|| panic!("no request line in {text}"));
    assert!(http.starts_with("127.0.0.1 - - ["), "{http}");
    // Bytes out: the body's bytes, as the combined format's %b (issue 20): index.html's 15.
    let out_bytes: u64 = http
        .split("\" 200 ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{http}"));
    assert_eq!(out_bytes, 15, "{http}");
    assert!(
        http.contains(" \"http://r.test/\" \"probe/1\" vhost=site bytes_in="),
        "{http}"
    );
    let tunnel = text
        .lines()
        .find(|l| l.contains("upgrade=ws"))
        .unwrap_or_else(|| panic!("no tunnel line in {text}"));
    assert!(
        tunnel.contains("\"GET /chat/room HTTP/1.1\" 101 "),
        "{tunnel}"
    );
    assert!(
        tunnel.contains(&format!("backend={}", echo.config_addr)),
        "{tunnel}"
    );

    // logrotate: move the file, SIGUSR1, the next line goes to a new file.
    let rotated = rw.dir_path().join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    rw.signal(libc::SIGUSR1);
    assert!(rw.wait_log("reopening the access log", 1, WAIT));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(get(rw.port(), "/index.html").status, 200);
    assert!(wait_until(WAIT, || read().contains("GET /index.html HTTP/1.1")));
    assert!(!std::fs::read_to_string(&rotated)
        .unwrap()
        .contains("GET /index.html HTTP/1.1\""));

    // JSON: one object per line.
    let json = ops_config(
        1,
        &echo.config_addr,
        "[log]\naccess = \"a.json\"\naccess_format = \"json\"\n",
    );
    let rw2 = Ringway::builder(json).dir(site()).start();
    assert_eq!(get(rw2.port(), "/index.html").status, 200);
    let jpath = rw2.dir_path().join("a.json");
    assert!(wait_until(WAIT, || std::fs::read_to_string(&jpath)
        .is_ok_and(|t| !t.is_empty())));
    let line = std::fs::read_to_string(&jpath).unwrap();
    let line = line.lines().next().unwrap();
    assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    for part in [
        "\"client\":\"127.0.0.1\"",
        "\"vhost\":\"site\"",
        "\"method\":\"GET\"",
        "\"path\":\"/index.html\"",
        "\"status\":200",
        "\"bytes_out\":",
        "\"upgrade\":null",
    ] {
        assert!(line.contains(part), "{part} not in {line}");
    }
}

/// Values of the dashboard's elements after Chromium ran its script: `id="x">value<`.
fn element_text(dom: &str, id: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let rest = &dom[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find('<')? + start;
    Some(rest[start..end].to_string())
}

#[test]
fn dashboard_in_headless_chromium_shows_what_metrics_says() {
    let echo = EchoBackend::tcp_v4();
    let rw = Ringway::builder(ops_config(2, &echo.config_addr, ""))
        .dir(site())
        .start();
    let admin = rw.port_n(1);
    for _ in 0..9 {
        assert_eq!(get(rw.port(), "/index.html").status, 200);
    }
    let mut tunnels = open_tunnels(&rw, 3);
    echo_round(&mut tunnels, 0);
    echo_round(&mut tunnels, 1);
    let profile = temp_dir();
    let dom = chromium_dump_dom(profile.path(), &format!("http://127.0.0.1:{admin}/"), &[]);
    assert!(dom.contains("data-core=\"1\""), "{dom}");
    // The page renders: a screenshot of it.
    let png = profile.path().join("dashboard.png");
    let shot = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg("--window-size=1280,900")
        .arg(format!(
            "--user-data-dir={}",
            profile.path().join("p2").display()
        ))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("http://127.0.0.1:{admin}/"))
        .output()
        .expect("chromium");
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let image = std::fs::read(&png).expect("a screenshot");
    assert!(
        image.starts_with(b"\x89PNG") && image.len() > 10_000,
        "{} bytes",
        image.len()
    );
    let m = scrape(admin);
    let shown: BTreeMap<&str, String> = [
        "generation",
        "requests-total",
        "tunnels-active",
        "messages-total",
        "status",
    ]
    .into_iter()
    .map(|id| {
        (
            id,
            element_text(&dom, id).unwrap_or_else(|| panic!("#{id} in {dom}")),
        )
    })
    .collect();
    let site_requests = sum(&m, "ringway_requests_total", &[])
        - sum(&m, "ringway_requests_total", &["handler=\"admin\""]);
    assert_eq!(shown["status"], "live");
    assert_eq!(
        shown["generation"],
        sum(&m, "ringway_config_generation", &[]).to_string()
    );
    assert_eq!(shown["requests-total"], site_requests.to_string());
    assert_eq!(shown["requests-total"], "12"); // 9 pages + 3 upgrades
    assert_eq!(
        shown["tunnels-active"],
        sum(&m, "ringway_tunnels_active", &[]).to_string()
    );
    assert_eq!(shown["tunnels-active"], "3");
    assert_eq!(
        shown["messages-total"],
        sum(&m, "ringway_ws_messages_total", &[]).to_string()
    );
    assert_eq!(shown["messages-total"], "12"); // 2 rounds × 3 tunnels × (in + out)
    let backend_row = format!("data-server=\"{}\"", echo.config_addr);
    assert!(dom.contains(&backend_row), "{dom}");
    // The backend has no active health checks: "unchecked", never a green "up" (issue 20).
    assert!(dom.contains("class=\"unchecked\""), "{dom}");
    assert!(!dom.contains("class=\"up\""), "{dom}");
}
