//! Helpers for the loader's tests: a config from lines, its problems as `(line, col, message)`,
//! and the valid configs the tests extend (`with`, `FULL`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::load_str;
use crate::config::types::Config;

/// A fresh directory holding an empty `www/`, removed on drop.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ringway-load-{}-{n}", std::process::id()));
        std::fs::create_dir_all(dir.join("www")).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Joins lines with '\n', so line N of the config is `lines[N - 1]`.
pub(super) fn text(lines: &[&str]) -> String {
    lines.join("\n")
}

pub(super) fn ok(lines: &[&str]) -> (Config, TempDir) {
    let dir = TempDir::new();
    match load_str(&text(lines), &dir.0) {
        Ok(c) => (c, dir),
        Err(problems) => panic!("unexpected problems: {problems:#?}"),
    }
}

/// The problems, as `(line, col, message)`.
pub(super) fn problems(lines: &[&str]) -> Vec<(usize, usize, String)> {
    let dir = TempDir::new();
    match load_str(&text(lines), &dir.0) {
        Ok(_) => panic!("expected problems"),
        Err(ps) => ps.into_iter().map(|p| (p.line, p.col, p.message)).collect(),
    }
}

/// Asserts exactly one problem, at `line:col`, whose message contains `needle`.
pub(super) fn one_problem(lines: &[&str], line: usize, col: usize, needle: &str) {
    let ps = problems(lines);
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert_eq!((ps[0].0, ps[0].1), (line, col), "{ps:#?}");
    assert!(ps[0].2.contains(needle), "{:?} lacks {needle:?}", ps[0].2);
}

pub(super) const LISTENER: [&str; 3] = [
    "[[listener]]",
    "name = \"main\"",
    "address = \"127.0.0.1:8080\"",
];

/// A valid config followed by `extra` lines (which start at line 7).
pub(super) fn with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut lines = LISTENER.to_vec();
    lines.extend(["[[vhost]]", "name = \"site\"", "domains = [\"*\"]"]);
    lines.extend(extra);
    lines
}

pub(super) const FULL: &[&str] = &[
    "[runtime]",
    "cores = 2",
    "pin = false",
    "max_connections = 1000",
    "",
    "[[runtime.core]]",
    "id = 1",
    "max_connections = 500",
    "",
    "[timeouts]",
    "header = \"500ms\"",
    "keepalive = \"5m\"",
    "connect = \"3s\"",
    "tunnel_idle = \"2h\"",
    "",
    "[limits]",
    "max_header_bytes = \"64KiB\"",
    "",
    "[[listener]]",
    "name = \"main\"",
    "address = \"127.0.0.1:8080\"",
    "",
    "[[listener]]",
    "name = \"v6\"",
    "address = \"[::1]:8081\"",
    "",
    "[[backend]]",
    "name = \"chat\"",
    "servers = [\"127.0.0.1:9001\", \"[::1]:9002\", \"uds:///run/chat.sock\"]",
    "",
    "[[backend]]",
    "name = \"api\"",
    "servers = [{ address = \"127.0.0.1:7000\", weight = 3 }, \"127.0.0.1:7001\"]",
    "",
    "[[vhost]]",
    "name = \"site\"",
    "domains = [\"Example.COM\", \"*.example.com\", \"*\"]",
    "listeners = [\"main\"]",
    "doc_root = \"www\"",
    "",
    "[[vhost.websocket]]",
    "uri = \"/chat/\"",
    "backend = \"chat\"",
    "",
    "[[vhost.websocket]]",
    "uri = \"exp:^/room/[0-9]+$\"",
    "address = \"127.0.0.1:9100\"",
    "",
    "[[vhost.context]]",
    "uri = \"/echo\"",
    "handler = \"echo\"",
    "",
    "[[vhost.context]]",
    "uri = \"/api/\"",
    "handler = \"proxy\"",
    "backend = \"api\"",
    "",
    "[[vhost.context]]",
    "uri = \"/files/\"",
    "handler = \"static\"",
];
