//! `ringway-bench`: readiness events and the receive path: the connect's completion, socket
//! reads (through rustls for wss://), the 101 response, frame decoding with `--verify`'s
//! checks, and what each mode does with a completed message.

use std::io::{self, Read};
use std::time::Instant;

use ringway_bench::frame::{encode_frame, Event, OP_CLOSE, OP_PING, OP_PONG};
use ringway_bench::handshake::{check_response, find_head_end};
use ringway_bench::tls;

use crate::cli::Mode;
use crate::{is_wouldblock, verify_byte, Conn, Gen, St};

impl Gen {
    pub(crate) fn handle(&mut self, i: usize, ev: &mio::event::Event) {
        match self.conns[i].st {
            St::Connecting => {
                let c = &mut self.conns[i];
                let Some(s) = c.stream.as_mut() else { return };
                match s.take_error() {
                    Ok(Some(e)) | Err(e) => return self.close(i, Some(format!("connect: {e}"))),
                    Ok(None) => {}
                }
                match s.peer_addr() {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        if ev.is_error() || ev.is_write_closed() {
                            return self.close(i, Some("connect: failed".into()));
                        }
                        return;
                    }
                    Err(e) => return self.close(i, Some(format!("connect: {e}"))),
                }
                c.st = St::Handshaking;
                c.out.extend_from_slice(&c.req);
                self.flush(i);
            }
            St::Unused | St::Done | St::Failed => {}
            _ => {
                if ev.is_writable() {
                    self.flush(i);
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    // A FIN that came with the data raises no further edge: read to EOF then.
                    self.read(i, ev.is_read_closed() || ev.is_error());
                }
            }
        }
    }

    /// Reads until the socket is drained. A short read means drained (a later arrival raises a
    /// new edge), unless `to_eof`, when only EOF or EAGAIN ends it.
    fn read(&mut self, i: usize, to_eof: bool) {
        if self.conns[i].tls.is_some() {
            // Each socket read goes through rustls. The end of the connection is the TCP FIN,
            // with or without a close_notify before it.
            let mut plain = std::mem::take(&mut self.plain);
            self.read_socket(i, to_eof, |me, i, bytes| {
                me.on_ciphertext(i, bytes, &mut plain)
            });
            self.plain = plain;
        } else {
            self.read_socket(i, to_eof, |me, i, bytes| {
                me.on_bytes(i, bytes);
                true
            });
        }
        if self.conns[i].stream.is_some() {
            // Over TLS also: handshake messages, the request held back until the handshake
            // ended, alerts.
            self.flush(i);
        }
    }

    /// The socket read loop of `read`: each read's bytes go to `deliver`, which returns false
    /// once the connection is closed.
    fn read_socket(
        &mut self,
        i: usize,
        to_eof: bool,
        mut deliver: impl FnMut(&mut Self, usize, &mut [u8]) -> bool,
    ) {
        let mut scratch = std::mem::take(&mut self.scratch);
        while let Some(s) = self.conns[i].stream.as_mut() {
            match s.read(&mut scratch) {
                Ok(0) => {
                    self.on_eof(i);
                    break;
                }
                Ok(n) => {
                    if !deliver(self, i, &mut scratch[..n]) {
                        break;
                    }
                    if n < scratch.len() && !to_eof {
                        break;
                    }
                }
                Err(e) if is_wouldblock(&e) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.close(i, Some(format!("recv: {e}")));
                    break;
                }
            }
        }
        self.scratch = scratch;
    }

    /// Passes received TLS bytes through rustls and the plaintext out of it to `on_bytes`.
    /// Returns false once the connection is closed.
    fn on_ciphertext(&mut self, i: usize, mut input: &[u8], plain: &mut [u8]) -> bool {
        while !input.is_empty() {
            let Some(tls) = self.conns[i].tls.as_mut() else {
                return false;
            };
            match tls.read_tls(&mut input) {
                // After the peer's close_notify rustls takes nothing more: wait for the FIN.
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) => {
                    self.close(i, Some(format!("tls: {e}")));
                    return false;
                }
            }
            if let Err(e) = tls.process_new_packets() {
                // Best effort: the alert rustls queued for the peer.
                let c = &mut self.conns[i];
                if let (Some(s), Some(tls)) = (c.stream.as_mut(), c.tls.as_mut()) {
                    let _ = tls.write_tls(s);
                }
                self.close(i, Some(format!("tls: {e}")));
                return false;
            }
            loop {
                let Some(tls) = self.conns[i].tls.as_mut() else {
                    return false;
                };
                match tls.reader().read(plain) {
                    // close_notify: nothing more will come; the FIN ends the connection.
                    Ok(0) => break,
                    Ok(n) => {
                        self.on_bytes(i, &mut plain[..n]);
                        if self.conns[i].stream.is_none() {
                            return false;
                        }
                    }
                    Err(e) if is_wouldblock(&e) => break,
                    Err(e) => {
                        self.close(i, Some(format!("tls: {e}")));
                        return false;
                    }
                }
            }
        }
        true
    }

    fn on_eof(&mut self, i: usize) {
        match self.conns[i].st {
            St::Draining | St::Closing if self.mode == Mode::Churn => {
                let since = self.conns[i].since;
                self.close(i, None);
                if self.measuring {
                    self.cycles += 1;
                    let ns = since.elapsed().as_nanos() as u64;
                    let _ = self.hist.record(ns.max(1));
                }
                if self.running {
                    self.open(i);
                }
            }
            St::Handshaking => self.close(i, Some("handshake: closed before a response".into())),
            _ => self.close(i, Some("closed by peer".into())),
        }
    }

    fn on_bytes(&mut self, i: usize, data: &mut [u8]) {
        let mut data = data;
        if self.conns[i].st == St::Handshaking {
            let c = &mut self.conns[i];
            c.hs.extend_from_slice(data);
            let Some(end) = find_head_end(&c.hs) else {
                if c.hs.len() > 16 * 1024 {
                    self.close(i, Some("handshake: response head over 16 KiB".into()));
                }
                return;
            };
            if let Err(e) = check_response(&c.hs[..end], &c.accept) {
                let first =
                    String::from_utf8_lossy(c.hs.split(|&b| b == b'\r').next().unwrap_or(b""))
                        .into_owned();
                return self.close(i, Some(format!("handshake: {e} ({first})")));
            }
            let extra = c.hs.len() - end;
            let skip = data.len() - extra;
            data = &mut data[skip..];
            c.hs = Vec::new();
            c.st = St::Open;
            if self.tls_info.is_none() {
                self.tls_info = c.tls.as_deref().map(tls::describe);
            }
            self.pending -= 1;
            self.hs_ok += 1;
            let resumed = c.tls.as_deref().and_then(|t| t.handshake_kind());
            if resumed == Some(rustls::HandshakeKind::Resumed) {
                self.hs_resumed += 1;
            }
            if self.mode == Mode::Churn {
                self.send_msg(i);
            }
            if data.is_empty() {
                return;
            }
        }
        let size = self.size as u64;
        let c = &mut self.conns[i];
        let verify = self.verify;
        let Conn {
            dec,
            out,
            msg_len,
            mask,
            uid,
            recv_seq,
            differs,
            ..
        } = c;
        let mut completed = 0u32;
        let mut bad = 0u64;
        let mut close_seen = false;
        let r = dec.feed(data, |ev| match ev {
            Event::FrameStart(_) => {}
            Event::Payload(p) => {
                if verify && !*differs {
                    *differs = p
                        .iter()
                        .zip(*msg_len..)
                        .any(|(&b, o)| b != verify_byte(*uid, *recv_seq, o));
                }
                *msg_len += p.len() as u64
            }
            Event::FrameEnd(h) => {
                if h.fin {
                    if *msg_len != size || *differs {
                        bad += 1;
                    }
                    *differs = false;
                    *recv_seq += 1;
                    completed += 1;
                    *msg_len = 0;
                }
            }
            Event::Control(OP_PING, p) => encode_frame(out, true, OP_PONG, p, Some(*mask)),
            Event::Control(OP_CLOSE, _) => close_seen = true,
            Event::Control(..) => {}
        });
        self.bad_echo += bad;
        if let Err(e) = r {
            return self.close(i, Some(format!("protocol: {e}")));
        }
        for _ in 0..completed {
            self.on_message(i);
        }
        if close_seen {
            let c = &mut self.conns[i];
            if c.st == St::Closing {
                c.st = St::Draining;
            } else {
                self.close(i, Some("close frame from server".into()));
            }
        }
    }

    fn on_message(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.in_flight == 0 {
            *self.errors.entry("unexpected message".into()).or_default() += 1;
            return;
        }
        c.in_flight -= 1;
        let mut sent_at = c.sent_at;
        if self.pace.is_some() {
            // Open loop: latency from the scheduled send time; nothing is sent in reply.
            sent_at = c.sched.pop_front().unwrap_or(sent_at);
            if let Some(&next) = c.sched.front() {
                c.sent_at = next;
            }
            if self.measuring {
                self.messages += 1;
                let _ = self
                    .hist
                    .record((sent_at.elapsed().as_nanos() as u64).max(1));
            }
            return;
        }
        if c.in_flight > 0 {
            c.sent_at = Instant::now();
        }
        match self.mode {
            Mode::Echo => {
                if self.measuring {
                    self.messages += 1;
                    let _ = self
                        .hist
                        .record((sent_at.elapsed().as_nanos() as u64).max(1));
                }
                if self.running {
                    self.send_msg(i);
                }
            }
            Mode::Bulk => {
                if self.measuring {
                    self.messages += 1;
                    self.bytes += self.size as u64;
                }
                if self.running {
                    self.send_msg(i);
                }
            }
            Mode::Idle => {
                self.final_ok += 1;
                let _ = self
                    .hist
                    .record((sent_at.elapsed().as_nanos() as u64).max(1));
            }
            Mode::Churn => {
                if self.measuring {
                    self.messages += 1;
                }
                let c = &mut self.conns[i];
                encode_frame(
                    &mut c.out,
                    true,
                    OP_CLOSE,
                    &1000u16.to_be_bytes(),
                    Some(c.mask),
                );
                c.st = St::Closing;
            }
        }
    }
}
