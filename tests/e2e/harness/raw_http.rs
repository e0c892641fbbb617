//! Raw HTTP/1.1 for the tests: parsed heads and responses, requests built header by header and
//! sent verbatim, and a client connection with a read buffer and deadlines.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{WAIT, WS_KEY};

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
