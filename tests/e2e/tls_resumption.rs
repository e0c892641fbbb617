//! TLS session resumption on every core and across instances: stateless tickets (TLS 1.3 and
//! 1.2) from one key set per process or from a shared `[tls] ticket_keys` file, the shared
//! TLS 1.2 session-ID cache, `check`'s refusals of bad key files, and keys re-read on reload.
//! Client: `openssl s_client` with `-sess_out` / `-sess_in`, sending one request so that
//! TLS 1.3 tickets (sent after the handshake) are read before it exits.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{run_cli, temp_dir, write_file, Ringway, WAIT};
use crate::pki::{tls_base, vhost, LeafOpts, Pki};

/// Base64 of 80 bytes of `fill`, as `openssl rand 80 | base64 -w0` would write a key.
fn key_line(fill: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([fill; 80])
}

/// One TLS listener on `cores` cores with vhost `a.example` (certificates by absolute path, so
/// several instances can share them; static files from the instance's own directory) and
/// `tls_table` appended.
fn config(cores: usize, leaf: &crate::pki::Leaf, tls_table: &str) -> String {
    tls_base(cores)
        + &vhost(
            "a",
            &["a.example", "*"],
            leaf.chain_path().to_str().unwrap(),
            leaf.key_path().to_str().unwrap(),
        )
        .top("doc_root = \"@DIR@\"")
        .toml()
        + tls_table
}

/// One `openssl s_client` connection to `a.example` on `port` with `args` added, sending one
/// request: resumes from `session` if it exists and saves the newest session there. Returns
/// everything it printed. Shared with `churn` (which adds `-msg` to count tickets).
pub(crate) fn s_client(port: u16, args: &[&str], session: &Path) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "a.example", "-ign_eof"])
        .args(args)
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
    reader.join().unwrap()
}

/// One connection: resumes from `session` if it exists, saves the new session there. Returns
/// whether the session was reused (`None`: the handshake failed).
fn connect(port: u16, version: &str, session: &Path, no_ticket: bool) -> Option<bool> {
    let args: &[&str] = if no_ticket {
        &[version, "-no_ticket"]
    } else {
        &[version]
    };
    let text = s_client(port, args, session);
    if text.contains("Reused, TLSv1") {
        Some(true)
    } else if text.contains("New, TLSv1") && !text.contains("Cipher is (NONE)") {
        Some(false)
    } else {
        None
    }
}

/// Reconnects `n` times after a first full handshake; returns how many resumed.
fn reconnects(port: u16, version: &str, n: usize, no_ticket: bool) -> usize {
    let dir = temp_dir();
    let session = dir.path().join("session.pem");
    assert_eq!(connect(port, version, &session, no_ticket), Some(false));
    (0..n)
        .filter(|_| connect(port, version, &session, no_ticket).expect("handshake"))
        .count()
}

fn pki_leaf(dir: &Path) -> crate::pki::Leaf {
    let pki = Pki::new(dir);
    pki.leaf("a", 0x1001, &LeafOpts::dns(&["a.example"]))
}

#[test]
fn sessions_resume_on_every_core_with_tls_1_3_and_1_2_tickets_and_session_ids() {
    let certs = temp_dir();
    let leaf = pki_leaf(certs.path());
    let rw = Ringway::builder(config(2, &leaf, "")).start();
    // SO_REUSEPORT spreads 200 connections over both cores: without a process-wide key set a
    // ticket issued on one core fails on the other about half the time.
    for version in ["-tls1_3", "-tls1_2"] {
        let resumed = reconnects(rw.port(), version, 200, false);
        assert!(
            resumed >= 198,
            "{version}: {resumed} of 200 reconnects resumed (want at least 99 %)"
        );
    }
    // TLS 1.2 without ticket support: the session-ID cache, shared by the cores.
    let resumed = reconnects(rw.port(), "-tls1_2", 100, true);
    assert!(resumed >= 99, "session IDs: {resumed} of 100 resumed");
}

#[test]
fn instances_sharing_ticket_keys_resume_each_others_sessions_and_others_do_not() {
    let certs = temp_dir();
    let leaf = pki_leaf(certs.path());
    let keys: PathBuf = write_file(
        certs.path(),
        "ticket.keys",
        format!("# fleet keys\n{}\n\n{}\n", key_line(1), key_line(2)),
    );
    // The second instance encrypts with key 2 but still reads key 1's tickets.
    let keys_b = write_file(
        certs.path(),
        "ticket-b.keys",
        format!("{}\n{}\n", key_line(2), key_line(1)),
    );
    let other = write_file(certs.path(), "other.keys", key_line(9) + "\n");
    let table = |p: &Path| format!("\n[tls]\nticket_keys = {:?}\n", p.to_str().unwrap());
    let a = Ringway::builder(config(1, &leaf, &table(&keys))).start();
    let b = Ringway::builder(config(1, &leaf, &table(&keys_b))).start();
    let c = Ringway::builder(config(1, &leaf, &table(&other))).start();

    for version in ["-tls1_3", "-tls1_2"] {
        let dir = temp_dir();
        let session = dir.path().join("s.pem");
        assert_eq!(connect(a.port(), version, &session, false), Some(false));
        for i in 0..20 {
            let port = if i % 2 == 0 { b.port() } else { a.port() };
            assert_eq!(
                connect(port, version, &session, false),
                Some(true),
                "{version}: reconnect {i} to the other instance did not resume"
            );
        }
        // Another fleet's keys: a full handshake, not an error.
        assert_eq!(
            connect(c.port(), version, &session, false),
            Some(false),
            "{version}: an instance with different keys must not resume (nor fail)"
        );
    }
}

#[test]
fn ticket_keys_are_re_read_on_reload() {
    let certs = temp_dir();
    let leaf = pki_leaf(certs.path());
    let keys = write_file(certs.path(), "ticket.keys", key_line(1) + "\n");
    let template = config(
        1,
        &leaf,
        &format!("\n[tls]\nticket_keys = {:?}\n", keys.to_str().unwrap()),
    );
    let rw = Ringway::builder(template.clone()).start();
    let dir = temp_dir();
    let session = dir.path().join("s.pem");
    assert_eq!(connect(rw.port(), "-tls1_3", &session, false), Some(false));
    assert_eq!(connect(rw.port(), "-tls1_3", &session, false), Some(true));
    // New keys, same file: after the reload the old tickets no longer open.
    let session_old = dir.path().join("old.pem");
    std::fs::copy(&session, &session_old).unwrap();
    write_file(certs.path(), "ticket.keys", key_line(5) + "\n");
    rw.signal(libc::SIGHUP);
    assert!(
        rw.wait_log("configuration reloaded", 1, WAIT),
        "{}",
        rw.log()
    );
    assert_eq!(
        connect(rw.port(), "-tls1_3", &session_old, false),
        Some(false)
    );
    // A broken key file refuses the reload and the running keys keep serving.
    write_file(certs.path(), "ticket.keys", "not base64!\n");
    rw.signal(libc::SIGHUP);
    assert!(rw.wait_log("reload refused", 1, WAIT), "{}", rw.log());
    assert_eq!(
        connect(rw.port(), "-tls1_3", &session_old, false),
        Some(true)
    );
}

#[test]
fn check_refuses_missing_malformed_and_empty_key_files() {
    let dir = temp_dir();
    let leaf = pki_leaf(dir.path());
    let short = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode([3u8; 48])
    };
    let cases: [(&str, Option<String>, &str); 4] = [
        ("missing.keys", None, "is not a readable file"),
        (
            "short.keys",
            Some(format!("{}\n{short}\n", key_line(1))),
            "line 2: a key must be the base64 of exactly 80 bytes, found 48 bytes",
        ),
        ("bad.keys", Some("%%%\n".into()), "line 1: not base64"),
        ("empty.keys", Some("# none yet\n\n".into()), "no key found"),
    ];
    for (name, content, want) in cases {
        if let Some(text) = &content {
            write_file(dir.path(), name, text);
        }
        let cfg = config(1, &leaf, &format!("\n[tls]\nticket_keys = \"{name}\"\n"))
            .replace("@PORT@", "1")
            .replace("@DIR@", dir.path().to_str().unwrap());
        let path = write_file(dir.path(), "ringway.toml", &cfg);
        let (status, out, err) = run_cli(&["check", "--config", path.to_str().unwrap()]);
        let text = format!("{out}{err}");
        assert_eq!(status.code(), Some(1), "{name}: {text}");
        let line = cfg
            .lines()
            .position(|l| l.starts_with("ticket_keys"))
            .unwrap()
            + 1;
        assert!(
            text.contains(&format!("ringway.toml:{line}:15: ")) && text.contains(want),
            "{name}: want {want:?} at line {line}, got:\n{text}"
        );
    }
    // A good file and a session cache size pass.
    write_file(dir.path(), "good.keys", key_line(1) + "\n");
    let cfg = config(
        1,
        &leaf,
        "\n[tls]\nticket_keys = \"good.keys\"\nsession_cache = 50000\n",
    )
    .replace("@PORT@", "1")
    .replace("@DIR@", dir.path().to_str().unwrap());
    let path = write_file(dir.path(), "ringway.toml", &cfg);
    let (status, out, err) = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(status.code(), Some(0), "{out}{err}");
}
