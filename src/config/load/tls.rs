//! The TLS keys: a vhost's `[vhost.tls]` (certificate and key files, checked to exist) with
//! `[vhost.tls.ocsp]` (stapling), a backend's `tls = { ca_file, server_name }`, and the
//! top-level `[tls]` (session resumption: `ticket_keys`, `session_cache`). Loading the
//! certificates themselves is `config::tls`'s work, at start-up and reload.

use std::path::Path;
use std::time::Duration;

use super::problems::Problems;
use super::spanned::{boolean, string, Section, Val};
use super::values::{absolute, count, duration, existing_file};
use crate::config::tickets::TicketKeys;
use crate::config::types::{BackendTls, Ocsp, TlsSettings, VHostTls};

/// `[tls] ticket_keys = "ticket.keys", session_cache = 20000`. The key file is read and
/// checked here, so `check` refuses what start and reload would.
pub(super) fn tls_settings(v: &Val<'_>, base_dir: &Path, p: &mut Problems) -> Option<TlsSettings> {
    let mut s = Section::of(v, "[tls]", p)?;
    let ticket_keys = s.opt("ticket_keys", p, |v, what, p| {
        let path = existing_file(v, what, base_dir, p)?;
        let at = v.span().start;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| p.add(at, format!("{}: {e}", path.display())))
            .ok()?;
        match TicketKeys::parse(&text) {
            Ok(keys) => Some((path, keys)),
            Err(e) => {
                p.add(at, format!("ticket_keys {}: {e}", path.display()));
                None
            }
        }
    });
    let session_cache = s.opt("session_cache", p, |v, what, p| {
        count(v, what, 1..=10_000_000, p)
    });
    s.finish(p);
    Some(TlsSettings {
        ticket_keys,
        session_cache: session_cache.unwrap_or(crate::config::tickets::SESSION_CACHE_DEFAULT),
    })
}

/// `tls = { ca_file = "...", server_name = "..." }` of a backend.
pub(super) fn backend_tls(v: &Val<'_>, base_dir: &Path, p: &mut Problems) -> Option<BackendTls> {
    let mut s = Section::of(v, "\"tls\"", p)?;
    let file = |v: &Val<'_>, what: &str, p: &mut Problems| existing_file(v, what, base_dir, p);
    let ca_at = s.get("ca_file").map(|v| v.span().start);
    let ca_file = s.req("ca_file", p, file);
    let name_at = s.get("server_name").map(|v| v.span().start);
    let server_name = s.opt("server_name", p, string).map(|n| n.v.to_string());
    s.finish(p);
    let tls = BackendTls {
        ca_file: ca_file?,
        server_name,
    };
    // The CA file is read as a start would read it: a file that holds no usable certificate
    // (or a bad server_name) is refused here, with its position.
    if let Err(e) = crate::config::tls::connector(&tls) {
        let at = if e.starts_with("server_name") {
            name_at
        } else {
            ca_at
        };
        p.add(at.unwrap_or(s_at(v)), e);
        return None;
    }
    Some(tls)
}

/// `[vhost.tls]`: `cert` and `key` files (checked to exist), and optional `[vhost.tls.ocsp]`.
pub(super) fn vhost_tls(
    v: &Val<'_>,
    what: &str,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<VHostTls> {
    let _ = what;
    let mut s = Section::of(v, "[vhost.tls]", p)?;
    let file = |v: &Val<'_>, what: &str, p: &mut Problems| existing_file(v, what, base_dir, p);
    let cert_at = s.get("cert").map(|v| v.span().start);
    let key_at = s.get("key").map(|v| v.span().start);
    let cert = s.req("cert", p, file);
    let key = s.req("key", p, file);
    let ocsp = s.opt("ocsp", p, |v, _, p| ocsp(v, base_dir, p)).flatten();
    s.finish(p);
    let (cert, key) = (cert?, key?);
    // Loaded as a start loads them: PEM that parses, a key rustls can use, and a key that
    // belongs to the certificate.
    if let Err(e) = crate::config::tls::load_certified_key(&cert, &key) {
        let key_text = key.display().to_string();
        let at = if e.starts_with(&key_text) {
            key_at
        } else {
            cert_at
        };
        p.add(at.unwrap_or(s_at(v)), e);
        return None;
    }
    Some(VHostTls { cert, key, ocsp })
}

/// `[vhost.tls.ocsp]`; `None` when `enabled = false`.
fn ocsp(v: &Val<'_>, base_dir: &Path, p: &mut Problems) -> Option<Option<Ocsp>> {
    let mut s = Section::of(v, "[vhost.tls.ocsp]", p)?;
    let enabled = s.opt("enabled", p, boolean).unwrap_or(true);
    let responder = s.opt("responder", p, string).and_then(|r| {
        if r.v.starts_with("http://") {
            Some(r.v.to_string())
        } else {
            p.add(
                r.at,
                format!("\"responder\" must be an http:// URL, found {:?}", r.v),
            );
            None
        }
    });
    let file = |v: &Val<'_>, what: &str, p: &mut Problems| existing_file(v, what, base_dir, p);
    let ca_at = s.get("ca_file").map(|v| v.span().start);
    let ca_file = s.opt("ca_file", p, file);
    if let (Some(ca), Some(at)) = (&ca_file, ca_at) {
        if let Err(e) = crate::config::tls::first_cert(ca) {
            p.add(at, e);
        }
    }
    let cache_dir = s
        .opt("cache_dir", p, string)
        .map(|d| absolute(base_dir.join(d.v)));
    let retry_min = s
        .opt("retry_min", p, duration)
        .unwrap_or(Duration::from_secs(60));
    let retry_max = s
        .opt("retry_max", p, duration)
        .unwrap_or(Duration::from_secs(3600));
    s.finish(p);
    Some(enabled.then_some(Ocsp {
        responder,
        ca_file,
        cache_dir,
        retry_min,
        retry_max: retry_max.max(retry_min),
    }))
}

/// Where a value starts.
fn s_at(v: &Val<'_>) -> usize {
    v.span().start
}
