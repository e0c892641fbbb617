//! The control API (HTTP with JSON bodies): what `/api/...` and `/healthz` answer, the same on
//! the control socket (`control::socket`) and on the admin listener. It runs on control-plane
//! threads only, never on a serving core: the socket's threads call `answer` directly; a core
//! hands an admin-listener request to the `ringway-api` thread (`start_worker`) through the
//! hub's `api` mailbox and awaits the reply.
//!
//! - `GET /healthz`: `200 ok` while serving, `503 draining` once a SIGTERM or an upgrade
//!   hand-off has begun.
//! - `GET /api/backends`: `Directory::backends`.
//! - `POST /api/backends/{backend}/servers/{server}` with `{"state", "spread", "weight"}` (any
//!   subset): `Directory::change`; 400 for a bad body, 404 for an unknown backend or server.
//! - `POST /api/reload`: `200 {"generation": N}` once every core swapped, or
//!   `422 {"errors": ["FILE:LINE:COL: message", ...]}`.
//!
//! Unknown paths answer 404, known paths with another method 405 (with `Allow`); errors have a
//! JSON body `{"error": "..."}`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tracing::warn;

use crate::config::load::values::parse_duration;
use crate::runtime::control::directory::{AdminState, ChangeError, ServerChange};
use crate::runtime::control::hub::{ApiAnswer, Call, Hub, Mailbox};

/// How long a reload through the API may take before it answers 504 (the control thread
/// waits up to 5 s per core for the swaps).
const RELOAD_WAIT: Duration = Duration::from_secs(120);
/// How often the worker looks for a new job (it also ends when the hub is gone).
const WORKER_POLL: Duration = Duration::from_secs(1);

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

fn json_answer(status: u16, v: &Value) -> ApiAnswer {
    ApiAnswer {
        status,
        content_type: JSON,
        body: serde_json::to_vec(v).unwrap_or_default(),
        allow: None,
    }
}

fn error(status: u16, message: impl Into<String>) -> ApiAnswer {
    json_answer(status, &json!({ "error": message.into() }))
}

fn not_allowed(allow: &'static str) -> ApiAnswer {
    let mut a = error(405, format!("method not allowed (allowed: {allow})"));
    a.allow = Some(allow);
    a
}

/// The answer to one request. `target` is the request target (a query is ignored).
pub fn answer(hub: &Hub, method: &str, target: &str, body: &[u8]) -> ApiAnswer {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let get = matches!(method, "GET" | "HEAD");
    match path {
        "/healthz" if !get => not_allowed("GET, HEAD"),
        "/healthz" => healthz(hub),
        "/api/backends" if !get => not_allowed("GET, HEAD"),
        "/api/backends" => json_answer(200, &hub.directory.backends()),
        "/api/reload" if method != "POST" => not_allowed("POST"),
        "/api/reload" => reload(hub),
        _ => match server_path(path) {
            None => error(404, format!("no such endpoint: {path}")),
            Some(_) if method != "POST" => not_allowed("POST"),
            Some(Err(e)) => error(400, e),
            Some(Ok((backend, server))) => change(hub, &backend, &server, body),
        },
    }
}

/// `/healthz` (also answered on a core directly: it only reads an atomic).
pub fn healthz(hub: &Hub) -> ApiAnswer {
    let (status, text) = if hub.is_leaving() {
        (503, "draining")
    } else {
        (200, "ok")
    };
    ApiAnswer {
        status,
        content_type: TEXT,
        body: text.as_bytes().to_vec(),
        allow: None,
    }
}

/// `/api/backends/{backend}/servers/{server}`: both segments percent-decoded. `None`: not
/// this path; `Some(Err)`: this path with a bad encoding.
fn server_path(path: &str) -> Option<Result<(String, String), String>> {
    let rest = path.strip_prefix("/api/backends/")?;
    let (backend, server) = rest.split_once("/servers/")?;
    if backend.is_empty() || backend.contains('/') || server.is_empty() || server.contains('/') {
        return None;
    }
    Some(percent_decode(backend).and_then(|b| Ok((b, percent_decode(server)?))))
}

/// RFC 3986 percent-decoding of one path segment into UTF-8 text.
pub fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} does not decode to UTF-8 text"))
}

/// The body of a server change: `{"state": "ready"|"drain"|"maint", "spread": "60s",
/// "weight": 3}`, any subset; anything else is refused.
pub fn parse_change(body: &[u8]) -> Result<ServerChange, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(fields) = v else {
        return Err("the body must be a JSON object".into());
    };
    let mut change = ServerChange::default();
    for (key, value) in &fields {
        match key.as_str() {
            "state" => {
                change.state = Some(match value.as_str() {
                    Some("ready") => AdminState::Ready,
                    Some("drain") => AdminState::Drain,
                    Some("maint") => AdminState::Maint,
                    _ => {
                        return Err(format!(
                            "\"state\" must be \"ready\", \"drain\" or \"maint\", found {value}"
                        ))
                    }
                })
            }
            "spread" => {
                let text = value.as_str().ok_or_else(|| {
                    format!("\"spread\" must be a duration like \"60s\", found {value}")
                })?;
                change.spread = Some(parse_duration(text).map_err(|e| format!("\"spread\": {e}"))?);
            }
            "weight" => {
                let w = value
                    .as_u64()
                    .filter(|w| (1..=1000).contains(w))
                    .ok_or_else(|| {
                        format!("\"weight\" must be a whole number from 1 to 1000, found {value}")
                    })?;
                change.weight = Some(w as u32);
            }
            other => {
                return Err(format!(
                    "unknown field {other:?}; valid fields: state, spread, weight"
                ))
            }
        }
    }
    Ok(change)
}

fn change(hub: &Hub, backend: &str, server: &str, body: &[u8]) -> ApiAnswer {
    let change = match parse_change(body) {
        Ok(c) => c,
        Err(e) => return error(400, e),
    };
    match hub.directory.change(backend, server, change) {
        Ok(entry) => json_answer(200, &entry),
        Err(ChangeError::UnknownBackend) => error(404, format!("unknown backend {backend:?}")),
        Err(ChangeError::UnknownServer) => error(
            404,
            format!("unknown server {server:?} in backend {backend:?}"),
        ),
    }
}

/// Asks the control thread to reload and waits for the outcome.
fn reload(hub: &Hub) -> ApiAnswer {
    let reply = Mailbox::new();
    hub.calls.send(Call::Reload(reply.clone()));
    match reply.recv_blocking(RELOAD_WAIT) {
        Some(Ok(generation)) => json_answer(200, &json!({ "generation": generation })),
        Some(Err(errors)) => json_answer(422, &json!({ "errors": errors })),
        None => error(504, "the reload did not finish in time"),
    }
}

/// Starts the `ringway-api` thread: it answers the control API requests the cores hand over
/// (the admin listener's `/api/`), one at a time.
pub fn start_worker(hub: &Arc<Hub>) -> Result<(), String> {
    let weak = Arc::downgrade(hub);
    let jobs = hub.api.clone();
    std::thread::Builder::new()
        .name("ringway-api".into())
        .spawn(move || loop {
            let Some(job) = jobs.recv_blocking(WORKER_POLL) else {
                if weak.strong_count() == 0 {
                    return;
                }
                continue;
            };
            let Some(hub) = weak.upgrade() else { return };
            let a = answer(&hub, &job.method, &job.target, &job.body);
            job.reply.send(a);
        })
        .map(|_| ())
        .map_err(|e| {
            warn!(error = %e, "cannot start the control API thread");
            format!("cannot start the control API thread: {e}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_paths_are_decoded() {
        let p = server_path("/api/backends/chat/servers/127.0.0.1%3A9001");
        assert_eq!(p, Some(Ok(("chat".into(), "127.0.0.1:9001".into()))));
        let p = server_path("/api/backends/chat/servers/chat.internal%3A9001%20(10.0.0.5)");
        assert_eq!(
            p,
            Some(Ok(("chat".into(), "chat.internal:9001 (10.0.0.5)".into())))
        );
        assert_eq!(server_path("/api/backends/chat/servers/"), None);
        assert_eq!(server_path("/api/backends/chat"), None);
        assert!(matches!(
            server_path("/api/backends/chat/servers/%zz"),
            Some(Err(_))
        ));
    }

    #[test]
    fn change_bodies() {
        let c = parse_change(br#"{"state": "drain", "spread": "60s", "weight": 3}"#).unwrap();
        assert_eq!(c.state, Some(AdminState::Drain));
        assert_eq!(c.spread, Some(Duration::from_secs(60)));
        assert_eq!(c.weight, Some(3));
        let c = parse_change(b"{}").unwrap();
        assert!(c.state.is_none() && c.spread.is_none() && c.weight.is_none());
        for bad in [
            &br#"{"state": "up"}"#[..],
            br#"{"weight": 0}"#,
            br#"{"weight": "3"}"#,
            br#"{"spread": "soon"}"#,
            br#"{"colour": "red"}"#,
            b"[1]",
            b"",
            b"{",
        ] {
            assert!(
                parse_change(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
