//! Backends started by the tests, as threads in the test process: a tungstenite WebSocket echo
//! server (TCP v4, TCP v6, Unix socket) and a scripted raw backend that records every byte.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::handshake::derive_accept_key;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::Message;

use crate::harness::{find, Head};

/// Backend sockets give up on a silent peer after this long (threads never leak forever).
const BACKEND_IDLE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// WebSocket echo

#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// Request target as received, e.g. "/chat/room?x=1".
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl SeenRequest {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct EchoState {
    requests: Mutex<Vec<SeenRequest>>,
}

/// A tungstenite echo server; one thread per connection. Echoes text and binary messages.
pub struct EchoBackend {
    /// The address as written in ringway's config (`127.0.0.1:P`, `[::1]:P`, `uds:///p`).
    pub config_addr: String,
    state: Arc<EchoState>,
}

impl EchoBackend {
    pub fn tcp_v4() -> EchoBackend {
        Self::tcp("127.0.0.1:0", None)
    }

    pub fn tcp_v6() -> EchoBackend {
        Self::tcp("[::1]:0", None)
    }

    /// Echo backend that answers `Sec-WebSocket-Protocol: <protocol>` when it was offered.
    pub fn tcp_v4_with_subprotocol(protocol: &str) -> EchoBackend {
        Self::tcp("127.0.0.1:0", Some(protocol.to_string()))
    }

    fn tcp(bind: &str, subprotocol: Option<String>) -> EchoBackend {
        let listener = TcpListener::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(EchoState::default());
        let st = state.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                stream.set_read_timeout(Some(BACKEND_IDLE)).unwrap();
                stream.set_nodelay(true).unwrap();
                let (st, sp) = (st.clone(), subprotocol.clone());
                thread::spawn(move || echo_connection(stream, st, sp));
            }
        });
        EchoBackend {
            config_addr: addr.to_string(),
            state,
        }
    }

    /// Echo backend on a Unix socket at `dir/name`.
    pub fn unix(dir: &Path, name: &str) -> EchoBackend {
        let path = dir.join(name);
        let listener = UnixListener::bind(&path).unwrap_or_else(|e| panic!("bind {path:?}: {e}"));
        let state = Arc::new(EchoState::default());
        let st = state.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                stream.set_read_timeout(Some(BACKEND_IDLE)).unwrap();
                let st = st.clone();
                thread::spawn(move || echo_connection(stream, st, None));
            }
        });
        EchoBackend {
            config_addr: format!("uds://{}", path.display()),
            state,
        }
    }

    /// Handshake requests seen so far, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn targets(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.target).collect()
    }
}

// The callback's error type is tungstenite's, not ours to shrink.
#[allow(clippy::result_large_err)]
fn echo_connection<S: Read + Write>(stream: S, state: Arc<EchoState>, subprotocol: Option<String>) {
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        state.requests.lock().unwrap().push(SeenRequest {
            target: req.uri().to_string(),
            headers,
        });
        if let Some(p) = &subprotocol {
            let offered = req
                .headers()
                .get_all("sec-websocket-protocol")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|o| o.trim() == p);
            if offered {
                resp.headers_mut()
                    .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
            }
        }
        Ok(resp)
    };
    let Ok(mut ws) = tungstenite::accept_hdr(stream, callback) else {
        return;
    };
    loop {
        match ws.read() {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.send(m).is_err() {
                    return;
                }
            }
            Ok(_) => {} // ping/pong/close are answered by tungstenite
            Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scripted raw backend

/// What the raw backend answers once it has read a request head.
#[derive(Debug, Clone)]
pub enum Reply {
    /// These bytes, verbatim.
    Raw(Vec<u8>),
    /// A 101 built from the request's key.
    Switch(Switch),
}

#[derive(Debug, Clone)]
pub struct Switch {
    /// Send the correct Sec-WebSocket-Accept (else a wrong one).
    pub correct_accept: bool,
    pub upgrade: Option<String>,
    pub connection: Option<String>,
    pub extra: Vec<(String, String)>,
}

impl Switch {
    pub fn valid() -> Switch {
        Switch {
            correct_accept: true,
            upgrade: Some("websocket".into()),
            connection: Some("Upgrade".into()),
            extra: Vec::new(),
        }
    }

    fn render(&self, head: &Head) -> Vec<u8> {
        let key = head.get("sec-websocket-key").unwrap_or_default();
        let accept = if self.correct_accept {
            derive_accept_key(key.as_bytes())
        } else {
            derive_accept_key(b"not the key that was sent")
        };
        let mut out = String::from("HTTP/1.1 101 Switching Protocols\r\n");
        if let Some(u) = &self.upgrade {
            out.push_str(&format!("Upgrade: {u}\r\n"));
        }
        if let Some(c) = &self.connection {
            out.push_str(&format!("Connection: {c}\r\n"));
        }
        out.push_str(&format!("Sec-WebSocket-Accept: {accept}\r\n"));
        for (k, v) in &self.extra {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// What the raw backend does after its reply.
#[derive(Debug, Clone)]
pub enum After {
    /// Record everything until EOF.
    Record,
    /// Record until EOF, then send these bytes and close.
    ByeAfterEof(Vec<u8>),
    /// Send these bytes right away, then record until EOF.
    SendThenRecord(Vec<u8>),
}

/// One connection the raw backend accepted.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The request head (without the blank line), empty if none was complete.
    pub head: String,
    /// Every byte received after the head.
    pub rest: Vec<u8>,
    /// The peer closed (EOF or error) and the backend is done with this connection.
    pub closed: bool,
}

impl Record {
    pub fn head(&self) -> Head {
        Head::parse(&self.head)
    }
}

#[derive(Default)]
struct RawState {
    conns: Mutex<Vec<Record>>,
    changed: Condvar,
    accepted: AtomicUsize,
}

/// A TCP backend on 127.0.0.1 that reads a head, answers a script and records all bytes.
pub struct RawBackend {
    pub port: u16,
    state: Arc<RawState>,
}

impl RawBackend {
    pub fn start(reply: Reply, after: After) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(RawState::default());
        let st = state.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                st.accepted.fetch_add(1, Ordering::SeqCst);
                let (st, reply, after) = (st.clone(), reply.clone(), after.clone());
                thread::spawn(move || raw_connection(stream, st, reply, after));
            }
        });
        RawBackend { port, state }
    }

    pub fn config_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Waits until `n` connections have a complete head recorded.
    pub fn wait_heads(&self, n: usize, timeout: Duration) -> bool {
        self.wait(timeout, |c| c.len() >= n)
    }

    /// Waits until connection `i` is finished (peer closed).
    pub fn wait_closed(&self, i: usize, timeout: Duration) -> bool {
        self.wait(timeout, |c| c.get(i).is_some_and(|r| r.closed))
    }

    pub fn record(&self, i: usize) -> Record {
        self.state.conns.lock().unwrap()[i].clone()
    }

    fn wait(&self, timeout: Duration, cond: impl Fn(&Vec<Record>) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut conns = self.state.conns.lock().unwrap();
        loop {
            if cond(&conns) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            conns = self
                .state
                .changed
                .wait_timeout(conns, deadline - now)
                .unwrap()
                .0;
        }
    }
}

fn raw_connection(mut s: TcpStream, state: Arc<RawState>, reply: Reply, after: After) {
    s.set_read_timeout(Some(BACKEND_IDLE)).unwrap();
    s.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    let end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end;
        }
        match s.read(&mut tmp) {
            Ok(n) if n > 0 => buf.extend_from_slice(&tmp[..n]),
            _ => return, // closed before a complete head: nothing to record
        }
    };
    let head_text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let rest = buf[end + 4..].to_vec();
    let index = {
        let mut conns = state.conns.lock().unwrap();
        conns.push(Record {
            head: head_text.clone(),
            rest,
            closed: false,
        });
        state.changed.notify_all();
        conns.len() - 1
    };
    let append = |data: &[u8]| {
        let mut conns = state.conns.lock().unwrap();
        conns[index].rest.extend_from_slice(data);
        state.changed.notify_all();
    };
    let response = match &reply {
        Reply::Raw(bytes) => bytes.clone(),
        Reply::Switch(sw) => sw.render(&Head::parse(&head_text)),
    };
    let _ = s.write_all(&response);
    if let After::SendThenRecord(bytes) = &after {
        let _ = s.write_all(bytes);
    }
    loop {
        match s.read(&mut tmp) {
            Ok(n) if n > 0 => append(&tmp[..n]),
            _ => break,
        }
    }
    if let After::ByeAfterEof(bye) = &after {
        let _ = s.write_all(bye);
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut conns = state.conns.lock().unwrap();
    conns[index].closed = true;
    state.changed.notify_all();
}

// ---------------------------------------------------------------------------------------------
// Connect-timeout target

/// A loopback listener whose accept queue is full: new SYNs are dropped, so a connect to it
/// neither succeeds nor is refused until the connector's own timeout fires.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _fillers: Vec<TcpStream>,
}

// libc's listen(2), linked by std anyway; no crate needed for one call.
extern "C" {
    fn listen(fd: i32, backlog: i32) -> i32;
}

impl Blackhole {
    pub fn start() -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // Linux lets listen() be called again to change the backlog. With 0 the kernel queues
        // at most one unaccepted connection.
        // SAFETY: a valid listening socket fd owned by `listener`; listen() touches no memory.
        let rc = unsafe { listen(listener.as_raw_fd(), 0) };
        assert_eq!(rc, 0, "listen(fd, 0): {}", std::io::Error::last_os_error());
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..256 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => fillers.push(s),
                Err(_) => {
                    return Blackhole {
                        addr,
                        _listener: listener,
                        _fillers: fillers,
                    }
                }
            }
        }
        panic!("could not fill the accept queue of {addr}: connects keep succeeding");
    }
}
