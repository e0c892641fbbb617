//! `bench-backend`: a single-threaded epoll WebSocket echo server and fixed HTTP responder.
//!
//! - An upgrade request (GET, `Upgrade: websocket`, version 13, a key) gets a 101; then every
//!   client frame is echoed as it arrives, unmasked, frame by frame (so fragments and messages
//!   of any size stream through without buffering whole messages); ping → pong; close → close
//!   echoed and the connection closed.
//! - Any other request gets `200 OK` with `hello, world\n` (keep-alive, pipelined requests are
//!   answered in order).

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use clap::Parser;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use ringway_bench::frame::{
    encode_frame, encode_header, Decoder, Event, Role, MAX_HEADER, OP_CLOSE, OP_PING, OP_PONG,
};
use ringway_bench::handshake::{accept_key, parse_upgrade, server_response};
use ringway_bench::sys;

/// WebSocket echo + fixed HTTP response backend for Ringway's benchmarks.
#[derive(Parser, Debug)]
#[command(name = "bench-backend", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
}

const LISTENER: Token = Token(usize::MAX);
/// Stop reading from a connection while this much output is queued for it.
const OUT_HIGH: usize = 4 << 20;
const MAX_HEAD: usize = 64 * 1024;
const HELLO: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world\n";
const HELLO_CLOSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nhello, world\n";

struct Conn {
    stream: TcpStream,
    ws: bool,
    /// Unparsed input (an incomplete request head); empty most of the time.
    inbuf: Vec<u8>,
    dec: Decoder,
    out: Vec<u8>,
    out_pos: usize,
    /// Close once `out` is flushed.
    close_after: bool,
    /// Reading paused because `out` is over OUT_HIGH.
    paused: bool,
    eof: bool,
}

struct Server {
    poll: Poll,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    scratch: Vec<u8>,
}

fn main() {
    let args = Args::parse();
    sys::raise_nofile_limit();
    if let Err(e) = serve(args.listen) {
        eprintln!("bench-backend: {e}");
        std::process::exit(1);
    }
}

fn serve(addr: SocketAddr) -> io::Result<()> {
    let mut listener = sys::listen(addr, 4096)?;
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    eprintln!("bench-backend: listening on {}", listener.local_addr()?);
    let mut s = Server {
        poll,
        conns: Vec::new(),
        free: Vec::new(),
        scratch: vec![0u8; 256 * 1024],
    };
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = s.poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                s.accept(&listener);
                continue;
            }
            let i = ev.token().0;
            if ev.is_writable() {
                s.flush(i);
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                // A FIN that came with the data raises no further edge: read to EOF then.
                s.read(i, ev.is_read_closed() || ev.is_error());
            }
        }
    }
}

impl Server {
    fn accept(&mut self, l: &TcpListener) {
        loop {
            match l.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let i = self.free.pop().unwrap_or_else(|| {
                        self.conns.push(None);
                        self.conns.len() - 1
                    });
                    if self
                        .poll
                        .registry()
                        .register(
                            &mut stream,
                            Token(i),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .is_err()
                    {
                        self.free.push(i);
                        continue;
                    }
                    self.conns[i] = Some(Conn {
                        stream,
                        ws: false,
                        inbuf: Vec::new(),
                        dec: Decoder::new(Role::Server),
                        out: Vec::new(),
                        out_pos: 0,
                        close_after: false,
                        paused: false,
                        eof: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: back off; the listener stays readable (edge already
                    // consumed, so retry on the next event).
                    eprintln!("bench-backend: accept: {e}");
                    return;
                }
            }
        }
    }

    fn close(&mut self, i: usize) {
        if let Some(mut c) = self.conns[i].take() {
            let _ = self.poll.registry().deregister(&mut c.stream);
            self.free.push(i);
        }
    }

    /// Reads until drained: a short read ends it (later data raises a new edge) unless `to_eof`.
    fn read(&mut self, i: usize, to_eof: bool) {
        let mut scratch = std::mem::take(&mut self.scratch);
        while let Some(c) = self.conns[i].as_mut() {
            if c.eof || c.close_after {
                break;
            }
            if c.out.len() - c.out_pos > OUT_HIGH {
                c.paused = true;
                break;
            }
            match c.stream.read(&mut scratch) {
                Ok(0) => {
                    c.eof = true;
                    c.close_after = true;
                    break;
                }
                Ok(n) => {
                    if !on_data(c, &mut scratch[..n]) {
                        c.close_after = true;
                        c.inbuf = Vec::new();
                        break;
                    }
                    if n < scratch.len() && !to_eof {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.scratch = scratch;
                    return self.close(i);
                }
            }
        }
        self.scratch = scratch;
        self.flush(i);
    }

    fn flush(&mut self, i: usize) {
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        while c.out_pos < c.out.len() {
            match c.stream.write(&c.out[c.out_pos..]) {
                Ok(n) => c.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(i),
            }
        }
        c.out.clear();
        c.out_pos = 0;
        if c.out.capacity() > 1 << 20 {
            c.out = Vec::new();
        }
        if c.close_after {
            return self.close(i);
        }
        if c.paused {
            c.paused = false;
            self.read(i, true);
        }
    }
}

/// Handles bytes read from a connection. Returns false when the connection should close
/// (after its queued output is sent).
fn on_data(c: &mut Conn, data: &mut [u8]) -> bool {
    if c.ws {
        return ws_data(c, data);
    }
    if c.inbuf.is_empty() {
        let (used, keep) = http_data(c, data);
        if !keep {
            return false;
        }
        if used < data.len() {
            if c.ws {
                return ws_data(c, &mut data[used..]);
            }
            c.inbuf.extend_from_slice(&data[used..]);
        }
    } else {
        let mut buf = std::mem::take(&mut c.inbuf);
        buf.extend_from_slice(data);
        let (used, keep) = http_data(c, &mut buf);
        if !keep {
            return false;
        }
        if c.ws {
            return ws_data(c, &mut buf[used..]);
        }
        buf.drain(..used);
        c.inbuf = buf;
    }
    if c.inbuf.len() > MAX_HEAD {
        c.out.extend_from_slice(b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return false;
    }
    true
}

/// Answers every complete request in `buf`. Returns (bytes consumed, keep the connection).
/// Stops after an upgrade (`c.ws` is then set; the rest of `buf` is WebSocket data).
fn http_data(c: &mut Conn, buf: &mut [u8]) -> (usize, bool) {
    let mut pos = 0;
    while pos < buf.len() {
        let mut headers = [httparse::EMPTY_HEADER; 48];
        let mut req = httparse::Request::new(&mut headers);
        let hlen = match req.parse(&buf[pos..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return (pos, true),
            Err(_) => {
                c.out.extend_from_slice(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return (pos, false);
            }
        };
        if let Some(up) = parse_upgrade(&req) {
            c.out
                .extend_from_slice(&server_response(&accept_key(up.key.as_bytes())));
            c.ws = true;
            return (pos + hlen, true);
        }
        let mut body = 0usize;
        let mut close = req.version == Some(0);
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                match std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                {
                    Some(n) => body = n,
                    None => {
                        c.out.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                        return (pos, false);
                    }
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                c.out.extend_from_slice(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                return (pos, false);
            } else if h.name.eq_ignore_ascii_case("connection") {
                for t in h.value.split(|&b| b == b',') {
                    let t = t.trim_ascii();
                    if t.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        close = false;
                    }
                }
            }
        }
        if buf.len() - pos < hlen + body {
            if body > MAX_HEAD {
                c.out.extend_from_slice(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                return (pos, false);
            }
            return (pos, true);
        }
        pos += hlen + body;
        if close {
            c.out.extend_from_slice(HELLO_CLOSE);
            return (pos, false);
        }
        c.out.extend_from_slice(HELLO);
    }
    (pos, true)
}

/// Echoes WebSocket frames. Returns false once the connection should close.
fn ws_data(c: &mut Conn, data: &mut [u8]) -> bool {
    let Conn { dec, out, .. } = c;
    let mut close = false;
    let r = dec.feed(data, |ev| match ev {
        Event::FrameStart(h) => {
            let mut hb = [0u8; MAX_HEADER];
            let n = encode_header(&mut hb, h.fin, h.opcode, h.len, None);
            out.extend_from_slice(&hb[..n]);
        }
        Event::Payload(p) => out.extend_from_slice(p),
        Event::FrameEnd(_) => {}
        Event::Control(OP_PING, p) => encode_frame(out, true, OP_PONG, p, None),
        Event::Control(OP_CLOSE, p) => {
            if !close {
                encode_frame(out, true, OP_CLOSE, p, None);
                close = true;
            }
        }
        Event::Control(..) => {}
    });
    if r.is_err() {
        // Protocol error: close with 1002.
        encode_frame(&mut c.out, true, OP_CLOSE, &1002u16.to_be_bytes(), None);
        return false;
    }
    !close
}
