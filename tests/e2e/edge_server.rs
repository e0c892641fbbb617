//! The edge-server keys (issue 21 §1, §2, §5, §6) with real clients: curl (HTTP/1.1 and h2c),
//! tungstenite for upgrades, `htpasswd -B` for bcrypt users files: redirects and fixed answers,
//! `redirect_https`, header rules, error pages, per-route timeouts, Basic auth, CIDR lists,
//! `requests_per_ip`, and the check errors and warnings of each.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

use crate::backend::EchoBackend;
use crate::harness::*;
use crate::http_backends::HttpBackend;

/// A response as curl saw it: status, fields (lower-cased names, every value), body.
struct Got {
    status: u16,
    fields: BTreeMap<String, Vec<String>>,
    body: String,
}

impl Got {
    fn one(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .get(name)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for Got {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}\n{}", self.status, self.fields, self.body)
    }
}

/// `curl -s -i` with `args`; the last response of the output is parsed.
fn curl(args: &[&str]) -> Got {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            fields
                .entry(k.trim().to_ascii_lowercase())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    Got {
        status,
        fields,
        body: body.to_string(),
    }
}

fn url(rw: &Ringway, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", rw.port())
}

fn check(text: &str, dir: &std::path::Path) -> (Option<i32>, String) {
    let file = write_file(dir, "check.toml", text);
    let file = file.to_str().unwrap().to_string();
    let (status, stdout, stderr) = run_cli(&["check", "--config", &file]);
    (status.code(), format!("{stdout}{stderr}"))
}

fn htpasswd_bcrypt(dir: &std::path::Path, file: &str, user: &str, password: &str) {
    let path = dir.join(file);
    let out = Command::new("htpasswd")
        .args(["-B", "-C", "5", "-b", "-c"])
        .arg(&path)
        .args([user, password])
        .output()
        .expect("htpasswd (apache2-utils)");
    assert!(out.status.success(), "htpasswd: {out:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(&format!("{user}:$2y$")), "{text}");
}

fn ws_request(
    rw: &Ringway,
    path: &str,
    auth: Option<&str>,
) -> tungstenite::handshake::client::Request {
    let mut req = rw.ws_url(path).into_client_request().unwrap();
    if let Some(a) = auth {
        req.headers_mut()
            .insert("authorization", a.parse().unwrap());
    }
    req
}

fn ws_refused(rw: &Ringway, req: tungstenite::handshake::client::Request) -> u16 {
    let stream = std::net::TcpStream::connect(("127.0.0.1", rw.port())).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    match tungstenite::client(req, stream) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            resp.status().as_u16()
        }
        Ok(_) => panic!("the upgrade was accepted"),
        Err(e) => panic!("handshake failed otherwise: {e}"),
    }
}

fn basic(user_password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

// ---------------------------------------------------------------------------------------------
// §1 Redirects and fixed answers

#[test]
fn redirect_and_respond_handlers() {
    let config = format!(
        r#"{}
[[vhost]]
name = "site"
domains = ["*"]

[[vhost.context]]
uri = "/old/"
handler = "redirect"
to = "https://{{host}}{{uri}}"

[[vhost.context]]
uri = "/moved"
handler = "redirect"
to = "{{scheme}}://new.test/landing{{path}}?from={{query}}"
status = 307

[[vhost.context]]
uri = "/gone"
handler = "respond"
status = 410
body = "this page is gone\n"

[[vhost.context]]
uri = "/healthz"
handler = "respond"
body = "ok"
"#,
        base_config(1)
    );
    let rw = Ringway::builder(config).dir(site()).start();
    let got = curl(&["-H", "Host: www.test:8080", &url(&rw, "/old/a/b?x=1&y=2")]);
    assert_eq!(got.status, 301, "{got:?}");
    assert_eq!(
        got.one("location"),
        Some("https://www.test:8080/old/a/b?x=1&y=2")
    );
    let got = curl(&[&url(&rw, "/moved?k=v")]);
    assert_eq!(got.status, 307, "{got:?}");
    assert_eq!(
        got.one("location"),
        Some("http://new.test/landing/moved?from=k=v")
    );
    let got = curl(&[&url(&rw, "/gone")]);
    assert_eq!(
        (got.status, got.body.as_str()),
        (410, "this page is gone\n"),
        "{got:?}"
    );
    assert!(got.one("content-type").unwrap().starts_with("text/plain"));
    let got = curl(&[&url(&rw, "/healthz")]);
    assert_eq!((got.status, got.body.as_str()), (200, "ok"), "{got:?}");
    // curl follows the redirect chain: /moved goes off-site, /old/ to https (not served here).
    let got = curl(&["-I", &url(&rw, "/gone")]);
    assert_eq!(got.status, 410);
    assert_eq!(got.one("content-length"), Some("18"));
    assert!(got.body.is_empty(), "HEAD has no body: {got:?}");
}

#[test]
fn redirect_https_listener_sends_everything_to_https_except_acme() {
    let dir = site();
    write_file(
        dir.path(),
        "www/.well-known/acme-challenge/tok123",
        "tok123.thumb",
    );
    let ws = EchoBackend::tcp_v4();
    let config = format!(
        r#"{}redirect_https = true
http2 = true

[[vhost]]
name = "site"
domains = ["*"]
response_headers = {{ set = {{ "X-Site" = "yes" }} }}

[[vhost.websocket]]
uri = "/ws"
address = "{}"
"#,
        base_config(1),
        ws.config_addr
    );
    let rw = Ringway::builder(config).dir(dir).start();
    let got = curl(&["-H", "Host: shop.test", &url(&rw, "/cart/items?id=7")]);
    assert_eq!(got.status, 308, "{got:?}");
    assert_eq!(
        got.one("location"),
        Some("https://shop.test/cart/items?id=7")
    );
    assert_eq!(
        got.one("x-site"),
        Some("yes"),
        "vhost rules apply to redirects"
    );
    let got = curl(&[&url(&rw, "/.well-known/acme-challenge/tok123")]);
    assert_eq!(
        (got.status, got.body.as_str()),
        (200, "tok123.thumb"),
        "{got:?}"
    );
    let got = curl(&[&url(&rw, "/.well-known/acme-challenge/missing")]);
    assert_eq!(got.status, 404);
    // A WebSocket upgrade gets the redirect too: the backend never sees it.
    let resp = request(
        rw.port(),
        Req::upgrade("/ws", "shop.test")
            .set("Connection", "Upgrade, close")
            .bytes(),
    );
    assert_eq!(resp.status, 308, "{resp}");
    assert_eq!(resp.header("location"), Some("https://shop.test/ws"));
    assert!(ws.requests().is_empty());
    // h2c on the same listener.
    let got = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "Host: shop.test",
        &url(&rw, "/x?y"),
    ]);
    assert_eq!(got.status, 308, "{got:?}");
    assert_eq!(got.one("location"), Some("https://shop.test/x?y"));
}

// ---------------------------------------------------------------------------------------------
// §2 Header rules

#[test]
fn header_rules_apply_to_every_kind_of_answer() {
    let api = HttpBackend::named("api");
    let ws = EchoBackend::tcp_v4();
    let config = format!(
        r#"{}http2 = true

[[backend]]
name = "api"
servers = ["{}"]

[[vhost]]
name = "site"
domains = ["*"]
response_headers = {{ set = {{ "Strict-Transport-Security" = "max-age=63072000" }}, remove = ["Server"] }}
request_headers = {{ set = {{ "X-Edge" = "ringway" }} }}

[[vhost.context]]
uri = "/api/"
handler = "proxy"
backend = "api"
response_headers = {{ set = {{ "Access-Control-Allow-Origin" = "https://app.test" }}, add = {{ "Vary" = "Origin" }}, remove = ["X-Backend"] }}
request_headers = {{ add = {{ "X-Route" = "api" }}, remove = ["Cookie", "X-Edge"] }}

[[vhost.context]]
uri = "/go"
handler = "redirect"
to = "/elsewhere"

[[vhost.websocket]]
uri = "/ws"
address = "{}"
response_headers = {{ set = {{ "X-Tunnel" = "on" }} }}
request_headers = {{ set = {{ "X-Ws-Route" = "1" }} }}
"#,
        base_config(1),
        api.config_addr,
        ws.config_addr
    );
    let rw = Ringway::builder(config).dir(site()).start();
    let hsts = Some("max-age=63072000");
    // Proxied: vhost rules, then the route's; the backend's own field removed.
    let got = curl(&["-H", "Cookie: a=b", &url(&rw, "/api/x")]);
    assert_eq!((got.status, got.body.as_str()), (200, "api"), "{got:?}");
    assert_eq!(got.one("strict-transport-security"), hsts);
    assert_eq!(
        got.one("access-control-allow-origin"),
        Some("https://app.test")
    );
    assert_eq!(got.all("vary"), ["Origin"]);
    assert_eq!(got.one("x-backend"), None);
    assert_eq!(got.one("server"), None);
    let seen = api.served().pop().unwrap();
    assert_eq!(seen.get("x-route"), Some("api"));
    assert!(!seen.has("cookie"), "{seen:?}");
    assert!(
        !seen.has("x-edge"),
        "the route removed what the vhost set: {seen:?}"
    );
    // Static, a static 404, a redirect, a Ringway error (a bad upgrade: 400).
    let got = curl(&[&url(&rw, "/index.html")]);
    assert_eq!(got.status, 200);
    assert_eq!(got.one("strict-transport-security"), hsts);
    assert_eq!(got.one("server"), None, "{got:?}");
    let got = curl(&[&url(&rw, "/nope")]);
    assert_eq!(got.status, 404);
    assert_eq!(got.one("strict-transport-security"), hsts);
    let got = curl(&[&url(&rw, "/go")]);
    assert_eq!(got.status, 301);
    assert_eq!(got.one("strict-transport-security"), hsts);
    let bad = request(
        rw.port(),
        Req::upgrade("/ws", "x")
            .set("Sec-WebSocket-Key", "short")
            .bytes(),
    );
    assert_eq!(bad.status, 400, "{bad}");
    assert_eq!(bad.header("x-tunnel"), Some("on"), "{bad}");
    assert_eq!(bad.header("strict-transport-security"), hsts);
    // The 101 of an upgrade, and what the WebSocket backend saw.
    let (mut sock, resp) = ws_connect(rw.port(), ws_request(&rw, "/ws", None));
    assert_eq!(resp.headers().get("x-tunnel").unwrap(), "on");
    assert_eq!(
        resp.headers().get("strict-transport-security").unwrap(),
        "max-age=63072000"
    );
    sock.send(Message::text("hi")).unwrap();
    assert_eq!(ws_next(&mut sock), Message::text("hi"));
    let seen = ws.requests().pop().unwrap();
    assert_eq!(seen.get("x-ws-route"), Some("1"));
    assert_eq!(seen.get("x-edge"), Some("ringway"));
    // HTTP/2 (h2c) serves the same contexts with the same rules.
    let got = curl(&["--http2-prior-knowledge", &url(&rw, "/api/y")]);
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.one("strict-transport-security"), hsts);
    assert_eq!(
        got.one("access-control-allow-origin"),
        Some("https://app.test")
    );
    assert_eq!(got.one("x-backend"), None);
    let got = curl(&["--http2-prior-knowledge", &url(&rw, "/index.html")]);
    assert_eq!(got.status, 200);
    assert_eq!(got.one("strict-transport-security"), hsts);
    assert_eq!(got.one("server"), None);
}

// ---------------------------------------------------------------------------------------------
// §5 Error pages and per-route timeouts

#[test]
fn error_pages_answer_ringways_own_errors() {
    let dir = site();
    write_file(dir.path(), "errors/404.html", "<h1>not here</h1>\n");
    write_file(
        dir.path(),
        "errors/50x.html",
        "<h1>down for a moment</h1>\n",
    );
    let dead = free_port();
    let config = format!(
        r#"{}
[[backend]]
name = "down"
servers = ["127.0.0.1:{dead}"]
retries = 0

[[vhost]]
name = "site"
domains = ["*"]
error_pages = {{ 404 = "errors/404.html", 502 = "errors/50x.html", 503 = "errors/50x.html" }}
response_headers = {{ set = {{ "X-Site" = "1" }} }}

[[vhost.context]]
uri = "/app/"
handler = "proxy"
backend = "down"
"#,
        base_config(1)
    );
    let rw = Ringway::builder(config).dir(dir).start();
    let got = curl(&[&url(&rw, "/missing.png")]);
    assert_eq!(got.status, 404);
    assert_eq!(got.one("content-type"), Some("text/html"));
    assert_eq!(got.body, "<h1>not here</h1>\n");
    assert_eq!(got.one("x-site"), Some("1"));
    let got = curl(&[&url(&rw, "/app/x")]);
    assert!(matches!(got.status, 502 | 503), "{got:?}");
    assert_eq!(got.one("content-type"), Some("text/html"));
    assert_eq!(got.body, "<h1>down for a moment</h1>\n");
    assert_eq!(got.one("x-site"), Some("1"));
    // A status without a page keeps the short text answer.
    let got = curl(&["-X", "DELETE", &url(&rw, "/index.html")]);
    assert_eq!(got.status, 405);
    assert!(got.one("content-type").unwrap().starts_with("text/plain"));
}

#[test]
fn route_timeouts_override_the_global_ones() {
    // Holds `.../slow` until released.
    let api = HttpBackend::with_handler("api", |b, req, w| {
        if req.path().ends_with("/slow") {
            b.wait_gate();
        }
        crate::http_backends::answer_named(b, req, w)
    });
    let ws = EchoBackend::tcp_v4();
    let config = format!(
        r#"{}
[[backend]]
name = "api"
servers = ["{}"]
retries = 0

[[vhost]]
name = "site"
domains = ["*"]

[[vhost.context]]
uri = "/quick/"
handler = "proxy"
backend = "api"
timeouts = {{ upstream_read = "300ms" }}

[[vhost.websocket]]
uri = "/ws"
address = "{}"
timeouts = {{ tunnel_idle = "400ms" }}
"#,
        base_config_timeouts(1, &[("upstream_read", "60s"), ("tunnel_idle", "1h")]),
        api.config_addr,
        ws.config_addr
    );
    let rw = Ringway::builder(config).start();
    // The route's 300 ms give 504, not the global 60 s.
    let started = Instant::now();
    let r = request(
        rw.port(),
        "GET /quick/slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 504, "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    api.release();
    // A tunnel idle for longer than the route's tunnel_idle is closed (the global is 1 h).
    let (mut sock, _) = ws_connect(rw.port(), ws_request(&rw, "/ws", None));
    sock.send(Message::text("hi")).unwrap();
    assert_eq!(ws_next(&mut sock), Message::text("hi"));
    let idle_from = Instant::now();
    let ended = loop {
        match sock.read() {
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) | Err(_) => break idle_from.elapsed(),
            Ok(other) => panic!("unexpected {other:?}"),
        }
    };
    assert!(ended < Duration::from_secs(8), "tunnel idle for {ended:?}");
}

// ---------------------------------------------------------------------------------------------
// §6 Access control

#[test]
fn basic_auth_with_bcrypt_and_plain_users() {
    let dir = site();
    write_file(dir.path(), "www/private/report.txt", "numbers\n");
    htpasswd_bcrypt(dir.path(), "staff.htpasswd", "alice", "s3cret");
    write_file(dir.path(), "plain.users", "bob:hunter2\n");
    let ws = EchoBackend::tcp_v4();
    let config = format!(
        r#"{}http2 = true

[[vhost]]
name = "site"
domains = ["*"]

[[vhost.context]]
uri = "/private/"
handler = "static"
auth = {{ users_file = "staff.htpasswd", realm = "Staff only" }}

[[vhost.context]]
uri = "/plain/"
handler = "respond"
body = "plain ok"
auth = {{ users_file = "plain.users" }}

[[vhost.websocket]]
uri = "/ws"
address = "{}"
auth = {{ users_file = "staff.htpasswd", realm = "Staff only" }}
"#,
        base_config(1),
        ws.config_addr
    );
    let rw = Ringway::builder(config).dir(dir).start();
    let file = url(&rw, "/private/report.txt");
    let got = curl(&[&file]);
    assert_eq!(got.status, 401, "{got:?}");
    assert_eq!(
        got.one("www-authenticate"),
        Some("Basic realm=\"Staff only\"")
    );
    assert_eq!(curl(&["-u", "alice:wrong", &file]).status, 401);
    assert_eq!(curl(&["-u", "mallory:s3cret", &file]).status, 401);
    for _ in 0..3 {
        let got = curl(&["-u", "alice:s3cret", &file]);
        assert_eq!(
            (got.status, got.body.as_str()),
            (200, "numbers\n"),
            "{got:?}"
        );
    }
    let got = curl(&["--http2-prior-knowledge", &file]);
    assert_eq!(got.status, 401, "HTTP/2 is checked too: {got:?}");
    let got = curl(&["--http2-prior-knowledge", "-u", "alice:s3cret", &file]);
    assert_eq!((got.status, got.body.as_str()), (200, "numbers\n"));
    // Plain-text users still work.
    assert_eq!(curl(&[&url(&rw, "/plain/")]).status, 401);
    let got = curl(&["-u", "bob:hunter2", &url(&rw, "/plain/")]);
    assert_eq!((got.status, got.body.as_str()), (200, "plain ok"));
    assert_eq!(
        curl(&["-u", "bob:hunter2", &url(&rw, "/plain/")]).one("www-authenticate"),
        None
    );
    // Upgrades are checked before the backend is contacted.
    assert_eq!(ws_refused(&rw, ws_request(&rw, "/ws", None)), 401);
    assert_eq!(
        ws_refused(&rw, ws_request(&rw, "/ws", Some(&basic("alice:nope")))),
        401
    );
    assert!(
        ws.requests().is_empty(),
        "refused upgrades reached the backend"
    );
    let (mut sock, _) = ws_connect(
        rw.port(),
        ws_request(&rw, "/ws", Some(&basic("alice:s3cret"))),
    );
    sock.send(Message::text("in")).unwrap();
    assert_eq!(ws_next(&mut sock), Message::text("in"));
    assert_eq!(ws.requests().len(), 1);
}

#[test]
fn connect_proxy_auth_takes_bcrypt_users() {
    let api = HttpBackend::named("api");
    let dir = temp_dir();
    htpasswd_bcrypt(dir.path(), "users", "alice", "s3cret");
    let config = r#"[runtime]
cores = 1
pin = false

[[listener]]
name = "fwd"
address = "127.0.0.1:@PORT@"
forward_proxy = true

[[vhost]]
name = "proxy"
domains = ["*"]

[[vhost.context]]
uri = "/"
handler = "connect"
allow = ["127.0.0.1/32:*"]
auth = { users_file = "users" }
"#;
    let rw = Ringway::builder(config).dir(dir).start();
    let via = |user: &str| {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10", "-p", "-x"])
            .arg(format!("http://127.0.0.1:{}", rw.port()))
            .args(["-w", "\n%{http_connect}", "--proxy-user", user])
            .arg(format!("http://{}/x", api.config_addr))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        via("alice:wrong").ends_with("\n407"),
        "{}",
        via("alice:wrong")
    );
    assert_eq!(via("alice:s3cret"), "api\n200");
    // deny_from on the connect context: 403 before the credentials are looked at.
    let denied = config.replace(
        "auth = { users_file = \"users\" }",
        "auth = { users_file = \"users\" }\ndeny_from = [\"127.0.0.0/8\"]",
    );
    rw.rewrite_config(&denied);
    rw.signal(libc::SIGHUP);
    assert!(rw.wait_log("configuration reloaded generation=", 1, WAIT));
    let got = via("alice:s3cret");
    assert!(got.ends_with("\n403"), "{got}");
}

#[test]
fn allow_from_and_deny_from() {
    let ws = EchoBackend::tcp_v4();
    let config = format!(
        r#"{}
[[vhost]]
name = "site"
domains = ["*"]

[[vhost.context]]
uri = "/lan/"
handler = "respond"
body = "lan"
allow_from = ["127.0.0.0/8"]
deny_from = ["127.0.0.2/32"]

[[vhost.context]]
uri = "/office/"
handler = "respond"
body = "office"
allow_from = ["10.0.0.0/8"]

[[vhost.websocket]]
uri = "/ws"
address = "{}"
deny_from = ["127.0.0.0/8"]
"#,
        base_config(1),
        ws.config_addr
    );
    let rw = Ringway::builder(config).start();
    let got = curl(&[&url(&rw, "/lan/")]);
    assert_eq!((got.status, got.body.as_str()), (200, "lan"));
    // From 127.0.0.2: inside allow_from, but deny_from wins.
    let got = curl(&["--interface", "127.0.0.2", &url(&rw, "/lan/")]);
    assert_eq!(got.status, 403, "{got:?}");
    assert_eq!(curl(&[&url(&rw, "/office/")]).status, 403);
    assert_eq!(ws_refused(&rw, ws_request(&rw, "/ws", None)), 403);
    assert!(ws.requests().is_empty());
}

#[test]
fn requests_per_ip_answers_429_with_retry_after() {
    let config = format!(
        r#"{}
[[vhost]]
name = "site"
domains = ["*"]

[[vhost.context]]
uri = "/api/"
handler = "respond"
body = "api"
requests_per_ip = "3/60s"

[[vhost.context]]
uri = "/free/"
handler = "respond"
body = "free"
"#,
        base_config(1)
    );
    let rw = Ringway::builder(config).start();
    for i in 0..3 {
        assert_eq!(curl(&[&url(&rw, "/api/")]).status, 200, "request {i}");
    }
    let got = curl(&[&url(&rw, "/api/")]);
    assert_eq!(got.status, 429, "{got:?}");
    let retry: u64 = got.one("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        curl(&[&url(&rw, "/free/")]).status,
        200,
        "other routes are not limited"
    );
    let got = curl(&["--interface", "127.0.0.2", &url(&rw, "/api/")]);
    assert_eq!(got.status, 200, "another client IP has its own bucket");
}

// ---------------------------------------------------------------------------------------------
// Check errors and warnings

#[test]
fn check_reports_edge_key_errors_and_warnings() {
    let dir = temp_dir();
    let head = "[[listener]]\nname = \"main\"\naddress = \"127.0.0.1:1\"\n[[vhost]]\nname = \"v\"\ndomains = [\"*\"]\n";
    // Line 7 onwards is the case's own text.
    for (extra, line, col, want) in [
        (
            "response_headers = { set = { \"Content-Length\" = \"1\" } }",
            7,
            30,
            "\"Content-Length\" is a hop-by-hop or framing header",
        ),
        (
            "response_headers = { add = { \"Transfer-Encoding\" = \"x\" } }",
            7,
            30,
            "hop-by-hop or framing header",
        ),
        (
            "request_headers = { remove = [\"Connection\"] }",
            7,
            31,
            "hop-by-hop or framing header",
        ),
        (
            "error_pages = { 404 = \"errors/none.html\" }",
            7,
            23,
            "is not a readable file",
        ),
        (
            "error_pages = { 200 = \"check.toml\" }",
            7,
            17,
            "is not an error status",
        ),
        (
            "[[vhost.context]]\nuri = \"/r\"\nhandler = \"redirect\"\nto = \"/x\"\nstatus = 200",
            11,
            10,
            "must be 301, 302, 303, 307 or 308",
        ),
        (
            "[[vhost.context]]\nuri = \"/r\"\nhandler = \"redirect\"\nto = \"https://{hots}/\"",
            10,
            6,
            "unknown placeholder {hots}",
        ),
        (
            "[[vhost.context]]\nuri = \"/r\"\nhandler = \"static\"\nrequests_per_ip = \"many\"",
            10,
            19,
            "is not COUNT/DURATION",
        ),
        (
            "[[vhost.context]]\nuri = \"/r\"\nhandler = \"static\"\nallow_from = [\"10.0.0.0/33\"]",
            10,
            15,
            "allow_from",
        ),
        (
            "[[vhost.context]]\nuri = \"/r\"\nhandler = \"static\"\ntimeouts = { upstream_read = \"soon\" }",
            10,
            30,
            "invalid duration",
        ),
    ] {
        let (code, out) = check(&format!("{head}{extra}\n"), dir.path());
        assert_eq!(code, Some(1), "{extra}\n{out}");
        let at = format!("check.toml:{line}:{col}: ");
        assert!(
            out.lines().any(|l| l.contains(&at) && l.contains(want)),
            "{extra}: wanted {at}...{want}\n{out}"
        );
    }
    // A plain-text password is valid, with a warning at the users_file value.
    write_file(dir.path(), "plain.users", "# users\nbob:hunter2\n");
    let text = format!(
        "{head}[[vhost.context]]\nuri = \"/p\"\nhandler = \"static\"\nauth = {{ users_file = \"plain.users\" }}\n"
    );
    let (code, out) = check(&text, dir.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("check.toml:10:23: warning: ")
                && l.contains("plain-text password for \"bob\"")),
        "{out}"
    );
    // A bcrypt file: no warning.
    htpasswd_bcrypt(dir.path(), "b.users", "alice", "pw");
    let (code, out) = check(&text.replace("plain.users", "b.users"), dir.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("warning"), "{out}");
    // redirect_https belongs on plain listeners.
    let tls = "[[listener]]\nname = \"main\"\naddress = \"127.0.0.1:1\"\ntls = true\nredirect_https = true\n";
    let (code, out) = check(tls, dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("check.toml:1:1: \"redirect_https\" applies to plain listeners"),
        "{out}"
    );
}

#[test]
fn h2c_fixed_answers_error_pages_and_reload() {
    let dir = site();
    write_file(dir.path(), "errors/404.html", "<p>first</p>");
    let config = format!(
        r#"{}http2 = true

[[vhost]]
name = "site"
domains = ["*"]
error_pages = {{ 404 = "errors/404.html" }}
response_headers = {{ set = {{ "X-Site" = "1" }} }}

[[vhost.context]]
uri = "/gone"
handler = "respond"
status = 410
body = "gone"

[[vhost.context]]
uri = "/r/"
handler = "redirect"
to = "{{scheme}}://{{host}}/new{{uri}}"
status = 302
"#,
        base_config(1)
    );
    let rw = Ringway::builder(config.clone()).dir(dir).start();
    let h2 = |path: &str| {
        curl(&[
            "--http2-prior-knowledge",
            "-H",
            "Host: a.test",
            &url(&rw, path),
        ])
    };
    let got = h2("/gone");
    assert_eq!((got.status, got.body.as_str()), (410, "gone"), "{got:?}");
    assert_eq!(got.one("x-site"), Some("1"));
    let got = h2("/r/x?q=1");
    assert_eq!(got.status, 302, "{got:?}");
    assert_eq!(got.one("location"), Some("http://a.test/new/r/x?q=1"));
    let got = h2("/missing");
    assert_eq!(
        (got.status, got.body.as_str()),
        (404, "<p>first</p>"),
        "{got:?}"
    );
    assert_eq!(got.one("content-type"), Some("text/html"));
    // The page is read at load: a reload reads it again (a request never does).
    write_file(rw.dir_path(), "errors/404.html", "<p>second</p>");
    assert_eq!(curl(&[&url(&rw, "/missing")]).body, "<p>first</p>");
    rw.rewrite_config(&config);
    rw.signal(libc::SIGHUP);
    assert!(rw.wait_log("configuration reloaded generation=", 1, WAIT));
    assert_eq!(curl(&[&url(&rw, "/missing")]).body, "<p>second</p>");
    assert_eq!(h2("/missing").body, "<p>second</p>");
}

#[test]
fn websocket_route_header_timeout_bounds_the_backends_answer() {
    // A backend that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in silent.incoming().take(1).flatten() {
            conns.push(c);
        }
        std::thread::sleep(Duration::from_secs(10));
    });
    let config = format!(
        r#"{}
[[vhost]]
name = "site"
domains = ["*"]

[[vhost.websocket]]
uri = "/ws"
address = "{addr}"
timeouts = {{ header = "300ms", connect = "2s" }}
"#,
        base_config_timeouts(1, &[("header", "60s")])
    );
    let rw = Ringway::builder(config).start();
    let started = Instant::now();
    assert_eq!(ws_refused(&rw, ws_request(&rw, "/ws", None)), 504);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    drop(held);
}

#[test]
fn route_send_timeout_cuts_a_client_that_stops_reading() {
    use std::io::{Read, Write};
    let dir = site();
    let size = 32 * 1024 * 1024;
    write_file(dir.path(), "www/big/file.bin", vec![b'x'; size]);
    write_file(dir.path(), "www/other/file.bin", vec![b'y'; size]);
    let config = format!(
        r#"{}
[[vhost]]
name = "site"
domains = ["*"]

[[vhost.context]]
uri = "/big/"
handler = "static"
timeouts = {{ send = "500ms" }}

[[vhost.context]]
uri = "/other/"
handler = "static"
"#,
        base_config_timeouts(1, &[("send", "60s")])
    );
    let rw = Ringway::builder(config).dir(dir).start();
    let received = |path: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", rw.port())).unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        // Read nothing for a while: the client's window fills, Ringway's writes stall.
        std::thread::sleep(Duration::from_secs(3));
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut total = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break total,
                Ok(n) => total += n,
            }
        }
    };
    let cut = received("/big/file.bin");
    assert!(
        cut < size,
        "the route's send timeout cut the response: {cut} of {size}"
    );
    let whole = received("/other/file.bin");
    assert!(
        whole > size,
        "the global send timeout (60 s) let it finish: {whole}"
    );
}

#[test]
fn route_connect_timeout_overrides_the_global_one() {
    let hole = crate::backend::Blackhole::start();
    let config = format!(
        r#"{}
[[backend]]
name = "hole"
servers = ["{}"]
retries = 0

[[vhost]]
name = "site"
domains = ["*"]

[[vhost.context]]
uri = "/"
handler = "proxy"
backend = "hole"
timeouts = {{ connect = "500ms" }}
"#,
        base_config_timeouts(1, &[("connect", "30s")]),
        hole.addr
    );
    let rw = Ringway::builder(config).start();
    let started = Instant::now();
    let r = request(
        rw.port(),
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{r}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "504 after {took:?}, want about the route's 500 ms"
    );
}
