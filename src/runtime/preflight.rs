//! Checks that run before anything serves, so that a start that cannot work fails with one
//! clear line instead of a panic or a silent half-start:
//!
//! - `io_uring`: one raw `io_uring_setup` call; a seccomp profile, `kernel.io_uring_disabled`
//!   or an old kernel are named with their errno.
//! - `probe_listeners`: each listener address bound once without `SO_REUSEPORT`, so a second
//!   Ringway (or anything else) on the same address is refused instead of sharing its traffic.
//! - `raise_nofile`: the soft `RLIMIT_NOFILE` raised to the hard limit, with a warning when
//!   `cores × max_connections × 2` exceeds it.
//! - `files`: what start, reload and `ringway check` all check beyond the file itself
//!   (certificates and keys, backend CA files, the access log, OCSP issuers and responders).
//! - `is_ringway`: whether a pid names a running Ringway (`ringway reload` / `upgrade`).
//!
//! May import: `conn::access`, `control::ocsp`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tracing::warn;

use crate::config::tls::CertSlot;
use crate::config::Config;

/// `io_uring_setup(2)`'s number (the same on every architecture since 5.1's unified table).
const SYS_IO_URING_SETUP: libc::c_long = 425;

/// Sets up (and closes) one small ring. `Err` is the one line to print.
pub fn io_uring() -> Result<(), String> {
    // struct io_uring_params is 120 bytes; zeroed means no flags.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes at most size_of(io_uring_params) bytes at the
    // pointer; the buffer is that size.
    let fd = unsafe { libc::syscall(SYS_IO_URING_SETUP, 1 as libc::c_uint, params.as_mut_ptr()) };
    if fd >= 0 {
        // SAFETY: a descriptor this call just created and nothing else owns.
        unsafe { libc::close(fd as libc::c_int) };
        return Ok(());
    }
    let err = io::Error::last_os_error();
    let errno = err.raw_os_error().unwrap_or(0);
    let (name, cause) = match errno {
        libc::EPERM => (
            "EPERM",
            "a seccomp profile or kernel.io_uring_disabled blocks it",
        ),
        libc::EACCES => (
            "EACCES",
            "a security module or kernel.io_uring_disabled blocks it",
        ),
        libc::ENOSYS => (
            "ENOSYS",
            "the kernel has no io_uring (older than 5.1 or built without it) or a seccomp profile hides it",
        ),
        libc::ENOMEM => ("ENOMEM", "the locked-memory limit (ulimit -l) is too low"),
        libc::EMFILE => ("EMFILE", "no file descriptor is left (ulimit -n)"),
        libc::ENFILE => ("ENFILE", "the system has no file descriptor left"),
        libc::EINVAL => ("EINVAL", "the kernel refused the ring's parameters"),
        _ => ("errno", "unexpected error"),
    };
    let name = if name == "errno" {
        format!("errno {errno}")
    } else {
        name.to_string()
    };
    Err(format!(
        "io_uring is not available (io_uring_setup: {name}): {cause}; see README \"Containers\""
    ))
}

/// Binds every listener address once, without `SO_REUSEPORT` (with `SO_REUSEADDR`, so
/// connections left in TIME_WAIT by an earlier run do not count), and closes it again: an
/// address another process listens on fails here, before any shared socket is bound and before
/// the pid file is touched. Addresses for which `inherited` says a socket was handed over (by
/// an upgrading parent) are skipped.
pub fn probe_listeners(
    config: &Config,
    inherited: impl Fn(&str, SocketAddr) -> bool,
) -> Result<(), String> {
    use socket2::{Domain, Protocol, Socket, Type};
    for l in &config.listeners {
        if inherited(&l.name, l.address) {
            continue;
        }
        let domain = if l.address.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let probe = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP))
            .and_then(|s| s.set_reuse_address(true).map(|()| s))
            .and_then(|s| s.bind(&l.address.into()));
        if let Err(e) = probe {
            return Err(bind_error(&l.name, l.address, &e));
        }
    }
    Ok(())
}

/// `listener NAME: cannot listen on ADDR: address already in use (...)`.
fn bind_error(name: &str, address: SocketAddr, e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => format!(
            "listener {name}: cannot listen on {address}: address already in use \
             (another process listens there; is Ringway already running?)"
        ),
        Some(libc::EACCES) => format!(
            "listener {name}: cannot listen on {address}: permission denied \
             (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        ),
        _ => format!("listener {name}: cannot listen on {address}: {e}"),
    }
}

/// Descriptors one configuration may need: every core's connections, two each (client and
/// backend).
pub fn descriptors_wanted(config: &Config) -> u64 {
    (0..config.runtime.cores)
        .map(|id| {
            config
                .runtime
                .core_overrides
                .iter()
                .find(|o| o.id == id)
                .and_then(|o| o.max_connections)
                .unwrap_or(config.runtime.max_connections) as u64
        })
        .sum::<u64>()
        .saturating_mul(2)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, and warns once when the configuration
/// could need more. Returns the limit in force.
pub fn raise_nofile(config: &Config) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `lim`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        } else {
            warn!(
                error = %io::Error::last_os_error(),
                "cannot raise RLIMIT_NOFILE to its hard limit {}",
                lim.rlim_max
            );
        }
    }
    let limit = lim.rlim_cur;
    let wanted = descriptors_wanted(config);
    if wanted > limit {
        warn!(
            "RLIMIT_NOFILE is {limit}, below cores × max_connections × 2 = {wanted}: \
             connections past the limit are refused (raise LimitNOFILE= or ulimit -n, \
             or lower max_connections)"
        );
    }
    limit
}

/// What start, reload and `ringway check` check beyond the file itself: every certificate
/// and key (loaded, matching), backend CA files, the access log (its directory, or the file
/// when it exists, writable), and what OCSP stapling needs (an issuer and a responder).
/// Returns the loaded certificates.
pub fn files(config: &Config) -> Result<Vec<Option<Arc<CertSlot>>>, String> {
    let slots = crate::config::tls::load_slots(config)?;
    crate::runtime::conn::access::check_target(&config.log)?;
    for b in &config.backends {
        if let Some(t) = &b.tls {
            crate::config::tls::connector(t).map_err(|e| format!("backend {}: {e}", b.name))?;
        }
    }
    crate::runtime::control::ocsp::check(config, &slots)?;
    Ok(slots)
}

/// Whether `pid` is a running Ringway: its command name (`/proc/PID/comm`) or its
/// executable's file name starts with "ringway". `Err` says what it is instead.
pub fn is_ringway(pid: i32) -> Result<(), String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map_err(|_| format!("no process {pid} is running (a stale pid file?)"))?;
    let comm = comm.trim();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let exe_name = exe
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if comm.starts_with("ringway") || exe_name.starts_with("ringway") {
        Ok(())
    } else {
        Err(format!(
            "pid {pid} is not a ringway (it is {comm:?}): a stale pid file? nothing was signalled"
        ))
    }
}
