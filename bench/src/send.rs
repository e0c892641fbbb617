//! `ringway-bench`: opening and closing connections, and the send path (plain and over TLS):
//! queued control bytes first, then the connection's precomputed data frames.

use std::io::{self, Write};
use std::rc::Rc;
use std::time::Instant;

use mio::{Interest, Token};
use rustls::ClientConnection;

use ringway_bench::frame::{encode_frame, Decoder, Role, OP_BINARY};
use ringway_bench::sys;

use crate::{is_wouldblock, verify_byte, Gen, St};

/// --rate: messages in flight per connection at most (the schedule skips past it).
const PACED_IN_FLIGHT_MAX: usize = 64;

impl Gen {
    // ---- connection lifecycle -------------------------------------------------------------

    pub(crate) fn open(&mut self, i: usize) {
        let now = Instant::now();
        let c = &mut self.conns[i];
        c.hs.clear();
        c.dec = Decoder::new(Role::Client);
        c.out.clear();
        c.out_pos = 0;
        c.data_pending = 0;
        c.data_off = 0;
        c.in_flight = 0;
        c.msg_len = 0;
        c.uid = self.next_uid;
        self.next_uid += 1;
        c.sent_seq = 0;
        c.recv_seq = 0;
        c.differs = false;
        c.since = now;
        c.tls = None;
        if let Some(t) = &self.tls {
            match ClientConnection::new(t.configs[i % t.configs.len()].clone(), t.name.clone()) {
                Ok(tc) => c.tls = Some(Box::new(tc)),
                Err(e) => {
                    c.st = St::Failed;
                    self.hs_failed += 1;
                    *self.errors.entry(format!("tls: {e}")).or_default() += 1;
                    return;
                }
            }
        }
        match sys::connect_nonblocking(self.url.addr, c.src) {
            Ok(mut s) => {
                if let Err(e) = self.poll.registry().register(
                    &mut s,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    c.st = St::Failed;
                    self.hs_failed += 1;
                    *self.errors.entry(format!("register: {e}")).or_default() += 1;
                    return;
                }
                c.stream = Some(s);
                c.st = St::Connecting;
                self.pending += 1;
            }
            Err(e) => {
                c.st = St::Failed;
                self.hs_failed += 1;
                *self.errors.entry(format!("connect: {e}")).or_default() += 1;
            }
        }
    }

    /// Closes connection `i`; counts a failure unless the close is a clean end.
    pub(crate) fn close(&mut self, i: usize, failure: Option<String>) {
        let c = &mut self.conns[i];
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        c.tls = None;
        let was = c.st;
        if matches!(was, St::Connecting | St::Handshaking) {
            self.pending -= 1;
        }
        match failure {
            Some(why) => {
                c.st = St::Failed;
                if matches!(was, St::Connecting | St::Handshaking) {
                    self.hs_failed += 1;
                } else {
                    self.dropped += 1;
                }
                *self.errors.entry(why).or_default() += 1;
            }
            None => c.st = St::Done,
        }
    }

    pub(crate) fn send_msg(&mut self, i: usize) {
        let size = self.size;
        let c = &mut self.conns[i];
        if self.verify {
            // One message in flight (echo, churn): the previous frame is out, so this
            // connection's frame can be replaced.
            let payload: Vec<u8> = (0..size as u64)
                .map(|o| verify_byte(c.uid, c.sent_seq, o))
                .collect();
            let mut f = Vec::with_capacity(size + 14);
            encode_frame(&mut f, true, OP_BINARY, &payload, Some(c.mask));
            c.frame = Rc::from(f);
            c.sent_seq += 1;
        }
        if c.in_flight == 0 {
            c.sent_at = Instant::now();
        }
        c.data_pending += 1;
        c.in_flight += 1;
    }

    /// --rate: sends what the schedule says is due by now, each on its connection.
    pub(crate) fn pace(&mut self) {
        let Some(p) = self.pace.as_ref() else { return };
        let (rate, start) = (p.rate, p.start);
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        let n = self.conns.len() as u64;
        let mut k = p.next;
        let mut skipped = 0;
        while k < due {
            let at = start + std::time::Duration::from_secs_f64(k as f64 / rate);
            let i = (k % n) as usize;
            k += 1;
            let c = &mut self.conns[i];
            if c.st != St::Open || c.sched.len() >= PACED_IN_FLIGHT_MAX {
                skipped += 1;
                continue;
            }
            if c.sched.is_empty() {
                c.sent_at = at;
            }
            c.sched.push_back(at);
            c.data_pending += 1;
            c.in_flight += 1;
            self.flush(i);
        }
        if let Some(p) = self.pace.as_mut() {
            p.next = k;
            p.skipped += skipped;
        }
    }

    pub(crate) fn flush(&mut self, i: usize) {
        if self.conns[i].tls.is_some() {
            return self.flush_tls(i);
        }
        let c = &mut self.conns[i];
        let Some(s) = c.stream.as_mut() else { return };
        let r: io::Result<()> = loop {
            if c.data_off > 0 || (c.out_pos == c.out.len() && c.data_pending > 0) {
                match s.write(&c.frame[c.data_off..]) {
                    Ok(n) => {
                        c.data_off += n;
                        if c.data_off == c.frame.len() {
                            c.data_off = 0;
                            c.data_pending -= 1;
                        }
                    }
                    Err(e) if is_wouldblock(&e) => break Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            } else if c.out_pos < c.out.len() {
                match s.write(&c.out[c.out_pos..]) {
                    Ok(n) => {
                        c.out_pos += n;
                        if c.out_pos == c.out.len() {
                            c.out.clear();
                            c.out_pos = 0;
                        }
                    }
                    Err(e) if is_wouldblock(&e) => break Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            } else {
                break Ok(());
            }
        };
        if let Err(e) = r {
            self.close(i, Some(format!("send: {e}")));
        }
    }

    /// `flush` over TLS: sends what rustls holds, then hands it the next bytes in the order the
    /// plain path would send them, while the socket takes them.
    fn flush_tls(&mut self, i: usize) {
        let c = &mut self.conns[i];
        // A fresh session always has its ClientHello to send, but not before the connect is
        // seen to complete: a churn slot reopened inside `read` would otherwise send it early,
        // and the `Connecting` branch of `handle` would then swallow the readable edge of the
        // server's answer.
        if c.st == St::Connecting {
            return;
        }
        let (Some(s), Some(tls)) = (c.stream.as_mut(), c.tls.as_mut()) else {
            return;
        };
        let r: io::Result<()> = loop {
            if tls.wants_write() {
                match tls.write_tls(s) {
                    Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => continue,
                    Err(e) if is_wouldblock(&e) => break Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => break Err(e),
                }
            }
            let n = if c.data_off > 0 || (c.out_pos == c.out.len() && c.data_pending > 0) {
                match tls.writer().write(&c.frame[c.data_off..]) {
                    Ok(n) => {
                        c.data_off += n;
                        if c.data_off == c.frame.len() {
                            c.data_off = 0;
                            c.data_pending -= 1;
                        }
                        n
                    }
                    Err(e) => break Err(e),
                }
            } else if c.out_pos < c.out.len() {
                match tls.writer().write(&c.out[c.out_pos..]) {
                    Ok(n) => {
                        c.out_pos += n;
                        if c.out_pos == c.out.len() {
                            c.out.clear();
                            c.out_pos = 0;
                        }
                        n
                    }
                    Err(e) => break Err(e),
                }
            } else {
                break Ok(());
            };
            // rustls's buffer is full (its limit, or plaintext held until the handshake ends).
            if n == 0 && !tls.wants_write() {
                break Ok(());
            }
        };
        if let Err(e) = r {
            self.close(i, Some(format!("send: {e}")));
        }
    }
}
