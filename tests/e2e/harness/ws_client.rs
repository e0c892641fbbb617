//! WebSocket client helpers: tungstenite handshakes through ringway, echo checks over every
//! frame-length size, the close handshake, and hand-built client and server frames.

use std::net::{SocketAddr, TcpStream};

use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Response as WsResponse;
use tungstenite::{Message, WebSocket};

use super::WAIT;

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

/// A masked client frame of any length (`fin`, `opcode`), for fragmented messages.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x5au8, 0x0f, 0xc3, 0x81];
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
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
