//! The built-in WebSocket echo endpoint (`handler = "echo"`) over HTTP/1.1: answers the
//! handshake itself, then ends the WebSocket with the same sans-IO decoder as tunnel mode and
//! the HTTP/2 echo (`protocol::ws_endpoint::Decoder`): fragments are reassembled and every
//! message comes back as one frame of its type, text checked as UTF-8; ping → pong; the
//! client's Close is answered with its code; a violation (RFC 6455: bad framing, continuation
//! or close payload → 1002, text that is not UTF-8 → 1007, a message over `MAX_MESSAGE` →
//! 1009) is answered with a Close of that code and the connection ends.
//!
//! Frames are decoded in place in the connection's read buffer (a whole frame there is
//! unmasked and echoed from it, no copy); only fragmented messages and frames larger than the
//! buffer are gathered in the decoder, which frees that memory once the message is out. Small
//! answers are written from one pooled `Vec` per session.

use std::rc::Rc;

use futures_lite::io::AsyncWriteExt;
use tracing::debug;

use crate::protocol::ws::opcode;
use crate::protocol::ws_endpoint::{self as wse, Decoder, Event, Violation};
use crate::runtime::conn::client::{Client, Next};
use crate::runtime::net::idle;
use crate::runtime::net::io::ReadError;
use crate::runtime::net::pool;
use crate::runtime::shard::Shard;

/// Read buffer ceiling while echoing; larger frames stream through it into the decoder.
const ECHO_BUF_BYTES: usize = 16 * 1024;

/// The largest message the echo endpoint takes (larger: Close 1009). 16 MiB: the largest
/// message of the Autobahn suite's group 9 (the HTTP/2 echo uses the same limit).
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Answers up to this size go out in one write (header and payload copied into the session's
/// pooled `Vec`, which stays in the pool's small class); larger ones in two.
const GATHER_MAX: usize = pool::SMALL_VEC_BYTES - 14;

pub async fn run(shard: &Rc<Shard>, c: &mut Client, accept: &[u8; 28]) -> Next {
    let mut out = pool::take_vec();
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept);
    out.extend_from_slice(b"\r\n\r\n");
    crate::runtime::conn::client::dress(c, &mut out);
    c.head_written(out.len());
    if c.stream.write_all(&out).await.is_err() {
        pool::give_vec(out);
        return Next::Close;
    }
    c.status = 101;
    // The session ends after `tunnel_idle` without a byte from the client.
    c.watch.restart(
        c.timeouts
            .tunnel_idle
            .unwrap_or(shard.config.timeouts.tunnel_idle),
    );
    let mut dec = Decoder::new(MAX_MESSAGE);
    let end = echo_frames(c, &mut dec, &mut out).await;
    let close = match end {
        EchoEnd::ClientClosed | EchoEnd::Gone => None,
        // Between two messages: Close 1001 (going away).
        EchoEnd::Draining => Some(wse::code::GOING_AWAY),
        EchoEnd::Violation(v) => Some(v.code()),
    };
    if let Some(code) = close {
        out.clear();
        wse::close(&mut out, code);
        let _ = c.stream.write_all(&out).await;
    }
    pool::give_vec(out);
    debug!(core = shard.id, peer = %c.peer, end = ?end, "echo session ended");
    Next::Close
}

#[derive(Debug, Clone, Copy)]
enum EchoEnd {
    /// The client's Close was answered.
    ClientClosed,
    /// EOF, a read or write error, or `tunnel_idle` of silence.
    Gone,
    /// The core drains; the session is between two messages.
    Draining,
    /// The client broke RFC 6455: the Close to send.
    Violation(Violation),
}

/// Reads once more into the read buffer; the session ends after `tunnel_idle` of silence (the
/// connection's watch, restarted when the session began).
async fn more(c: &mut Client) -> Result<(), EchoEnd> {
    match c
        .rb
        .fill_watched(&mut c.stream, ECHO_BUF_BYTES, &c.watch)
        .await
    {
        Ok(0) | Err(ReadError::TimedOut | ReadError::Io) => Err(EchoEnd::Gone),
        Ok(_) => {
            c.watch.touch();
            Ok(())
        }
    }
}

/// Decodes and answers frames until the session ends; `out` is scratch for the answers.
async fn echo_frames(c: &mut Client, dec: &mut Decoder, out: &mut Vec<u8>) -> EchoEnd {
    loop {
        let (used, ev) = match dec.decode(c.rb.data_mut()) {
            Ok(r) => r,
            Err(v) => return EchoEnd::Violation(v),
        };
        if used == 0 && ev.is_none() {
            // More bytes needed. Between messages with nothing buffered a drain ends the
            // session (the watch is woken by it).
            let between = c.rb.is_empty() && !dec.in_message();
            if between && idle::draining() {
                return EchoEnd::Draining;
            }
            c.watch.set_between_requests(between);
            let got = more(c).await;
            c.watch.set_between_requests(false);
            match got {
                Ok(()) => continue,
                Err(_) if between && idle::draining() => return EchoEnd::Draining,
                Err(e) => return e,
            }
        }
        out.clear();
        let mut end = None;
        let written = match ev {
            None => Ok(()),
            Some(Event::Message { text, payload }) => {
                crate::observe::metrics::with(|m| m.echo_message());
                let op = if text { opcode::TEXT } else { opcode::BINARY };
                let (h, hn) = wse::frame_header(op, payload.len());
                out.extend_from_slice(&h[..hn]);
                if payload.len() <= GATHER_MAX {
                    out.extend_from_slice(payload);
                    c.stream.write_all(out).await
                } else {
                    match c.stream.write_all(out).await {
                        Ok(()) => c.stream.write_all(payload).await,
                        Err(e) => Err(e),
                    }
                }
            }
            Some(Event::Ping(p)) => {
                wse::control_frame(out, opcode::PONG, p);
                c.stream.write_all(out).await
            }
            Some(Event::Pong(_)) => Ok(()),
            Some(Event::Close { code, .. }) => {
                // Answered with the client's code (an empty Close gets an empty one).
                match code {
                    Some(code) => wse::close(out, code),
                    None => wse::control_frame(out, opcode::CLOSE, &[]),
                }
                end = Some(EchoEnd::ClientClosed);
                c.stream.write_all(out).await
            }
        };
        if written.is_err() {
            return EchoEnd::Gone;
        }
        c.rb.consume(used);
        dec.release();
        if let Some(end) = end {
            return end;
        }
    }
}
