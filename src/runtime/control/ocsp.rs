//! The OCSP core: a dedicated executor (no listeners) that fetches OCSP responses, verifies
//! them (`crate::protocol::ocsp`, sans-IO) and publishes good ones into each certificate's `CertSlot`,
//! which serving cores read on every handshake without locks.
//!
//! Start-up: cached responses still valid are loaded, then every certificate is fetched once
//! (bounded by `STARTUP_FETCH_WAIT`) before the serving cores start, so the first handshake is
//! stapled when the responder is reachable. Then each certificate refreshes at half its
//! validity window (± jitter), retries failures with back-off, keeps the last good staple
//! through outages and drops it the moment it expires or the certificate is revoked.
//!
//! One OCSP core for the life of the process: a reload hands it the new generation's
//! certificates (`start`), and the previous generation's refresh loops are cancelled at once,
//! so nothing (threads, timers, sockets) accumulates across reloads.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::{LocalExecutorBuilder, Placement};
use tracing::{error, info, warn};

use crate::config::tls::CertSlot;
use crate::config::Config;
use crate::protocol::ocsp::{self, CertInfo, OcspError, Schedule, Staple};
use crate::runtime::control::hub::Mailbox;

/// How long start-up waits for the first fetches before serving anyway.
const STARTUP_FETCH_WAIT: Duration = Duration::from_secs(5);
/// One fetch (connect, send, read) must finish within this.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

struct Target {
    slot: Arc<CertSlot>,
    info: CertInfo,
    url: String,
    cache_file: Option<PathBuf>,
    schedule: Schedule,
    /// The staple being served, if any.
    current: Option<Staple>,
}

/// A generation's targets for the OCSP core, and where to say that the first fetches are done.
struct Configure {
    targets: Vec<Target>,
    ready: mpsc::Sender<()>,
}

/// The OCSP core's mailbox once it runs: one executor for the life of the process.
static CORE: Mutex<Option<Arc<Mailbox<Configure>>>> = Mutex::new(None);

/// Hands the OCSP core this generation's certificates (starting the core the first time any
/// certificate staples); returns once their first fetches are done (or `STARTUP_FETCH_WAIT`
/// passed). The previous generation's refresh loops stop at once, fetches in flight included:
/// one OCSP core serves every generation, so reloads start no thread. Errors are
/// configuration problems (no issuer, no URL).
pub fn start(config: &Config, slots: &[Option<Arc<CertSlot>>]) -> Result<(), String> {
    let targets = targets(config, slots)?;
    let mut core = CORE
        .lock()
        .map_err(|_| "the OCSP core's lock is poisoned".to_string())?;
    if targets.is_empty() && core.is_none() {
        return Ok(());
    }
    let mailbox = match &*core {
        Some(m) => m.clone(),
        None => {
            let mailbox = Mailbox::new();
            let inbox = mailbox.clone();
            LocalExecutorBuilder::new(Placement::Unbound)
                .name("ringway-ocsp")
                .io_memory(64 << 10)
                .spawn(move || async move { serve(inbox).await })
                .map_err(|e| format!("cannot start the OCSP core: {e}"))?;
            *core = Some(mailbox.clone());
            mailbox
        }
    };
    drop(core);
    let (ready, ready_rx) = mpsc::channel::<()>();
    mailbox.send(Configure { targets, ready });
    // Either every first fetch finished, or the wait ran out: serve in both cases.
    let _ = ready_rx.recv_timeout(STARTUP_FETCH_WAIT + Duration::from_secs(1));
    Ok(())
}

/// The OCSP core's main task: each generation's targets replace the previous ones, whose task
/// (and every fetch and timer under it) is dropped, which cancels it.
async fn serve(mailbox: Arc<Mailbox<Configure>>) {
    let mut current: Option<glommio::Task<()>> = None;
    loop {
        let Configure { targets, ready } = mailbox.recv().await;
        drop(current.take());
        current = Some(glommio::spawn_local(run(targets, ready)));
    }
}

/// What `start` would refuse (no issuer, no responder), without starting anything.
pub fn check(config: &Config, slots: &[Option<Arc<CertSlot>>]) -> Result<(), String> {
    targets(config, slots).map(drop)
}

fn targets(config: &Config, slots: &[Option<Arc<CertSlot>>]) -> Result<Vec<Target>, String> {
    let mut out = Vec::new();
    for (vhost, slot) in config.vhosts.iter().zip(slots) {
        let (Some(tls), Some(slot)) = (&vhost.tls, slot) else {
            continue;
        };
        let Some(o) = &tls.ocsp else { continue };
        let issuer = match &o.ca_file {
            Some(ca) => crate::config::tls::first_cert(ca)?,
            None => slot.chain_issuer().ok_or_else(|| {
                format!(
                    "vhost {}: OCSP needs the issuer: put it in the cert chain or set ca_file",
                    vhost.name
                )
            })?,
        };
        let info = CertInfo::new(&slot.leaf(), &issuer)
            .map_err(|e| format!("vhost {}: OCSP: {e}", vhost.name))?;
        let url = o
            .responder
            .clone()
            .or_else(|| info.aia_ocsp_url.clone())
            .ok_or_else(|| {
                format!(
                    "vhost {}: the certificate names no OCSP responder: set responder",
                    vhost.name
                )
            })?;
        let cache_file = o
            .cache_dir
            .as_ref()
            .map(|d| d.join(format!("{}-{}.ocsp.der", vhost.name, info.serial_hex())));
        if info.must_staple {
            warn!(vhost = %vhost.name, "certificate is must-staple: clients refuse it while no staple is held");
        }
        out.push(Target {
            slot: slot.clone(),
            info,
            url,
            cache_file,
            schedule: Schedule::new(o.retry_min, o.retry_max),
            current: None,
        });
    }
    Ok(out)
}

async fn run(targets: Vec<Target>, ready: mpsc::Sender<()>) {
    // First fetches run concurrently, each bounded, and all finish before serving starts.
    let firsts: Vec<_> = targets
        .into_iter()
        .map(|t| glommio::spawn_local(first_fetch(t)))
        .collect();
    let mut started = Vec::with_capacity(firsts.len());
    for f in firsts {
        started.push(f.await);
    }
    let _ = ready.send(());
    let loops: Vec<_> = started
        .into_iter()
        .map(|(mut t, mut next)| {
            glommio::spawn_local(async move {
                // A reload hands the core new targets, which cancels this task; a retired slot
                // is not refreshed in any case.
                while !t.slot.retired.load(Ordering::Relaxed) {
                    next = refresh_loop_step(&mut t, next).await;
                }
            })
        })
        .collect();
    for l in loops {
        l.await;
    }
}

/// Loads the cache, then fetches once within `STARTUP_FETCH_WAIT`.
async fn first_fetch(mut t: Target) -> (Target, SystemTime) {
    load_cache(&mut t);
    let first = future::or(async { Some(fetch(&t).await) }, async {
        glommio::timer::sleep(STARTUP_FETCH_WAIT).await;
        None
    })
    .await;
    let next = match first {
        Some(result) => apply(&mut t, result),
        None => apply(
            &mut t,
            Err("responder did not answer during start-up".into()),
        ),
    };
    (t, next)
}

/// Sleeps until the next refresh (or until the current staple expires, if sooner), then acts.
async fn refresh_loop_step(t: &mut Target, next: SystemTime) -> SystemTime {
    let now = SystemTime::now();
    let expiry = t.current.as_ref().map(Staple::expires_at);
    let wake = expiry.map_or(next, |e| e.min(next));
    if let Ok(d) = wake.duration_since(now) {
        glommio::timer::sleep(d).await;
    }
    let now = SystemTime::now();
    if t.current
        .as_ref()
        .is_some_and(|s| !ocsp::is_servable(s, now))
    {
        warn!(vhost = %t.slot.vhost, "OCSP staple expired; no longer stapling");
        t.current = None;
        t.slot.set_staple(None);
    }
    if now < next {
        return next;
    }
    let result = fetch(t).await;
    apply(t, result)
}

/// Records a fetch result; returns when to fetch next.
fn apply(t: &mut Target, result: Result<Staple, String>) -> SystemTime {
    let now = SystemTime::now();
    match result {
        Ok(staple) => {
            info!(
                vhost = %t.slot.vhost,
                this_update = %httpdate::fmt_http_date(staple.this_update),
                next_update = %staple.next_update.map_or("none".into(), httpdate::fmt_http_date),
                "OCSP staple updated (status good)"
            );
            t.slot.set_staple(Some(staple.der.clone()));
            t.slot
                .expiry_s
                .store(unix_s(staple.expires_at()), Ordering::Relaxed);
            t.slot.fetch_ok.fetch_add(1, Ordering::Relaxed);
            write_cache(t, &staple.der);
            t.schedule.on_success();
            let next = t.schedule.next_refresh(&staple, now, jitter());
            t.current = Some(staple);
            next
        }
        Err(e) => {
            t.slot.fetch_error.fetch_add(1, Ordering::Relaxed);
            if t.info.must_staple && t.current.is_none() {
                warn!(vhost = %t.slot.vhost, "must-staple certificate has no valid staple");
            }
            let next = t.schedule.on_failure(now);
            let retry = next.duration_since(now).unwrap_or_default();
            warn!(vhost = %t.slot.vhost, error = %e, retry_in = ?retry, stapled = t.current.is_some(), "OCSP fetch failed");
            next
        }
    }
}

/// One fetch: POST the request, read the answer, verify it. A revoked certificate stops
/// stapling at once and is logged loudly.
async fn fetch(t: &Target) -> Result<Staple, String> {
    let target = ocsp::http_post(&t.url, ocsp::build_request(&t.info).as_slice())
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let addr: SocketAddr = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .next()
            .ok_or("responder address did not resolve")?;
        let mut s = TcpStream::connect_timeout(addr, FETCH_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(&target.request_bytes)
            .await
            .map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        let mut limited = (&mut s).take(ocsp::MAX_HTTP_RESPONSE as u64 + 1);
        limited
            .read_to_end(&mut body)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(body)
    };
    let timer = async {
        glommio::timer::sleep(FETCH_TIMEOUT).await;
        Err("responder timed out".to_string())
    };
    let raw = future::or(exchange, timer).await?;
    let body = ocsp::parse_http_response(&raw).map_err(|e| e.to_string())?;
    match ocsp::verify(&body, &t.info, SystemTime::now()) {
        Ok(s) => Ok(s),
        Err(e @ OcspError::Revoked { .. }) => {
            error!(vhost = %t.slot.vhost, subject = %t.info.subject, "certificate revoked: {e}; never stapled");
            t.slot.set_staple(None);
            Err(e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn load_cache(t: &mut Target) {
    let Some(file) = &t.cache_file else { return };
    let Ok(der) = std::fs::read(file) else { return };
    match ocsp::verify(&der, &t.info, SystemTime::now()) {
        Ok(staple) => {
            info!(vhost = %t.slot.vhost, file = %file.display(), "OCSP staple loaded from cache");
            t.slot.set_staple(Some(staple.der.clone()));
            t.slot
                .expiry_s
                .store(unix_s(staple.expires_at()), Ordering::Relaxed);
            t.current = Some(staple);
        }
        Err(e) => {
            info!(vhost = %t.slot.vhost, file = %file.display(), error = %e, "cached OCSP response not usable")
        }
    }
}

/// Writes the response atomically: a temporary file in the same directory, then rename.
fn write_cache(t: &Target, der: &[u8]) {
    let Some(file) = &t.cache_file else { return };
    let tmp = file.with_extension("tmp");
    let result = std::fs::create_dir_all(file.parent().unwrap_or(file))
        .and_then(|()| std::fs::File::create(&tmp))
        .and_then(|mut f| f.write_all(der).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, file));
    if let Err(e) = result {
        warn!(vhost = %t.slot.vhost, file = %file.display(), error = %e, "cannot write OCSP cache");
    }
}

fn unix_s(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A value in [-1, 1] for the refresh jitter (spreads refreshes of many certificates).
fn jitter() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    f64::from(nanos % 2001) / 1000.0 - 1.0
}
