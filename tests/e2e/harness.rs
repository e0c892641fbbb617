//! Test harness: a guarded ringway process, config files in a temp dir, free ports, log
//! capture, and the CLI runner. Raw HTTP/1.1 helpers (send bytes, read a response with a
//! deadline) are in `harness::raw_http`, WebSocket client helpers in `harness::ws_client`, a
//! DNS probe in `harness::dns`; these are re-exported here, so tests import everything with
//! `use crate::harness::*`. Network namespaces (the fleet test's data centre) are
//! `harness::netns`.

mod dns;
pub mod netns;
mod raw_http;
mod ws_client;

pub use dns::*;
pub use raw_http::*;
pub use ws_client::*;

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Upper bound for any single wait in the suite: a hung proxy fails the test instead of CI.
pub const WAIT: Duration = Duration::from_secs(10);
/// How often polling loops look again.
const POLL: Duration = Duration::from_millis(10);

/// The sample key from RFC 6455 and its accept value.
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringway")
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------------------------
// Ports and files

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port on 127.0.0.1 that was free a moment ago and that no other test in this process got.
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        if HANDED_OUT.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// Writes `content` at `dir/rel`, creating parent directories.
pub fn write_file(dir: &Path, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(&path, content).unwrap();
    path
}

pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("rw")
        .tempdir()
        .expect("create temp dir")
}

/// A temp dir with `www/index.html` (the usual doc_root).
pub fn site() -> TempDir {
    let dir = temp_dir();
    write_file(dir.path(), "www/index.html", "<h1>index</h1>\n");
    dir
}

/// `[runtime]`, `[timeouts]` and one listener named "main" on `@PORT@`. Tests append the rest.
pub fn base_config(cores: usize) -> String {
    base_config_timeouts(cores, &[])
}

/// Like `base_config`, with some `[timeouts]` set. `header` and `keepalive` default to 60 s
/// (longer than any wait in the suite), so a connection closed within a test's bounded wait
/// was closed on purpose, not by an idle timer.
pub fn base_config_timeouts(cores: usize, timeouts: &[(&str, &str)]) -> String {
    let mut table: Vec<(&str, &str)> = vec![("header", "60s"), ("keepalive", "60s")];
    for (key, value) in timeouts {
        match table.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => table.push((key, value)),
        }
    }
    let timeouts: String = table
        .iter()
        .map(|(k, v)| format!("{k} = \"{v}\"\n"))
        .collect();
    format!(
        r#"[runtime]
cores = {cores}
pin = false

[timeouts]
{timeouts}
[[listener]]
name = "main"
address = "127.0.0.1:@PORT@"
"#
    )
}

/// The suite's common site: `head` (a `base_config`, with any extra sections), then backend
/// `chat` with `servers` (and `backend_extra` lines), then vhost `site` (every domain, listener
/// `main`, doc root `www`) with `/chat/` proxied to it; `tail` follows (more routes or
/// sections). `ws_site` adds a static context for the rest.
pub fn chat_site(head: &str, servers: &[&str], backend_extra: &str, tail: &str) -> String {
    let servers: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        r#"{head}
[[backend]]
name = "chat"
servers = [{}]
{backend_extra}
[[vhost]]
name = "site"
domains = ["*"]
listeners = ["main"]
doc_root = "www"

[[vhost.websocket]]
uri = "/chat/"
backend = "chat"
{tail}"#,
        servers.join(", ")
    )
}

/// `chat_site` with one server and a static context for everything but `/chat/`.
pub fn ws_site(head: &str, server: &str) -> String {
    chat_site(
        head,
        &[server],
        "",
        "\n[[vhost.context]]\nuri = \"/\"\nhandler = \"static\"\n",
    )
}

/// Headless Chromium loads `url` (with `extra` flags) using the profile folder `profile`, runs
/// its scripts, and returns the DOM it dumps.
pub fn chromium_dump_dom(profile: &std::path::Path, url: &str, extra: &[&str]) -> String {
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
        ])
        .args(extra)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium (apt-get install chromium)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes ANSI colour sequences (in case the logger colours its output).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The ringway process

/// A running ringway, killed on drop; its stderr goes to `ringway.log` in its temp dir and is
/// printed when the owning test panics.
pub struct Ringway {
    child: Child,
    ports: Vec<u16>,
    log_path: PathBuf,
    /// Holds the config, doc roots and log until the process is gone.
    _dir: TempDir,
}

pub struct RingwayBuilder {
    config: String,
    dir: Option<TempDir>,
    log_level: Option<String>,
    env: Vec<(String, String)>,
    nofile: Option<u64>,
}

impl Ringway {
    /// `config` is a template: `@PORT@` (and `@PORT1@`, ...) become free ports, `@DIR@` the
    /// temp dir (absolute). The config file is `DIR/ringway.toml`.
    pub fn builder(config: impl Into<String>) -> RingwayBuilder {
        RingwayBuilder {
            config: config.into(),
            dir: None,
            log_level: None,
            env: Vec::new(),
            nofile: None,
        }
    }

    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    pub fn port_n(&self, i: usize) -> u16 {
        self.ports[i]
    }

    /// CPU time (user + system, all threads) the process has used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("ringway's /proc/PID/stat");
        // Fields after the command name (which is in parentheses and may hold spaces):
        // state is field 3, utime field 14, stime field 15.
        let rest = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        // USER_HZ, the unit of these fields, is 100 on every Linux architecture Ringway runs on.
        Duration::from_millis(ticks * 10)
    }

    /// Resident memory of the process now (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("ringway's /proc/PID/status")
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS")
    }

    /// Everything ringway wrote on stderr so far, colour codes removed.
    pub fn log(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(
            &fs::read(&self.log_path).unwrap_or_default(),
        ))
    }

    pub fn conn(&self) -> Conn {
        Conn::open(self.port())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temp dir the config, doc roots and log live in.
    pub fn dir_path(&self) -> &Path {
        self._dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("ringway.toml")
    }

    /// Fills a config template with this instance's ports and dir (as `start` did).
    pub fn render(&self, template: &str) -> String {
        let mut text = template.replace("@DIR@", self._dir.path().to_str().unwrap());
        for (i, port) in self.ports.iter().enumerate().rev() {
            text = text.replace(&port_placeholder(i), &port.to_string());
        }
        text
    }

    /// Rewrites the config file from `template` (same ports and dir).
    pub fn rewrite_config(&self, template: &str) {
        fs::write(self.config_path(), self.render(template)).unwrap();
    }

    /// Sends `signal` (libc::SIGHUP, ...) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill with our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.child.id());
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL);
        }
    }

    /// Waits until the log holds `needle` at least `n` times.
    pub fn wait_log(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().matches(needle).count() >= n)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.port(), path)
    }
}

impl RingwayBuilder {
    pub fn dir(mut self, dir: TempDir) -> Self {
        self.dir = Some(dir);
        self
    }

    /// An environment variable for the Ringway process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Starts Ringway with RLIMIT_NOFILE lowered to `n` (soft and hard).
    pub fn nofile(mut self, n: u64) -> Self {
        self.nofile = Some(n);
        self
    }

    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = Some(level.to_string());
        self
    }

    pub fn start(self) -> Ringway {
        let dir = self.dir.unwrap_or_else(temp_dir);
        let nports = (0..8)
            .take_while(|i| self.config.contains(&port_placeholder(*i)))
            .count();
        let config_path = dir.path().join("ringway.toml");
        let log_path = dir.path().join("ringway.log");
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let ports: Vec<u16> = (0..nports).map(|_| free_port()).collect();
            let mut text = self.config.replace("@DIR@", dir.path().to_str().unwrap());
            // Longest placeholders first so "@PORT1@" is not eaten by "@PORT@"-like rules.
            for (i, port) in ports.iter().enumerate().rev() {
                text = text.replace(&port_placeholder(i), &port.to_string());
            }
            fs::write(&config_path, &text).unwrap();
            let log = fs::File::create(&log_path).unwrap();
            let mut cmd = Command::new(bin());
            cmd.arg("--config").arg(&config_path);
            if let Some(level) = &self.log_level {
                cmd.arg("--log-level").arg(level);
            }
            cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
            if let Some(n) = self.nofile {
                use std::os::unix::process::CommandExt;
                // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child here.
                unsafe {
                    cmd.pre_exec(move || {
                        let limit = libc::rlimit {
                            rlim_cur: n,
                            rlim_max: n,
                        };
                        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                            Ok(())
                        } else {
                            Err(io::Error::last_os_error())
                        }
                    });
                }
            }
            cmd.env_remove("RUST_LOG")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            let mut child = cmd.spawn().expect("spawn ringway");
            let deadline = Instant::now() + WAIT;
            // Ready means Ringway's own start-up line: every listener is bound. A connect to
            // the port is not proof: after free_port() released it, another test's server may
            // have taken it, and then Ringway's bind fails while that server answers the probe
            // (CI saw tests talk to a stranger this way: resets and lost responses).
            let outcome = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Err(status);
                }
                if read_lossy(&log_path).contains("ringway ready") {
                    break Ok(());
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "ringway not ready on ports {ports:?} within {WAIT:?}\nconfig:\n{text}\nlog:\n{}",
                        read_lossy(&log_path)
                    );
                }
                thread::sleep(POLL);
            };
            match outcome {
                Ok(()) => {
                    return Ringway {
                        child,
                        ports,
                        log_path,
                        _dir: dir,
                    }
                }
                Err(status) => {
                    last_log = read_lossy(&log_path);
                    let lower = last_log.to_lowercase();
                    if lower.contains("in use") || lower.contains("os error 98") {
                        continue; // a port was taken between free_port() and bind: retry
                    }
                    panic!("ringway exited at start ({status})\nconfig:\n{text}\nlog:\n{last_log}");
                }
            }
        }
        panic!("ringway could not bind a free port after 5 attempts\nlog:\n{last_log}");
    }
}

fn port_placeholder(i: usize) -> String {
    if i == 0 {
        "@PORT@".to_string()
    } else {
        format!("@PORT{i}@")
    }
}

fn read_lossy(path: &Path) -> String {
    strip_ansi(&String::from_utf8_lossy(
        &fs::read(path).unwrap_or_default(),
    ))
}

impl Drop for Ringway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- ringway log ({}) ----\n{}\n---- end of ringway log ----",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// Runs the binary with `args` (bounded by WAIT), returning (exit status, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (ExitStatus, String, String) {
    let dir = temp_dir();
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(bin())
        .args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn ringway");
    let mut status = None;
    let finished = wait_until(WAIT, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !finished {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "`ringway {}` did not exit within {WAIT:?}\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            read_lossy(&out_path),
            read_lossy(&err_path)
        );
    }
    (
        status.unwrap(),
        read_lossy(&out_path),
        read_lossy(&err_path),
    )
}
