//! The backend directory: every backend's servers, their source, admin state and weight.
//!
//! PLACEHOLDER on the "api" branch: the real directory comes from the "dns" branch (issue 19
//! §1, §3), which owns this file; the lead replaces it at merge. The public items below are the
//! contract between the two branches; the bodies are trivial (no backends, every change
//! refused with `UnknownBackend`).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    Ready,
    Drain,
    Maint,
}

#[derive(Debug, Default, Clone)]
pub struct ServerChange {
    pub state: Option<AdminState>,
    pub spread: Option<Duration>,
    pub weight: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    UnknownBackend,
    UnknownServer,
}

/// Placeholder: holds nothing.
#[derive(Debug, Default)]
pub struct Directory {
    _private: (),
}

impl Directory {
    /// The body of `GET /api/backends` (placeholder: no backends).
    pub fn backends(&self) -> serde_json::Value {
        serde_json::json!({ "backends": [] })
    }

    /// `POST /api/backends/{backend}/servers/{server}`, `server` already percent-decoded
    /// (placeholder: every backend is unknown).
    pub fn change(
        &self,
        _backend: &str,
        _server: &str,
        _change: ServerChange,
    ) -> Result<serde_json::Value, ChangeError> {
        Err(ChangeError::UnknownBackend)
    }
}
