//! `bare-forwarder`: the kernel-cost floor for a proxy. One thread, plain epoll (mio,
//! edge-triggered); for every accepted client it connects to the backend and moves bytes both
//! ways with recv/send. No parsing at all: the WebSocket handshake passes through blindly.
//!
//! Bytes go through one shared scratch buffer; a per-direction spill buffer is allocated only
//! when a send would block, and reading that direction pauses until it drains. Half-closes are
//! passed on (shutdown(SHUT_WR)); the pair closes when both directions are done or on an error.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use clap::Parser;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use ringway_bench::sys;

/// Blind TCP forwarder: the cost floor a proxy is compared against.
#[derive(Parser, Debug)]
#[command(name = "bare-forwarder", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Backend to forward every connection to.
    #[arg(long, default_value = "127.0.0.1:9001")]
    backend: SocketAddr,
}

const LISTENER: Token = Token(usize::MAX);
const CLIENT: usize = 0;
const BACKEND: usize = 1;

/// One direction: bytes read from `socks[from]` and sent to `socks[1 - from]`.
#[derive(Default)]
struct Dir {
    spill: Vec<u8>,
    pos: usize,
    /// The source sent EOF.
    eof: bool,
    /// EOF has been passed on with shutdown(SHUT_WR).
    shut: bool,
}

struct Pair {
    socks: [TcpStream; 2],
    backend_connected: bool,
    /// dirs[CLIENT]: client → backend; dirs[BACKEND]: backend → client.
    dirs: [Dir; 2],
}

struct Fwd {
    poll: Poll,
    pairs: Vec<Option<Pair>>,
    free: Vec<usize>,
    scratch: Vec<u8>,
    backend: SocketAddr,
}

fn main() {
    let args = Args::parse();
    sys::raise_nofile_limit();
    if let Err(e) = serve(&args) {
        eprintln!("bare-forwarder: {e}");
        std::process::exit(1);
    }
}

fn serve(args: &Args) -> io::Result<()> {
    let mut listener = sys::listen(args.listen, 4096)?;
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    eprintln!(
        "bare-forwarder: {} -> {}",
        listener.local_addr()?,
        args.backend
    );
    let mut f = Fwd {
        poll,
        pairs: Vec::new(),
        free: Vec::new(),
        scratch: vec![0u8; 256 * 1024],
        backend: args.backend,
    };
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = f.poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                f.accept(&listener);
                continue;
            }
            let (p, side) = (ev.token().0 >> 1, ev.token().0 & 1);
            if ev.is_writable() {
                f.writable(p, side);
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                // A FIN that came with the data raises no further edge: read to EOF then.
                f.pump(p, side, ev.is_read_closed() || ev.is_error());
            }
        }
    }
}

impl Fwd {
    fn accept(&mut self, l: &TcpListener) {
        loop {
            match l.accept() {
                Ok((mut client, _)) => {
                    let _ = client.set_nodelay(true);
                    let mut backend = match TcpStream::connect(self.backend) {
                        Ok(b) => b,
                        Err(e) => {
                            eprintln!("bare-forwarder: connect {}: {e}", self.backend);
                            continue;
                        }
                    };
                    let _ = backend.set_nodelay(true);
                    let p = self.free.pop().unwrap_or_else(|| {
                        self.pairs.push(None);
                        self.pairs.len() - 1
                    });
                    let rw = Interest::READABLE | Interest::WRITABLE;
                    let r = self.poll.registry();
                    if r.register(&mut client, Token(p << 1 | CLIENT), rw).is_err()
                        || r.register(&mut backend, Token(p << 1 | BACKEND), rw)
                            .is_err()
                    {
                        let _ = r.deregister(&mut client);
                        self.free.push(p);
                        continue;
                    }
                    self.pairs[p] = Some(Pair {
                        socks: [client, backend],
                        backend_connected: false,
                        dirs: [Dir::default(), Dir::default()],
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    eprintln!("bare-forwarder: accept: {e}");
                    return;
                }
            }
        }
    }

    fn close(&mut self, p: usize) {
        if let Some(mut pair) = self.pairs[p].take() {
            for s in pair.socks.iter_mut() {
                let _ = self.poll.registry().deregister(s);
            }
            self.free.push(p);
        }
    }

    /// Socket `side` can take more bytes: complete the backend connect, or drain the spill of
    /// the direction that sends to it and resume reading its source.
    fn writable(&mut self, p: usize, side: usize) {
        let Some(pair) = self.pairs[p].as_mut() else {
            return;
        };
        if side == BACKEND && !pair.backend_connected {
            let s = &pair.socks[BACKEND];
            match s.take_error() {
                Ok(None) => {}
                _ => return self.close(p),
            }
            match s.peer_addr() {
                Ok(_) => pair.backend_connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(_) => return self.close(p),
            }
            // The client may have sent bytes already; their readable edge is spent.
            return self.pump(p, CLIENT, true);
        }
        let from = 1 - side;
        if pair.dirs[from].pos == pair.dirs[from].spill.len() {
            // Nothing was waiting for room, so reading `from` was never paused. (Edge-triggered
            // epoll reports "writable" with every wake-up of the socket, readable ones
            // included; resuming here would cost a recv that finds nothing, every message.)
            return;
        }
        match drain(pair, from) {
            Ok(true) => {}
            Ok(false) => return,
            Err(_) => return self.close(p),
        }
        self.pump(p, from, true);
    }

    /// Moves bytes from `socks[from]` to the other socket until the source has nothing more or
    /// the destination would block. A short read counts as "nothing more" (later data raises a
    /// new edge) unless `to_eof`.
    fn pump(&mut self, p: usize, from: usize, to_eof: bool) {
        let Some(pair) = self.pairs[p].as_mut() else {
            return;
        };
        let to = 1 - from;
        if (to == BACKEND && !pair.backend_connected)
            || pair.dirs[from].pos < pair.dirs[from].spill.len()
        {
            return;
        }
        let scratch = &mut self.scratch;
        let res: io::Result<()> = loop {
            if pair.dirs[from].eof {
                break Ok(());
            }
            let n = match pair.socks[from].read(scratch) {
                Ok(0) => {
                    pair.dirs[from].eof = true;
                    break Ok(());
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            };
            let mut sent = 0;
            let err = loop {
                if sent == n {
                    break None;
                }
                match pair.socks[to].write(&scratch[sent..n]) {
                    Ok(k) => sent += k,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Some(e),
                }
            };
            if let Some(e) = err {
                break Err(e);
            }
            if sent < n {
                let d = &mut pair.dirs[from];
                d.spill.clear();
                d.pos = 0;
                d.spill.extend_from_slice(&scratch[sent..n]);
                break Ok(());
            }
            if n < scratch.len() && !to_eof {
                break Ok(());
            }
        };
        if res.is_err() {
            return self.close(p);
        }
        self.finish(p, from);
    }

    /// Passes an EOF on once its direction's bytes are all sent; closes a finished pair.
    fn finish(&mut self, p: usize, from: usize) {
        let Some(pair) = self.pairs[p].as_mut() else {
            return;
        };
        let d = &mut pair.dirs[from];
        if d.eof && !d.shut && d.pos == d.spill.len() {
            d.shut = true;
            let _ = pair.socks[1 - from].shutdown(Shutdown::Write);
        }
        if pair.dirs[CLIENT].shut && pair.dirs[BACKEND].shut {
            self.close(p);
        }
    }
}

/// Sends the spill of direction `from`. Ok(true) when it is empty afterwards.
fn drain(pair: &mut Pair, from: usize) -> io::Result<bool> {
    let to = 1 - from;
    let d = &mut pair.dirs[from];
    while d.pos < d.spill.len() {
        match pair.socks[to].write(&d.spill[d.pos..]) {
            Ok(k) => d.pos += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    d.spill.clear();
    d.pos = 0;
    if d.spill.capacity() > 1 << 20 {
        d.spill = Vec::new();
    }
    Ok(true)
}
