//! The built-in WebSocket echo endpoint (`handler = "echo"`): answers the handshake itself and
//! echoes every data frame back unmasked, streaming payloads through the connection's read
//! buffer (unmasked in place), so messages of any size cost no extra memory.

use std::rc::Rc;

use futures_lite::io::AsyncWriteExt;
use tracing::debug;

use crate::protocol::ws::{opcode, unmask, FrameError, FrameHeader};
use crate::runtime::conn::client::{Client, Next};
use crate::runtime::net::idle;
use crate::runtime::net::io::ReadError;
use crate::runtime::shard::Shard;

/// Read buffer ceiling while echoing; payloads stream through it.
const ECHO_BUF_BYTES: usize = 16 * 1024;

pub async fn run(shard: &Rc<Shard>, c: &mut Client, accept: &[u8; 28]) -> Next {
    let mut head = Vec::with_capacity(160);
    head.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    head.extend_from_slice(accept);
    head.extend_from_slice(b"\r\n\r\n");
    if c.stream.write_all(&head).await.is_err() {
        return Next::Close;
    }
    c.status = 101;
    // The session ends after `tunnel_idle` without a byte from the client.
    c.watch.restart(shard.config.timeouts.tunnel_idle);
    match echo_frames(c).await {
        Ok(()) => {}
        Err(EchoEnd::Draining) => {
            // Between two frames: Close 1001 (going away), then end.
            let _ = c.stream.write_all(&[0x88, 0x02, 0x03, 0xE9]).await;
        }
        Err(EchoEnd::Protocol) => {
            // Close 1002 (protocol error), then end.
            let _ = c.stream.write_all(&[0x88, 0x02, 0x03, 0xEA]).await;
        }
        Err(EchoEnd::Gone) => {}
    }
    debug!(core = shard.id, peer = %c.peer, "echo session ended");
    Next::Close
}

enum EchoEnd {
    Protocol,
    Gone,
    /// The core drains; the session is between two frames.
    Draining,
}

impl From<FrameError> for EchoEnd {
    fn from(_: FrameError) -> Self {
        EchoEnd::Protocol
    }
}

/// Makes sure at least one more byte is buffered; the session ends after `tunnel_idle` of
/// silence (the connection's watch, restarted when the session began).
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

async fn echo_frames(c: &mut Client) -> Result<(), EchoEnd> {
    loop {
        let header = loop {
            if let Some(h) = FrameHeader::parse(c.rb.data())? {
                break h;
            }
            if c.rb.is_empty() && idle::draining() {
                return Err(EchoEnd::Draining);
            }
            // Waiting for a frame with nothing buffered: a drain may end the session here.
            c.watch.set_between_requests(c.rb.is_empty());
            let got = more(c).await;
            c.watch.set_between_requests(false);
            if got.is_err() && c.rb.is_empty() && idle::draining() {
                return Err(EchoEnd::Draining);
            }
            got?;
        };
        let Some(mask) = header.mask else {
            // Clients must mask (RFC 6455 §5.1).
            return Err(EchoEnd::Protocol);
        };
        c.rb.consume(header.header_len);
        if header.is_control() {
            if control_frame(c, header, mask).await? {
                return Ok(());
            }
            continue;
        }
        let mut out = [0u8; 14];
        let n =
            FrameHeader::write_unmasked(&mut out, header.fin, header.opcode, header.payload_len);
        c.stream
            .write_all(&out[..n])
            .await
            .map_err(|_| EchoEnd::Gone)?;
        let mut done = 0u64;
        while done < header.payload_len {
            if c.rb.is_empty() {
                more(c).await?;
            }
            let take = (header.payload_len - done).min(c.rb.len() as u64) as usize;
            unmask(&mut c.rb.data_mut()[..take], mask, done);
            c.stream
                .write_all(&c.rb.data()[..take])
                .await
                .map_err(|_| EchoEnd::Gone)?;
            c.rb.consume(take);
            done += take as u64;
        }
    }
}

/// Handles ping/pong/close; returns true when the session is over.
async fn control_frame(
    c: &mut Client,
    header: FrameHeader,
    mask: [u8; 4],
) -> Result<bool, EchoEnd> {
    // Control payloads are at most 125 bytes (checked by the parser).
    let len = header.payload_len as usize;
    while c.rb.len() < len {
        more(c).await?;
    }
    let mut payload = [0u8; 125];
    payload[..len].copy_from_slice(&c.rb.data()[..len]);
    c.rb.consume(len);
    unmask(&mut payload[..len], mask, 0);
    let reply = match header.opcode {
        opcode::PING => opcode::PONG,
        opcode::CLOSE => opcode::CLOSE,
        _ => return Ok(false),
    };
    let mut out = [0u8; 14 + 125];
    let n = FrameHeader::write_unmasked(
        out[..14].as_mut().try_into().map_err(|_| EchoEnd::Gone)?,
        true,
        reply,
        len as u64,
    );
    out[n..n + len].copy_from_slice(&payload[..len]);
    c.stream
        .write_all(&out[..n + len])
        .await
        .map_err(|_| EchoEnd::Gone)?;
    Ok(reply == opcode::CLOSE)
}
