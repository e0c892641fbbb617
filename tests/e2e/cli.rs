//! The command line: --help, --version, and `ringway check` reporting FILE:LINE:COL.

use std::path::Path;

use crate::harness::*;

/// A valid config using every documented form. Problems are made by textual replacement.
const GOOD: &str = r#"[runtime]
cores = 2
pin = false

[timeouts]
header = "10s"
keepalive = "60s"
connect = "500ms"
tunnel_idle = "1h"

[limits]
max_header_bytes = "32KiB"

[[listener]]
name = "main"
address = "127.0.0.1:18080"

[[listener]]
name = "v6"
address = "[::1]:18081"

[[backend]]
name = "chat"
servers = ["127.0.0.1:9001", "[::1]:9002"]

[[backend]]
name = "rooms"
servers = ["uds:///tmp/ringway-e2e-rooms.sock"]

[[vhost]]
name = "site"
domains = ["example.com", "*.example.com", "*"]
listeners = ["main", "v6"]
doc_root = "www"

[[vhost.websocket]]
uri = "/chat/"
backend = "chat"

[[vhost.websocket]]
uri = "exp:^/room/[0-9]+$"
backend = "rooms"

[[vhost.websocket]]
uri = "/exact"
backend = "rooms"

[[vhost.websocket]]
uri = "/direct/"
address = "127.0.0.1:9003"

[[vhost.context]]
uri = "/echo"
handler = "echo"

[[vhost.context]]
uri = "/api/"
handler = "proxy"
backend = "chat"

[[vhost.context]]
uri = "/"
handler = "static"
"#;

/// (what is replaced, by what, the token the problem must point at, a word its message names)
type Problem = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

const UNKNOWN_KEY: Problem = (
    "pin = false\n",
    "pin = false\ncolour = \"blue\"\n",
    "colour",
    Some("colour"),
);
const BAD_DURATION: Problem = (
    "header = \"10s\"",
    "header = \"10 parsecs\"",
    "\"10 parsecs\"",
    None,
);
const UNKNOWN_BACKEND: Problem = (
    "uri = \"/chat/\"\nbackend = \"chat\"",
    "uri = \"/chat/\"\nbackend = \"nope\"",
    "\"nope\"",
    Some("nope"),
);
const BAD_REGEX: Problem = (
    "uri = \"exp:^/room/[0-9]+$\"",
    "uri = \"exp:^/room/([0-9]+$\"",
    "\"exp:^/room/([0-9]+$\"",
    None,
);

/// 1-based line and column of the first occurrence of `token` in `text`.
fn locate(text: &str, token: &str) -> (usize, usize) {
    let at = text
        .find(token)
        .unwrap_or_else(|| panic!("{token:?} not in config"));
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = at - before.rfind('\n').map_or(0, |nl| nl + 1) + 1;
    (line, col)
}

/// Writes `text` as a config next to a `www` dir; returns its path (as a string).
fn write_config(dir: &Path, text: &str) -> String {
    std::fs::create_dir_all(dir.join("www")).unwrap();
    let path = dir.join("ringway.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Problems printed as `FILE:LINE:COL: message`: (line, col, message).
fn reported(stderr: &str, file: &str) -> Vec<(usize, usize, String)> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(file)?.strip_prefix(':'))
        .filter_map(|rest| {
            let mut parts = rest.splitn(3, ':');
            let line = parts.next()?.parse().ok()?;
            let col = parts.next()?.parse().ok()?;
            Some((line, col, parts.next()?.trim().to_string()))
        })
        .collect()
}

fn check_reports(problems: &[Problem]) {
    let mut text = GOOD.to_string();
    for (from, to, _, _) in problems {
        assert!(text.contains(from), "{from:?}");
        text = text.replacen(from, to, 1);
    }
    let dir = temp_dir();
    let file = write_config(dir.path(), &text);
    let (status, stdout, stderr) = run_cli(&["check", "--config", &file]);
    let numbered: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| format!("{:3} {l}\n", i + 1))
        .collect();
    let context = format!("config:\n{numbered}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(status.code(), Some(1), "exit status\n{context}");
    let got = reported(&stderr, &file);
    for (_, _, token, word) in problems {
        let (line, col) = locate(&text, token);
        let on_line: Vec<_> = got.iter().filter(|(l, _, _)| *l == line).collect();
        assert!(
            !on_line.is_empty(),
            "no problem reported at line {line} (for {token})\n{context}"
        );
        assert!(
            on_line.iter().any(|(_, c, _)| *c == col),
            "problem at line {line} should point at column {col} (where {token} starts)\n{context}"
        );
        if let Some(word) = word {
            assert!(
                on_line.iter().any(|(_, _, m)| m.contains(word)),
                "message at line {line} should name {word:?}\n{context}"
            );
        }
    }
    let expected_lines: Vec<usize> = problems.iter().map(|p| locate(&text, p.2).0).collect();
    for (line, col, msg) in &got {
        assert!(
            expected_lines.contains(line),
            "unexpected problem {line}:{col}: {msg}\n{context}"
        );
    }
}

#[test]
fn help_and_version_exit_0() {
    let (status, stdout, stderr) = run_cli(&["--help"]);
    assert!(status.success(), "--help: {status}\n{stdout}{stderr}");
    assert!(stdout.contains("--config"), "--help output:\n{stdout}");
    let (status, stdout, stderr) = run_cli(&["--version"]);
    assert!(status.success(), "--version: {status}\n{stdout}{stderr}");
    assert!(
        stdout.contains(env!("CARGO_PKG_VERSION")),
        "--version output: {stdout:?}"
    );
}

#[test]
fn check_accepts_good_config() {
    let dir = temp_dir();
    let file = write_config(dir.path(), GOOD);
    let (status, stdout, stderr) = run_cli(&["check", "--config", &file]);
    assert_eq!(
        status.code(),
        Some(0),
        "check of a valid config\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "want a one-line summary, got:\n{stdout}");
}

#[test]
fn check_reports_unknown_key() {
    check_reports(&[UNKNOWN_KEY]);
}

#[test]
fn check_reports_bad_duration() {
    check_reports(&[BAD_DURATION]);
}

#[test]
fn check_reports_unknown_backend() {
    check_reports(&[UNKNOWN_BACKEND]);
}

#[test]
fn check_reports_bad_regex() {
    check_reports(&[BAD_REGEX]);
}

#[test]
fn check_reports_every_problem_of_a_bad_config() {
    check_reports(&[UNKNOWN_KEY, BAD_DURATION, UNKNOWN_BACKEND, BAD_REGEX]);
}
