//! HTTP/1.1 backends for the reverse-proxy tests, std only: a listener (TCP v4, TCP v6 or Unix
//! socket) and a thread per connection that reads requests (Content-Length and chunked bodies,
//! de-chunked strictly), records them, and lets a handler write the response. Each backend
//! counts its accepts, serves `/healthz` from a switch, and can be stopped like a killed
//! process (listener closed, live connections cut).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{find, WAIT};

/// A backend socket gives up on a silent peer after this long (threads never leak forever).
const IDLE: Duration = Duration::from_secs(30);
/// How often a stopped-or-not accept loop looks at its flag.
const ACCEPT_POLL: Duration = Duration::from_millis(2);
const HEAD_MAX: usize = 64 * 1024;

/// One request as the backend received it.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// Index of the connection it came on (0 = the first this backend accepted).
    pub conn: usize,
    /// Position of the request on its connection (0 = first).
    pub nth_on_conn: usize,
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// The head as received, without the blank line.
    pub raw_head: String,
    /// The body, de-chunked when it came chunked.
    pub body: Vec<u8>,
    pub chunked: bool,
}

impl HttpRequest {
    pub fn get(&self, name: &str) -> Option<&str> {
        crate::harness::header_values(&self.headers, name).next()
    }

    pub fn get_all(&self, name: &str) -> Vec<&str> {
        crate::harness::header_values(&self.headers, name).collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

/// What the connection does after the handler wrote its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    KeepAlive,
    Close,
}

/// A connection as the handler sees it (it may read more, e.g. to wait for the peer to go).
pub trait Wire: Read + Write {}
impl<T: Read + Write> Wire for T {}

/// Writes the response for `req` on `w`; says whether the connection goes on.
pub type Handler = Arc<dyn Fn(&Backend, &HttpRequest, &mut dyn Wire) -> Then + Send + Sync>;

/// State shared by the backend handle, its accept loop and its connections.
pub struct Backend {
    pub name: String,
    accepted: AtomicUsize,
    /// Connections that ended (peer closed, handler closed, or cut).
    closed: AtomicUsize,
    requests: Mutex<Vec<HttpRequest>>,
    healthy: AtomicBool,
    /// (healthy answer?) for each `/healthz` probe answered, in order.
    probes: Mutex<Vec<bool>>,
    stopped: AtomicBool,
    listener_closed: AtomicBool,
    /// Cuts each live connection (for `stop`), by connection index. A connection removes and
    /// calls its own when it ends: the clone inside keeps the socket open until then.
    cutters: Mutex<BTreeMap<usize, Cutter>>,
    /// Opened by `release`; `/slow` requests wait for it.
    gate: (Mutex<bool>, Condvar),
}

impl Backend {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    /// Blocks until `release` is called (at most WAIT).
    pub fn wait_gate(&self) {
        let (lock, cv) = &self.gate;
        let deadline = Instant::now() + WAIT;
        let mut open = lock.lock().unwrap();
        while !*open {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            open = cv.wait_timeout(open, deadline - now).unwrap().0;
        }
    }
}

/// A running backend; `stop` (or drop) closes it.
pub struct HttpBackend {
    /// The address as written in ringway's config (`127.0.0.1:P`, `[::1]:P`, `uds:///p`).
    pub config_addr: String,
    pub state: Arc<Backend>,
}

impl HttpBackend {
    /// The standard backend: answers every request `200` with body `name` and `X-Backend:
    /// name`; `/slow` first waits for `release()`; `/healthz` answers 200 or 500 by `set_healthy`.
    pub fn named(name: &str) -> HttpBackend {
        Self::tcp("127.0.0.1:0", name, Arc::new(standard))
    }

    /// A TCP v4 backend with its own handler (`/healthz` is still answered by the backend).
    pub fn with_handler(
        name: &str,
        handler: impl Fn(&Backend, &HttpRequest, &mut dyn Wire) -> Then + Send + Sync + 'static,
    ) -> HttpBackend {
        Self::tcp("127.0.0.1:0", name, Arc::new(handler))
    }

    /// The standard backend on `[::1]`.
    pub fn named_v6(name: &str) -> HttpBackend {
        Self::tcp("[::1]:0", name, Arc::new(standard))
    }

    fn tcp(bind: &str, name: &str, handler: Handler) -> HttpBackend {
        let listener = TcpListener::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = new_state(name);
        let st = state.clone();
        thread::spawn(move || {
            accept_loop(
                &st,
                move || listener.accept().map(|(s, _)| s),
                |s: TcpStream| {
                    s.set_nonblocking(false)?;
                    s.set_nodelay(true)?;
                    s.set_read_timeout(Some(IDLE))?;
                    let cut = s.try_clone()?;
                    Ok((s, Box::new(move || drop(cut.shutdown(Shutdown::Both)))))
                },
                &handler,
            )
        });
        HttpBackend {
            config_addr: addr.to_string(),
            state,
        }
    }

    /// The standard backend on a Unix socket at `dir/file`.
    pub fn named_unix(dir: &Path, file: &str, name: &str) -> HttpBackend {
        let path = dir.join(file);
        let listener = UnixListener::bind(&path).unwrap_or_else(|e| panic!("bind {path:?}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let state = new_state(name);
        let st = state.clone();
        let handler: Handler = Arc::new(standard);
        thread::spawn(move || {
            accept_loop(
                &st,
                move || listener.accept().map(|(s, _)| s),
                |s: UnixStream| {
                    s.set_nonblocking(false)?;
                    s.set_read_timeout(Some(IDLE))?;
                    let cut = s.try_clone()?;
                    Ok((s, Box::new(move || drop(cut.shutdown(Shutdown::Both)))))
                },
                &handler,
            )
        });
        HttpBackend {
            config_addr: format!("uds://{}", path.display()),
            state,
        }
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Connections that have ended so far.
    pub fn closed(&self) -> usize {
        self.state.closed.load(Ordering::SeqCst)
    }

    /// Every request received so far (health probes included), in order.
    pub fn requests(&self) -> Vec<HttpRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Requests other than `/healthz` probes.
    pub fn served(&self) -> Vec<HttpRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path() != "/healthz")
            .collect()
    }

    pub fn served_count(&self) -> usize {
        self.served().len()
    }

    /// `/healthz` answers 200 (true) or 500 (false) from now on.
    pub fn set_healthy(&self, healthy: bool) {
        self.state.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Health probes answered so far, each `true` if it was answered 200.
    pub fn probes(&self) -> Vec<bool> {
        self.state.probes.lock().unwrap().clone()
    }

    /// Lets every `/slow` request (waiting or future) finish.
    pub fn release(&self) {
        let (lock, cv) = &self.state.gate;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }

    /// Like a killed process: the port refuses connections from now on and every live
    /// connection is cut. Returns when the listener is closed.
    pub fn stop(&self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        let closed =
            crate::harness::wait_until(WAIT, || self.state.listener_closed.load(Ordering::SeqCst));
        assert!(closed, "backend {} did not close its listener", self.name());
        for cut in self.state.cutters.lock().unwrap().values() {
            cut();
        }
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        self.release();
    }
}

fn new_state(name: &str) -> Arc<Backend> {
    Arc::new(Backend {
        name: name.to_string(),
        accepted: AtomicUsize::new(0),
        closed: AtomicUsize::new(0),
        requests: Mutex::new(Vec::new()),
        healthy: AtomicBool::new(true),
        probes: Mutex::new(Vec::new()),
        stopped: AtomicBool::new(false),
        listener_closed: AtomicBool::new(false),
        cutters: Mutex::new(BTreeMap::new()),
        gate: (Mutex::new(false), Condvar::new()),
    })
}

type Cutter = Box<dyn Fn() + Send>;
type Prepared<S> = io::Result<(S, Cutter)>;

fn accept_loop<S: Read + Write + Send + 'static>(
    state: &Arc<Backend>,
    mut accept: impl FnMut() -> io::Result<S>,
    prepare: impl Fn(S) -> Prepared<S>,
    handler: &Handler,
) {
    while !state.stopped.load(Ordering::SeqCst) {
        match accept() {
            Ok(stream) => {
                let Ok((stream, cut)) = prepare(stream) else {
                    continue;
                };
                let index = state.accepted.fetch_add(1, Ordering::SeqCst);
                state.cutters.lock().unwrap().insert(index, cut);
                let (st, h) = (state.clone(), handler.clone());
                thread::spawn(move || {
                    connection(stream, index, &st, &h);
                    // Close for real (FIN), then let the clone go.
                    if let Some(cut) = st.cutters.lock().unwrap().remove(&index) {
                        cut();
                    }
                    st.closed.fetch_add(1, Ordering::SeqCst);
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(ACCEPT_POLL),
            Err(_) => thread::sleep(ACCEPT_POLL),
        }
    }
    // `accept` owns the listener: dropping it closes the port before `stop` returns.
    drop(accept);
    state.listener_closed.store(true, Ordering::SeqCst);
}

/// Serves requests on one connection until the peer closes, a handler says Close, the request
/// is malformed (400 and close) or the backend is stopped.
fn connection<S: Read + Write>(mut s: S, conn: usize, state: &Backend, handler: &Handler) {
    let mut buf = Vec::new();
    let mut nth = 0;
    loop {
        let req = match read_request(&mut s, &mut buf, conn, nth) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(why) => {
                let body = format!("backend {}: bad request: {why}", state.name);
                let _ = respond(&mut s, 400, &[("Connection", "close")], body.as_bytes());
                return;
            }
        };
        nth += 1;
        if state.stopped.load(Ordering::SeqCst) {
            return;
        }
        let is_probe = req.path() == "/healthz";
        let close_requested = req
            .get_all("connection")
            .iter()
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
        {
            state.requests.lock().unwrap().push(req.clone());
        }
        let then = if is_probe {
            let healthy = state.is_healthy();
            let (status, body) = if healthy {
                (200, "ok")
            } else {
                (500, "unhealthy")
            };
            let _ = respond(&mut s, status, &[("Connection", "close")], body.as_bytes());
            state.probes.lock().unwrap().push(healthy);
            Then::Close
        } else {
            handler(state, &req, &mut s)
        };
        let _ = s.flush();
        if then == Then::Close || close_requested {
            return;
        }
    }
}

/// Reads one request (head and body). `Ok(None)`: the peer closed between requests.
fn read_request<S: Read>(
    s: &mut S,
    buf: &mut Vec<u8>,
    conn: usize,
    nth_on_conn: usize,
) -> Result<Option<HttpRequest>, String> {
    let end = loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            break end;
        }
        if buf.len() > HEAD_MAX {
            return Err("head too large".into());
        }
        if fill(s, buf)? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(format!(
                    "closed inside a head: {:?}",
                    String::from_utf8_lossy(buf)
                ))
            };
        }
    };
    let raw_head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end + 4);
    let mut lines = raw_head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("bad request line {request_line:?}"));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(format!("bad version in {request_line:?}"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            return Err(format!("bad header line {line:?}"));
        };
        if k.is_empty() || k.contains([' ', '\t']) || line.starts_with([' ', '\t']) {
            return Err(format!("bad header line {line:?}"));
        }
        headers.push((k.to_string(), v.trim().to_string()));
    }
    let mut req = HttpRequest {
        conn,
        nth_on_conn,
        method: method.to_string(),
        target: target.to_string(),
        headers,
        raw_head,
        body: Vec::new(),
        chunked: false,
    };
    let lengths = req.get_all("content-length");
    let te = req.get_all("transfer-encoding");
    if !lengths.is_empty() && !te.is_empty() {
        return Err("both Content-Length and Transfer-Encoding".into());
    }
    if !te.is_empty() {
        if te.len() != 1 || !te[0].eq_ignore_ascii_case("chunked") {
            return Err(format!("unexpected Transfer-Encoding {te:?}"));
        }
        req.chunked = true;
        req.body = read_chunked(s, buf)?;
    } else if !lengths.is_empty() {
        if lengths.len() != 1 {
            return Err(format!("several Content-Length fields {lengths:?}"));
        }
        let n: usize = lengths[0]
            .parse()
            .map_err(|_| format!("bad Content-Length {:?}", lengths[0]))?;
        while buf.len() < n {
            if fill(s, buf)? == 0 {
                return Err(format!("closed after {} of {n} body bytes", buf.len()));
            }
        }
        req.body = buf.drain(..n).collect();
    }
    Ok(Some(req))
}

fn fill<S: Read>(s: &mut S, buf: &mut Vec<u8>) -> Result<usize, String> {
    let mut tmp = [0u8; 65536];
    loop {
        match s.read(&mut tmp) {
            Ok(n) => {
                buf.extend_from_slice(&tmp[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Reset or idle timeout: treat as closed.
            Err(_) => return Ok(0),
        }
    }
}

fn line<S: Read>(s: &mut S, buf: &mut Vec<u8>) -> Result<String, String> {
    loop {
        if let Some(end) = find(buf, b"\r\n") {
            let l = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 2);
            return Ok(l);
        }
        if buf.len() > HEAD_MAX {
            return Err("chunk line too long".into());
        }
        if fill(s, buf)? == 0 {
            return Err("closed inside a chunked body".into());
        }
    }
}

/// Strict de-chunking: hex sizes only (extensions allowed), CRLF after each chunk, trailers.
fn read_chunked<S: Read>(s: &mut S, buf: &mut Vec<u8>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let size_line = line(s, buf)?;
        let size = size_line.split(';').next().unwrap_or_default();
        if size.is_empty() || size.len() > 15 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("bad chunk size line {size_line:?}"));
        }
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            while !line(s, buf)?.is_empty() {}
            return Ok(body);
        }
        while buf.len() < size + 2 {
            if fill(s, buf)? == 0 {
                return Err("closed inside a chunk".into());
            }
        }
        if &buf[size..size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        body.extend(buf.drain(..size));
        buf.drain(..2);
    }
}

/// Writes a complete response with `Content-Length` (reason phrase from the status).
pub fn respond(
    w: &mut dyn Write,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut out = head(status, headers);
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    w.write_all(&out)
}

/// A status line and headers, without the blank line.
pub fn head(status: u16, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.into_bytes()
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

/// The standard handler: 200 with the backend's name (HEAD: headers only).
pub fn standard(b: &Backend, req: &HttpRequest, w: &mut dyn Wire) -> Then {
    if req.path() == "/slow" {
        b.wait_gate();
    }
    answer_named(b, req, w)
}

/// `200`, `X-Backend: <name>`, body `<name>` (no body for HEAD).
pub fn answer_named(b: &Backend, req: &HttpRequest, w: &mut dyn Wire) -> Then {
    let ok = if req.method == "HEAD" {
        let mut out = head(200, &[("X-Backend", &b.name)]);
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", b.name.len()).as_bytes());
        w.write_all(&out)
    } else {
        respond(w, 200, &[("X-Backend", &b.name)], b.name.as_bytes())
    };
    if ok.is_ok() {
        Then::KeepAlive
    } else {
        Then::Close
    }
}

/// FNV-1a 64: a digest of request bodies that the test and the backend both compute.
pub fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `len=<n> fnv=<hex>`: what the digest handler answers for a body.
pub fn digest_line(data: &[u8]) -> String {
    format!("len={} fnv={:016x}", data.len(), fnv1a(data))
}

/// Handler that answers the digest of the (de-chunked) request body, with how it came framed.
pub fn digest(b: &Backend, req: &HttpRequest, w: &mut dyn Wire) -> Then {
    let framing = if req.chunked { "chunked" } else { "length" };
    let body = digest_line(&req.body);
    match respond(
        w,
        200,
        &[("X-Backend", &b.name), ("X-Framing", framing)],
        body.as_bytes(),
    ) {
        Ok(()) => Then::KeepAlive,
        Err(_) => Then::Close,
    }
}
