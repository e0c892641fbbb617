//! The control socket and API (issue 19 §2) and the lame duck (§4), against the real binary:
//! every endpoint over the Unix socket (curl `--unix-socket`) and over the admin listener,
//! their 404/400/405 answers, the socket file's mode, `ringway reload` and `ringway ctl`
//! through the socket, and `/healthz` with `timeouts.lameduck` around SIGTERM.
//! Server states and weights through the API and `ctl` use the backend directory (DNS
//! discovery and drain: `discovery.rs`).

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

use crate::backend::EchoBackend;
use crate::harness::*;
use crate::operations::{echo_round, get, open_tunnels};

/// `main` on @PORT@ (a static site, `/chat/` to the echo backend `server`), `admin` on
/// @PORT1@ with the control socket `control.sock` next to the config; `timeouts` and `admin`
/// (extra `[admin]` keys) added.
fn control_config(server: &str, timeouts: &[(&str, &str)], admin: &str) -> String {
    let head = format!(
        r#"{}
[[listener]]
name = "admin"
address = "127.0.0.1:@PORT1@"

[admin]
listener = "admin"
socket = "control.sock"
{admin}
"#,
        base_config_timeouts(2, timeouts)
    );
    ws_site(&head, server)
}

fn socket_path(rw: &Ringway) -> PathBuf {
    rw.dir_path().join("control.sock")
}

/// One request with curl: through the Unix socket `socket`, or to `http://127.0.0.1:port`.
/// Returns the status, the `Allow` field and the body.
fn curl(to: Target<'_>, method: &str, path: &str, body: Option<&str>) -> (u16, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", "-X", method, "-D", "-"]);
    let url = match to {
        Target::Socket(socket) => {
            cmd.arg("--unix-socket").arg(socket);
            format!("http://localhost{path}")
        }
        Target::Port(port) => format!("http://127.0.0.1:{port}{path}"),
    };
    if let Some(body) = body {
        cmd.args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    }
    let out = cmd.arg(&url).output().expect("run curl");
    assert!(out.status.success(), "curl {method} {url}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let allow = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("allow"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, allow, body.to_string())
}

#[derive(Clone, Copy)]
enum Target<'a> {
    Socket(&'a Path),
    Port(u16),
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

/// A 4xx answer with a JSON body `{"error": "..."}`.
fn assert_error(answer: (u16, String, String), status: u16, what: &str) {
    assert_eq!(answer.0, status, "{what}: {}", answer.2);
    let body = json(&answer.2);
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {body}"
    );
}

/// Every endpoint and error answer, the same through `to`.
fn check_endpoints(to: Target<'_>, first_generation: u64) {
    let (status, _, body) = curl(to, "GET", "/healthz", None);
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, _, body) = curl(to, "GET", "/api/backends", None);
    assert_eq!(status, 200, "{body}");
    assert!(json(&body).is_object(), "{body}");

    let server = "/api/backends/chat/servers/127.0.0.1%3A1";
    // 400 for a bad body, checked before the server is looked up.
    for bad in [
        "not json",
        "[1, 2]",
        r#"{"state": "up"}"#,
        r#"{"state": 1}"#,
        r#"{"spread": "soon"}"#,
        r#"{"spread": 60}"#,
        r#"{"weight": 0}"#,
        r#"{"weight": -1}"#,
        r#"{"weight": "3"}"#,
        r#"{"colour": "red"}"#,
    ] {
        assert_error(curl(to, "POST", server, Some(bad)), 400, bad);
    }
    // 404 for an unknown backend.
    let unknown = "/api/backends/nope/servers/127.0.0.1%3A1";
    assert_error(
        curl(to, "POST", unknown, Some(r#"{"state": "maint"}"#)),
        404,
        "unknown backend",
    );
    // 404 for an unknown path, 405 (with Allow) for a known one with another method.
    assert_error(curl(to, "GET", "/api/nothing", None), 404, "unknown path");
    assert_error(
        curl(to, "GET", "/api/backends/chat", None),
        404,
        "no server",
    );
    let (status, allow, _) = curl(to, "GET", server, None);
    assert_eq!((status, allow.as_str()), (405, "POST"));
    let (status, allow, _) = curl(to, "GET", "/api/reload", None);
    assert_eq!((status, allow.as_str()), (405, "POST"));
    let (status, allow, _) = curl(to, "POST", "/api/backends", Some("{}"));
    assert_eq!((status, allow.as_str()), (405, "GET, HEAD"));
    let (status, allow, _) = curl(to, "DELETE", "/healthz", None);
    assert_eq!((status, allow.as_str()), (405, "GET, HEAD"));

    // A reload that answers with the generation it made.
    let (status, _, body) = curl(to, "POST", "/api/reload", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json(&body),
        serde_json::json!({ "generation": first_generation })
    );
}

#[test]
fn the_control_socket_is_0600_and_serves_every_endpoint_like_the_admin_listener() {
    let echo = EchoBackend::tcp_v4();
    let rw = Ringway::builder(control_config(&echo.config_addr, &[], ""))
        .dir(site())
        .start();
    let socket = socket_path(&rw);
    let meta = std::fs::metadata(&socket).expect("the control socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // SAFETY: getuid has no preconditions.
    assert_eq!(meta.uid(), unsafe { libc::getuid() });

    check_endpoints(Target::Socket(&socket), 2);
    check_endpoints(Target::Port(rw.port_n(1)), 3);
    // The same directory through both.
    let a = curl(Target::Socket(&socket), "GET", "/api/backends", None).2;
    let b = curl(Target::Port(rw.port_n(1)), "GET", "/api/backends", None).2;
    assert_eq!(json(&a), json(&b));
    // HEAD /healthz: the status and no body.
    let out = Command::new("curl")
        .args(["-sS", "-I", "--unix-socket"])
        .arg(&socket)
        .arg("http://localhost/healthz")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("HTTP/1.1 200"));
    // The site still serves.
    assert_eq!(get(rw.port(), "/index.html").status, 200);

    // Only the socket file's owner may connect; the file goes when Ringway stops.
    let mut rw = rw;
    rw.signal(libc::SIGTERM);
    assert!(rw.wait_exit(WAIT).is_some_and(|s| s.success()));
    assert!(!socket.exists(), "the control socket is removed at exit");
}

#[test]
fn admin_allow_guards_the_api_on_the_listener_but_not_healthz() {
    let echo = EchoBackend::tcp_v4();
    let rw = Ringway::builder(control_config(
        &echo.config_addr,
        &[],
        "allow = [\"10.0.0.0/8\"]",
    ))
    .dir(site())
    .start();
    let admin = Target::Port(rw.port_n(1));
    assert_eq!(curl(admin, "GET", "/api/backends", None).0, 403);
    assert_eq!(curl(admin, "POST", "/api/reload", None).0, 403);
    assert_eq!(curl(admin, "GET", "/metrics", None).0, 403);
    let (status, _, body) = curl(admin, "GET", "/healthz", None);
    assert_eq!((status, body.trim()), (200, "ok"));
    // The socket is guarded by its file mode, not by `allow`.
    let socket = socket_path(&rw);
    assert_eq!(
        curl(Target::Socket(&socket), "GET", "/api/backends", None).0,
        200
    );
}

#[test]
fn ringway_reload_over_the_socket_prints_the_generation_or_the_problems() {
    let echo = EchoBackend::tcp_v4();
    let template = control_config(&echo.config_addr, &[], "");
    let rw = Ringway::builder(template.clone()).dir(site()).start();
    let config = rw.config_path();
    let config = config.to_str().unwrap();

    let (status, out, err) = run_cli(&["reload", "--config", config]);
    assert!(status.success(), "{out}{err}");
    assert_eq!(json(&out)["generation"], 2, "{out}");

    // A client config elsewhere that names the same socket: the running process's own file
    // is broken, so its refusal comes back through the socket.
    let client = temp_dir();
    let client_config = write_file(
        client.path(),
        "client.toml",
        rw.render(&template)
            .replace(
                "socket = \"control.sock\"",
                &format!("socket = {:?}", socket_path(&rw)),
            )
            .replace(
                "doc_root = \"www\"",
                &format!("doc_root = {:?}", rw.dir_path().join("www")),
            ),
    );
    let client_config = client_config.to_str().unwrap();
    rw.rewrite_config(&template.replace(
        "name = \"chat\"\nservers",
        "name = \"chat\"\nbalance = \"sideways\"\nservers",
    ));
    let (status, out, err) = run_cli(&["reload", "--config", client_config]);
    assert_eq!(status.code(), Some(1), "{out}{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with(&format!("{config}:")))
        .unwrap_or_else(|| panic!("no FILE:LINE:COL problem in {err:?}"));
    let mut parts = line[config.len() + 1..].splitn(3, ':');
    let (l, c) = (parts.next().unwrap(), parts.next().unwrap());
    assert!(
        l.parse::<u32>().is_ok() && c.parse::<u32>().is_ok(),
        "{line}"
    );
    assert!(line.contains("balance"), "{line}");
    // The same refusal as JSON.
    let (status, _, body) = curl(
        Target::Socket(&socket_path(&rw)),
        "POST",
        "/api/reload",
        None,
    );
    assert_eq!(status, 422, "{body}");
    let errors = json(&body)["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        errors.iter().any(|e| e
            .as_str()
            .is_some_and(|e| e.starts_with(&format!("{config}:")))),
        "{body}"
    );
    // The old config serves on; fixed, the next generation is 3 (refusals make none).
    assert_eq!(get(rw.port(), "/index.html").status, 200);
    rw.rewrite_config(&template);
    let (status, out, err) = run_cli(&["reload", "--config", config]);
    assert!(status.success(), "{out}{err}");
    assert_eq!(json(&out)["generation"], 3, "{out}");
    // A broken file given to `ringway reload` itself: its problems, exit 1.
    rw.rewrite_config(&template.replace("[admin]", "[admin]\nbogus = 1"));
    let (status, _, err) = run_cli(&["reload", "--config", config]);
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains(&format!("{config}:")) && err.contains("bogus"),
        "{err}"
    );
}

#[test]
fn ringway_ctl_talks_to_the_socket() {
    let echo = EchoBackend::tcp_v4();
    let rw = Ringway::builder(control_config(&echo.config_addr, &[], ""))
        .dir(site())
        .start();
    let config = rw.config_path();
    let config = config.to_str().unwrap();
    let (status, out, err) = run_cli(&["ctl", "--config", config, "backends"]);
    assert!(status.success(), "{out}{err}");
    let via_ctl = json(&out);
    let via_curl = json(
        &curl(
            Target::Socket(&socket_path(&rw)),
            "GET",
            "/api/backends",
            None,
        )
        .2,
    );
    assert_eq!(via_ctl, via_curl);
    // An error answer: exit 1 with its message.
    let (status, out, err) = run_cli(&["ctl", "--config", config, "maint", "nope", "127.0.0.1:1"]);
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(err.contains("nope"), "{err}");
    let (status, _, err) = run_cli(&[
        "ctl",
        "--config",
        config,
        "drain",
        "chat",
        "127.0.0.1:1",
        "--spread",
        "soon",
    ]);
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("spread"), "{err}");
    // No socket configured: ctl says so.
    let plain = temp_dir();
    let no_socket = write_file(
        plain.path(),
        "ringway.toml",
        format!(
            "{}\n[[vhost]]\nname = \"s\"\ndomains = [\"*\"]\n",
            base_config(1)
        )
        .replace("@PORT@", &free_port().to_string()),
    );
    let (status, _, err) = run_cli(&["ctl", "--config", no_socket.to_str().unwrap(), "backends"]);
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("[admin] socket"), "{err}");
}

/// `/healthz` on the admin listener and the socket: (status, body) of each.
fn healthz(rw: &Ringway) -> [(u16, String); 2] {
    let socket = socket_path(rw);
    [Target::Port(rw.port_n(1)), Target::Socket(&socket)].map(|to| {
        let (status, _, body) = curl(to, "GET", "/healthz", None);
        (status, body.trim().to_string())
    })
}

fn draining() -> [(u16, String); 2] {
    [(503, "draining".to_string()), (503, "draining".to_string())]
}

#[test]
fn lame_duck_answers_503_at_once_serves_on_for_the_lameduck_then_drains_with_1001() {
    let echo = EchoBackend::tcp_v4();
    let config = control_config(
        &echo.config_addr,
        &[("lameduck", "2s"), ("drain", "20s")],
        "",
    );
    let mut rw = Ringway::builder(config).dir(site()).start();
    let ok = [(200, "ok".to_string()), (200, "ok".to_string())];
    assert_eq!(healthz(&rw), ok);
    let mut tunnels = open_tunnels(&rw, 3);
    echo_round(&mut tunnels, 0);
    let t0 = Instant::now();
    rw.signal(libc::SIGTERM);
    // 503 at once, on both.
    assert!(wait_until(Duration::from_secs(1), || healthz(&rw) == draining()));
    // For the lame duck, everything serves normally: new connections, requests, upgrades,
    // open tunnels.
    let mut round = 1;
    while t0.elapsed() < Duration::from_millis(1500) {
        assert_eq!(
            get(rw.port(), "/index.html").status,
            200,
            "at {:?}",
            t0.elapsed()
        );
        let (mut fresh, _) = ws_connect(rw.port(), rw.ws_url("/chat/new").as_str());
        fresh.send(Message::text("hi")).unwrap();
        assert_eq!(ws_next(&mut fresh), Message::text("hi"));
        let _ = fresh.close(None);
        echo_round(&mut tunnels, round);
        round += 1;
        thread::sleep(Duration::from_millis(100));
    }
    // Then the drain: tunnels get 1001, not before the lame duck is over.
    for (i, ws) in tunnels.iter_mut().enumerate() {
        match ws_next(ws) {
            Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Away, "tunnel {i}"),
            other => panic!("tunnel {i}: expected Close 1001, got {other:?}"),
        }
    }
    let closed_after = t0.elapsed();
    assert!(
        closed_after >= Duration::from_millis(1900),
        "closed after {closed_after:?}, within the 2 s lame duck"
    );
    drop(tunnels);
    let status = rw.wait_exit(WAIT).expect("exit after the drain");
    assert!(status.success(), "{status}");
}

#[test]
fn a_second_sigterm_skips_the_lame_duck() {
    let echo = EchoBackend::tcp_v4();
    let config = control_config(
        &echo.config_addr,
        &[("lameduck", "60s"), ("drain", "20s")],
        "",
    );
    let mut rw = Ringway::builder(config).dir(site()).start();
    let mut tunnels = open_tunnels(&rw, 2);
    echo_round(&mut tunnels, 0);
    rw.signal(libc::SIGTERM);
    assert!(wait_until(WAIT, || healthz(&rw) == draining()));
    // Still serving well into the lame duck.
    thread::sleep(Duration::from_millis(500));
    echo_round(&mut tunnels, 1);
    assert_eq!(get(rw.port(), "/index.html").status, 200);
    let t1 = Instant::now();
    rw.signal(libc::SIGTERM);
    for (i, ws) in tunnels.iter_mut().enumerate() {
        match ws_next(ws) {
            Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Away, "tunnel {i}"),
            other => panic!("tunnel {i}: expected Close 1001, got {other:?}"),
        }
    }
    assert!(t1.elapsed() < WAIT, "the drain began at the second SIGTERM");
    drop(tunnels);
    let status = rw.wait_exit(WAIT).expect("exit after the drain");
    assert!(status.success(), "{status}");
}

#[test]
fn without_a_lameduck_sigterm_drains_at_once_and_healthz_says_draining() {
    let echo = EchoBackend::tcp_v4();
    let config = control_config(&echo.config_addr, &[("drain", "20s")], "");
    let mut rw = Ringway::builder(config).dir(site()).start();
    let mut tunnels = open_tunnels(&rw, 1);
    echo_round(&mut tunnels, 0);
    let t0 = Instant::now();
    rw.signal(libc::SIGTERM);
    match ws_next(&mut tunnels[0]) {
        Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Away),
        other => panic!("expected Close 1001, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(5));
    // The socket still answers while the drain waits for the tunnel's Close reply.
    let socket = socket_path(&rw);
    let (status, _, body) = curl(Target::Socket(&socket), "GET", "/healthz", None);
    assert_eq!((status, body.trim()), (503, "draining"));
    drop(tunnels);
    assert!(rw.wait_exit(WAIT).is_some_and(|s| s.success()));
}

#[test]
fn an_upgrade_makes_the_old_process_say_draining_and_the_new_one_takes_the_socket() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let echo = EchoBackend::tcp_v4();
    let config = control_config(&echo.config_addr, &[("drain", "20s")], "")
        .replace("pin = false\n", "pin = false\npid_file = \"ringway.pid\"\n");
    let mut rw = Ringway::builder(config).dir(site()).start();
    let socket = socket_path(&rw);
    let pid_file = rw.dir_path().join("ringway.pid");
    let old_pid = rw.pid().to_string();
    assert!(wait_until(WAIT, || std::fs::read_to_string(&pid_file)
        .is_ok_and(|p| p.trim() == old_pid)));
    // A tunnel keeps the old process draining; a connection to its control socket, opened
    // now, asks it after the hand-off.
    let mut tunnels = open_tunnels(&rw, 1);
    echo_round(&mut tunnels, 0);
    let mut old = UnixStream::connect(&socket).unwrap();
    old.set_read_timeout(Some(WAIT)).unwrap();
    let (status, out, err) = run_cli(&["upgrade", "--config", rw.config_path().to_str().unwrap()]);
    assert!(status.success(), "{out}{err}");
    assert!(wait_until(WAIT, || std::fs::read_to_string(&pid_file)
        .is_ok_and(|p| !p.trim().is_empty() && p.trim() != old_pid)));
    let new_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _new = KillOnDrop(new_pid);
    old.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    old.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.ends_with("draining"), "{answer}");
    // The path is the new process's now: it serves.
    let (status, _, body) = curl(Target::Socket(&socket), "GET", "/healthz", None);
    assert_eq!((status, body.trim()), (200, "ok"));
    // The old process ends without removing the new one's socket.
    match ws_next(&mut tunnels[0]) {
        Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Away),
        other => panic!("expected Close 1001, got {other:?}"),
    }
    drop(tunnels);
    assert!(rw.wait_exit(WAIT).is_some_and(|s| s.success()));
    let (status, _, body) = curl(Target::Socket(&socket), "POST", "/api/reload", None);
    assert_eq!(status, 200, "{body}");
}

/// The process started by an upgrade (our grandchild), killed when the test ends.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill with the pid the upgraded Ringway wrote to its pid file.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

// ---------------------------------------------------------------------------------------------
// With the backend directory (issue 19 §1, §3: server states).

/// The server entry for `server` in backend `backend` in a `/api/backends` answer, searched
/// without assuming the shape beyond the issue's words: some object whose address is `server`.
fn find_server<'a>(v: &'a Value, server: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => {
            if m.values().any(|x| x.as_str() == Some(server))
                && (m.contains_key("state") || m.contains_key("weight"))
            {
                return Some(v);
            }
            m.values().find_map(|x| find_server(x, server))
        }
        Value::Array(a) => a.iter().find_map(|x| find_server(x, server)),
        _ => None,
    }
}

#[test]
fn server_states_and_weights_through_the_api_and_ctl() {
    let echo = EchoBackend::tcp_v4();
    let rw = Ringway::builder(control_config(&echo.config_addr, &[], ""))
        .dir(site())
        .start();
    let socket = socket_path(&rw);
    let to = Target::Socket(&socket);
    let server = echo.config_addr.as_str();
    let path = format!("/api/backends/chat/servers/{}", server.replace(':', "%3A"));
    let all = json(&curl(to, "GET", "/api/backends", None).2);
    let entry = find_server(&all, server).unwrap_or_else(|| panic!("{server} in {all}"));
    assert_eq!(entry["state"], "ready", "{entry}");
    assert_eq!(entry["source"], "static", "{entry}");
    assert_eq!(entry["weight"], 1, "{entry}");

    // Each change answers the server's new entry.
    let (status, _, body) = curl(
        to,
        "POST",
        &path,
        Some(r#"{"state": "maint", "weight": 3}"#),
    );
    assert_eq!(status, 200, "{body}");
    let entry = json(&body);
    assert_eq!(
        (entry["state"].as_str(), entry["weight"].as_u64()),
        (Some("maint"), Some(3))
    );
    // maint: no new upgrades reach it (its backend has no other server: 503).
    let up = request(rw.port(), Req::upgrade("/chat/x", "site").bytes());
    assert_eq!(up.status, 503);
    let (status, _, body) = curl(to, "POST", &path, Some(r#"{"state": "ready"}"#));
    assert_eq!(
        (status, json(&body)["state"].as_str()),
        (200, Some("ready"))
    );
    let (mut ws, _) = ws_connect(rw.port(), rw.ws_url("/chat/y").as_str());
    ws.send(Message::text("back")).unwrap();
    assert_eq!(ws_next(&mut ws), Message::text("back"));
    // An unknown server of a known backend: 404.
    assert_error(
        curl(
            to,
            "POST",
            "/api/backends/chat/servers/127.0.0.1%3A1",
            Some("{}"),
        ),
        404,
        "unknown server",
    );

    // ctl: weight, maint, ready, drain print the entry.
    let config = rw.config_path();
    let config = config.to_str().unwrap();
    let (status, out, err) = run_cli(&["ctl", "--config", config, "weight", "chat", server, "5"]);
    assert!(status.success(), "{out}{err}");
    assert_eq!(json(&out)["weight"], 5, "{out}");
    let (status, out, _) = run_cli(&["ctl", "--config", config, "maint", "chat", server]);
    assert!(status.success());
    assert_eq!(json(&out)["state"], "maint", "{out}");
    let (status, out, _) = run_cli(&["ctl", "--config", config, "ready", "chat", server]);
    assert!(status.success());
    assert_eq!(json(&out)["state"], "ready", "{out}");
    let (status, out, err) = run_cli(&[
        "ctl", "--config", config, "drain", "chat", server, "--spread", "1s",
    ]);
    assert!(status.success(), "{out}{err}");
    let state = json(&out)["state"].as_str().map(str::to_string);
    assert!(
        matches!(state.as_deref(), Some("drain" | "drained")),
        "{out}"
    );
    let (status, out, _) = run_cli(&["ctl", "--config", config, "backends"]);
    assert!(status.success());
    assert!(find_server(&json(&out), server).is_some(), "{out}");
}
