//! Test harness: a guarded ringway process, config files in a temp dir, free ports, log
//! capture, and raw HTTP/1.1 helpers (send bytes, read a response with a deadline).

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Response as WsResponse;
use tungstenite::{Message, WebSocket};

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

// ---------------------------------------------------------------------------------------------
// Raw HTTP

/// A parsed HTTP head: first line and headers in order.
#[derive(Debug, Clone)]
pub struct Head {
    pub first_line: String,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl Head {
    pub fn parse(text: &str) -> Head {
        let mut lines = text.split("\r\n");
        let first_line = lines.next().unwrap_or_default().to_string();
        let headers = lines
            .filter(|l| !l.is_empty())
            .map(|l| match l.split_once(':') {
                Some((k, v)) => (k.to_string(), v.trim().to_string()),
                None => (l.to_string(), String::new()),
            })
            .collect();
        Head {
            first_line,
            headers,
            text: text.to_string(),
        }
    }

    /// First value of header `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        header_values(&self.headers, name).next()
    }

    pub fn get_all(&self, name: &str) -> Vec<&str> {
        header_values(&self.headers, name).collect()
    }
}

/// The values of header `name` (case-insensitive) in a parsed header list, in order.
pub fn header_values<'a, 'n>(
    headers: &'a [(String, String)],
    name: &'n str,
) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
    headers
        .iter()
        .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub head: Head,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.get(name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into_owned();
        write!(f, "{}\r\n\r\n{}", self.head.text, body)
    }
}

/// A request built header by header, serialized verbatim.
#[derive(Debug, Clone)]
pub struct Req {
    pub request_line: String,
    pub headers: Vec<(String, String)>,
}

impl Req {
    pub fn get(path: &str, host: &str) -> Req {
        Req {
            request_line: format!("GET {path} HTTP/1.1"),
            headers: vec![("Host".into(), host.into())],
        }
    }

    /// A valid WebSocket upgrade request (RFC 6455 sample key).
    pub fn upgrade(path: &str, host: &str) -> Req {
        Req::get(path, host)
            .set("Upgrade", "websocket")
            .set("Connection", "Upgrade")
            .set("Sec-WebSocket-Key", WS_KEY)
            .set("Sec-WebSocket-Version", "13")
    }

    /// Replaces every header `name` with one `name: value` (appended if absent).
    pub fn set(mut self, name: &str, value: &str) -> Req {
        match self
            .headers
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some(i) => {
                self.headers[i] = (name.into(), value.into());
                let mut j = i + 1;
                while j < self.headers.len() {
                    if self.headers[j].0.eq_ignore_ascii_case(name) {
                        self.headers.remove(j);
                    } else {
                        j += 1;
                    }
                }
            }
            None => self.headers.push((name.into(), value.into())),
        }
        self
    }

    pub fn add(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn remove(mut self, name: &str) -> Req {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.request_line);
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

enum ReadEnd {
    Closed,
    TimedOut,
}

/// A raw client connection with a read buffer (so pipelined responses and bytes after a 101
/// are not lost between calls).
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(port: u16) -> Conn {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, WAIT)
            .unwrap_or_else(|e| panic!("connect to ringway {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, data: impl AsRef<[u8]>) {
        self.stream
            .write_all(data.as_ref())
            .unwrap_or_else(|e| panic!("write to ringway: {e}"));
    }

    /// Sends, ignoring errors (the peer may already have closed).
    pub fn send_lossy(&mut self, data: impl AsRef<[u8]>) {
        let _ = self.stream.write_all(data.as_ref());
    }

    /// A second handle on the socket, to write from another thread while this one reads.
    pub fn writer(&self) -> TcpStream {
        self.stream.try_clone().expect("clone the client socket")
    }

    pub fn shutdown_write(&mut self) {
        self.stream.shutdown(Shutdown::Write).unwrap();
    }

    /// Reads more bytes into the buffer; Ok(n > 0), or why not.
    fn fill(&mut self, deadline: Instant) -> Result<usize, ReadEnd> {
        let mut tmp = [0u8; 65536];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(ReadEnd::TimedOut);
            }
            self.stream
                .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
                .unwrap();
            match self.stream.read(&mut tmp) {
                Ok(0) => return Err(ReadEnd::Closed),
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(n);
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => continue,
                    _ => return Err(ReadEnd::Closed), // reset: the peer closed
                },
            }
        }
    }

    /// Reads one response head (up to and including the blank line).
    pub fn try_head(&mut self, timeout: Duration) -> Result<Head, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return Ok(Head::parse(&text));
            }
            match self.fill(deadline) {
                Ok(_) => {}
                Err(ReadEnd::Closed) => {
                    return Err(format!(
                        "connection closed before a complete response head; got {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ))
                }
                Err(ReadEnd::TimedOut) => {
                    return Err(format!(
                        "no complete response head within {timeout:?}; got {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ))
                }
            }
        }
    }

    /// Reads a response (head and body framed by Content-Length / chunked / close).
    pub fn try_response(&mut self, timeout: Duration, to_head: bool) -> Result<Response, String> {
        let deadline = Instant::now() + timeout;
        let head = self.try_head(timeout)?;
        let status = parse_status(&head.first_line)
            .ok_or_else(|| format!("bad status line {:?}", head.first_line))?;
        let no_body = to_head || status / 100 == 1 || status == 204 || status == 304;
        let body = if no_body {
            Vec::new()
        } else if let Some(len) = head.get("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| format!("bad Content-Length {len:?}"))?;
            self.try_exact(len, deadline)?
        } else if head
            .get("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
        {
            self.try_chunked(deadline)?
        } else {
            self.try_until_closed(deadline)?
        };
        Ok(Response { status, head, body })
    }

    pub fn response(&mut self) -> Response {
        self.try_response(WAIT, false)
            .unwrap_or_else(|e| panic!("reading response: {e}"))
    }

    /// Reads the response to a HEAD request (never a body).
    pub fn head_response(&mut self) -> Response {
        self.try_response(WAIT, true)
            .unwrap_or_else(|e| panic!("reading HEAD response: {e}"))
    }

    fn try_exact(&mut self, n: usize, deadline: Instant) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            match self.fill(deadline) {
                Ok(_) => {}
                Err(ReadEnd::Closed) => {
                    return Err(format!(
                        "closed after {} of {n} expected bytes: {:?}",
                        self.buf.len(),
                        String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
                    ))
                }
                Err(ReadEnd::TimedOut) => {
                    return Err(format!(
                        "timed out after {} of {n} expected bytes: {:?}",
                        self.buf.len(),
                        String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
                    ))
                }
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads exactly `n` bytes within `timeout`, or says why not.
    pub fn try_read_exact(&mut self, n: usize, timeout: Duration) -> Result<Vec<u8>, String> {
        self.try_exact(n, Instant::now() + timeout)
    }

    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        self.try_exact(n, Instant::now() + WAIT)
            .unwrap_or_else(|e| panic!("reading {n} bytes: {e}"))
    }

    fn try_line(&mut self, deadline: Instant) -> Result<String, String> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            if self.fill(deadline).is_err() {
                return Err("closed or timed out inside chunked body".into());
            }
        }
    }

    fn try_chunked(&mut self, deadline: Instant) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let line = self.try_line(deadline)?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| format!("bad chunk size line {line:?}"))?;
            if size == 0 {
                // Trailers until the blank line.
                while !self.try_line(deadline)?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.try_exact(size, deadline)?);
            self.try_exact(2, deadline)?;
        }
    }

    fn try_until_closed(&mut self, deadline: Instant) -> Result<Vec<u8>, String> {
        loop {
            match self.fill(deadline) {
                Ok(_) => {}
                Err(ReadEnd::Closed) => return Ok(std::mem::take(&mut self.buf)),
                Err(ReadEnd::TimedOut) => {
                    return Err(format!(
                        "connection still open after the deadline; buffered {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ))
                }
            }
        }
    }

    /// Reads until the peer closes (EOF or reset) within `timeout`; returns the bytes read.
    pub fn read_until_closed(&mut self, timeout: Duration) -> Result<Vec<u8>, String> {
        self.try_until_closed(Instant::now() + timeout)
    }

    /// Asserts the peer closes within WAIT without sending anything more.
    pub fn assert_closed(&mut self, what: &str) {
        match self.read_until_closed(WAIT) {
            Ok(rest) => assert!(
                rest.is_empty(),
                "{what}: expected the connection to close with nothing more, got {:?}",
                String::from_utf8_lossy(&rest)
            ),
            Err(e) => panic!("{what}: expected the connection to be closed: {e}"),
        }
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn parse_status(line: &str) -> Option<u16> {
    let mut parts = line.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// One request on a fresh connection; returns the response.
pub fn request(port: u16, raw: impl AsRef<[u8]>) -> Response {
    let mut c = Conn::open(port);
    c.send(raw);
    c.response()
}

// ---------------------------------------------------------------------------------------------
// WebSocket client helpers

pub type Ws = WebSocket<TcpStream>;

/// WebSocket client handshake through ringway (tungstenite over a std TcpStream).
pub fn ws_connect(port: u16, req: impl IntoClientRequest) -> (Ws, WsResponse) {
    let stream = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), WAIT)
        .expect("connect to ringway");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    match tungstenite::client(req, stream) {
        Ok(pair) => pair,
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => panic!(
            "WebSocket handshake refused: {} body {:?}",
            resp.status(),
            resp.body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        ),
        Err(e) => panic!("WebSocket handshake failed: {e}"),
    }
}

/// Reads the next data message (skipping ping/pong), panicking on close or error.
pub fn ws_next(ws: &mut Ws) -> Message {
    loop {
        match ws.read() {
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
            Ok(m) => return m,
            Err(e) => panic!("WebSocket read failed: {e}"),
        }
    }
}

pub fn text_payload(n: usize) -> String {
    (0..n).map(|i| (b'a' + (i % 26) as u8) as char).collect()
}

pub fn binary_payload(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| ((i * 31 + 7) as u8) ^ ((i >> 8) as u8))
        .collect()
}

/// Text and binary messages of every interesting frame-length size must echo back intact,
/// then the close handshake must complete.
pub fn echo_all_sizes(ws: &mut Ws) {
    for n in [1usize, 125, 126, 65535, 65536, 1 << 20] {
        let text = text_payload(n);
        ws.send(Message::text(text.clone())).unwrap();
        match ws_next(ws) {
            Message::Text(t) => assert!(t.as_str() == text, "text echo of {n} bytes differs"),
            other => panic!("expected text echo of {n} bytes, got {other:?}"),
        }
        let bin = binary_payload(n);
        ws.send(Message::binary(bin.clone())).unwrap();
        match ws_next(ws) {
            Message::Binary(b) => assert!(b[..] == bin[..], "binary echo of {n} bytes differs"),
            other => panic!("expected binary echo of {n} bytes, got {other:?}"),
        }
    }
    ws_close(ws);
}

/// Client-initiated close handshake; the backend's Close must come back through the proxy.
pub fn ws_close(ws: &mut Ws) {
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(_)) => {}
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => return,
            Err(e) => panic!("close handshake did not complete: {e}"),
        }
    }
}

/// A masked client frame (FIN set) with a short payload (< 126 bytes).
pub fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// The unmasked server frame a backend sends for the same payload.
pub fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![0x80 | opcode, payload.len() as u8];
    f.extend_from_slice(payload);
    f
}
