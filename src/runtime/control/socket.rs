//! The control socket (`[admin] socket`): a Unix socket, mode 0600, serving the control API
//! (`control::api`) as HTTP/1.1 with JSON bodies, one request per connection.
//!
//! It runs on its own threads, never on a serving core: `ringway-control` accepts, and each
//! connection gets a short-lived thread (at most `MAX_CONNECTIONS` at once; over that a
//! connection is answered 503 at once). Reads and writes have time-outs, heads and bodies
//! have size limits.
//!
//! The socket is bound under a temporary name, given mode 0600, then renamed into place, so
//! it is never reachable with wider permissions, and a process started by an upgrade takes
//! the path over atomically. At exit the file is removed if it is still this process's.

use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::protocol::http::head::{self, empty_headers, Body};
use crate::protocol::http::response;
use crate::runtime::control::api;
use crate::runtime::control::hub::{ApiAnswer, Hub};

/// Connections served at once.
const MAX_CONNECTIONS: usize = 16;
/// A request head larger than this is refused (431).
const MAX_HEAD: usize = 16 * 1024;
/// A request body larger than this is refused (413).
const MAX_BODY: usize = 64 * 1024;
/// Reading a request, or writing an answer, may take this long.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound socket; dropping it removes the file if it is still this one.
pub struct ControlSocket {
    path: PathBuf,
    inode: (u64, u64),
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let mine =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.inode);
        if mine {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds the control socket at `path` and starts serving it.
pub fn start(hub: &Arc<Hub>, path: &Path) -> Result<ControlSocket, String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let fail = |e: io::Error| format!("control socket {}: {e}", path.display());
    let listener = UnixListener::bind(&tmp).map_err(fail)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| std::fs::symlink_metadata(path));
    let meta = match placed {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(fail(e));
        }
    };
    let socket = ControlSocket {
        path: path.to_path_buf(),
        inode: (meta.dev(), meta.ino()),
    };
    let hub = hub.clone();
    std::thread::Builder::new()
        .name("ringway-control".into())
        .spawn(move || accept_loop(&listener, &hub))
        .map_err(|e| format!("cannot start the control socket thread: {e}"))?;
    info!(socket = %path.display(), "control socket ready");
    Ok(socket)
}

fn accept_loop(listener: &UnixListener, hub: &Arc<Hub>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "control socket: accept failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let _ = conn.set_read_timeout(Some(IO_TIMEOUT));
        let _ = conn.set_write_timeout(Some(IO_TIMEOUT));
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::AcqRel);
            let busy = plain(503, "too many control connections");
            let _ = write_answer(&mut conn, &busy, false);
            continue;
        }
        let (hub, active2) = (hub.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("ringway-control-conn".into())
            .spawn(move || {
                serve(&mut conn, &hub);
                active2.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::AcqRel);
            warn!(error = %e, "control socket: cannot start a connection thread");
        }
    }
}

fn plain(status: u16, text: &str) -> ApiAnswer {
    ApiAnswer {
        status,
        content_type: "application/json",
        body: serde_json::to_vec(&serde_json::json!({ "error": text })).unwrap_or_default(),
        allow: None,
    }
}

/// Reads one request, answers it, closes.
fn serve(conn: &mut UnixStream, hub: &Hub) {
    let (answer, head_only) = match read_request(conn) {
        Ok(None) => return,
        Ok(Some((method, target, body))) => {
            (api::answer(hub, &method, &target, &body), method == "HEAD")
        }
        Err(status) => (plain(status, response::reason(status)), false),
    };
    let _ = write_answer(conn, &answer, head_only);
}

/// One request: method, target and body. `Ok(None)`: the peer sent nothing. `Err(status)`:
/// answer that status.
fn read_request(conn: &mut UnixStream) -> Result<Option<(String, String, Vec<u8>)>, u16> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(431);
        }
        match conn.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err(400),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) if buf.is_empty() => return Ok(None),
            Err(_) => return Err(408),
        }
    };
    let mut headers = empty_headers();
    let req = match head::parse_request(&buf[..end], &mut headers, MAX_HEAD) {
        Ok(Some(r)) => r,
        Ok(None) => return Err(400),
        Err(e) => return Err(e.status()),
    };
    let length = match req.body {
        Body::None => 0,
        Body::Length(n) if n > MAX_BODY as u64 => return Err(413),
        Body::Length(n) => n as usize,
        Body::Chunked | Body::UntilClose => return Err(411),
    };
    let (method, target) = (req.method.to_string(), req.target.to_string());
    let mut body = buf[end..].to_vec();
    while body.len() < length {
        match conn.read(&mut chunk) {
            Ok(0) => return Err(400),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(_) => return Err(408),
        }
    }
    body.truncate(length);
    Ok(Some((method, target, body)))
}

/// Writes `a` as an HTTP/1.1 response that closes the connection.
pub fn write_answer(conn: &mut impl Write, a: &ApiAnswer, head_only: bool) -> io::Result<()> {
    let mut out = Vec::with_capacity(a.body.len() + 256);
    let mut fields: Vec<(&str, &[u8])> = vec![
        ("Content-Type", a.content_type.as_bytes()),
        ("Cache-Control", b"no-store"),
    ];
    if let Some(allow) = a.allow {
        fields.push(("Allow", allow.as_bytes()));
    }
    response::write_head(&mut out, a.status, &fields, Some(a.body.len() as u64), true);
    if !head_only {
        out.extend_from_slice(&a.body);
    }
    conn.write_all(&out)
}
