//! The access log's per-core buffer: lines are formatted into it (`crate::observe::accesslog`) and
//! written out with one `write` at least once a second (`flusher`), when it passes
//! `FLUSH_BYTES`, and when the core stops: never a syscall per request. Each core opens the
//! file itself with `O_APPEND`, so whole-buffer writes from several cores never interleave
//! within a line. SIGUSR1 reopens it (`reopen`), for logrotate.

use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::time::Duration;

use tracing::warn;

use crate::config::{AccessFormat, AccessTarget, Log};
use crate::observe::accesslog::{self, Entry};

/// A buffer this full is written at once, without waiting for the next tick.
const FLUSH_BYTES: usize = 64 * 1024;
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

struct Sink {
    target: AccessTarget,
    format: AccessFormat,
    file: Option<File>,
    buf: Vec<u8>,
}

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static SINK: RefCell<Sink> = const {
        RefCell::new(Sink {
            target: AccessTarget::Off,
            format: AccessFormat::Combined,
            file: None,
            buf: Vec::new(),
        })
    };
}

fn open(path: &std::path::Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Start-up check: the log file can be opened.
/// An existing file is opened for appending; a new one is not created here (`ringway check`
/// must not create it): its directory must exist and be writable.
pub fn check_target(log: &Log) -> Result<(), String> {
    let AccessTarget::File(path) = &log.access else {
        return Ok(());
    };
    let fail = |e: &dyn std::fmt::Display| format!("access log {}: {e}", path.display());
    if path.exists() {
        return OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| fail(&e));
    }
    let dir = match path.parent() {
        Some(d) if d.is_dir() => d,
        _ => return Err(fail(&"its directory does not exist")),
    };
    let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str()))
        .map_err(|e| fail(&e))?;
    // SAFETY: a NUL-terminated path; access(2) only reads it.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
        return Err(fail(&format_args!(
            "cannot create it in {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Whether lines are wanted (a thread-local flag: the request path checks only this).
pub fn enabled() -> bool {
    ON.with(Cell::get)
}

/// Applies `[log]` on this core (at start and on reload); reopens the file if it changed.
pub fn configure(log: &Log) {
    flush();
    SINK.with(|s| {
        let mut s = s.borrow_mut();
        if s.target != log.access {
            s.file = None;
            s.target = log.access.clone();
            if let AccessTarget::File(path) = &s.target {
                match open(path) {
                    Ok(f) => s.file = Some(f),
                    Err(e) => {
                        warn!(file = %path.display(), error = %e, "cannot open the access log")
                    }
                }
            }
        }
        s.format = log.access_format;
    });
    ON.with(|on| on.set(log.access != AccessTarget::Off));
}

pub fn record(entry: &Entry<'_>) {
    let full = SINK.with(|s| {
        let mut s = s.borrow_mut();
        let format = s.format;
        accesslog::write(&mut s.buf, entry, format);
        s.buf.len() >= FLUSH_BYTES
    });
    if full {
        flush();
    }
}

/// Writes what is buffered.
pub fn flush() {
    SINK.with(|s| {
        let mut s = s.borrow_mut();
        if s.buf.is_empty() {
            return;
        }
        let s = &mut *s;
        let result = match (&s.target, s.file.as_mut()) {
            (AccessTarget::Stderr, _) => std::io::stderr().lock().write_all(&s.buf),
            (AccessTarget::File(_), Some(f)) => f.write_all(&s.buf),
            _ => Ok(()),
        };
        if let Err(e) = result {
            warn!(error = %e, "access log write failed; lines dropped");
        }
        s.buf.clear();
        if s.buf.capacity() > FLUSH_BYTES * 2 {
            s.buf.shrink_to(FLUSH_BYTES);
        }
    });
}

/// SIGUSR1: write what is buffered, then open the file again (after logrotate moved it).
pub fn reopen() {
    flush();
    SINK.with(|s| {
        let mut s = s.borrow_mut();
        if let AccessTarget::File(path) = &s.target {
            match open(path) {
                Ok(f) => s.file = Some(f),
                Err(e) => warn!(file = %path.display(), error = %e, "cannot reopen the access log"),
            }
        }
    });
}

/// The per-core flush tick.
pub async fn flusher() {
    loop {
        glommio::timer::sleep(FLUSH_INTERVAL).await;
        flush();
    }
}
