//! Small libc wrappers: the fd limit, bound non-blocking connects, CPU time, signals.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Raises the RLIMIT_NOFILE soft limit to the hard limit. Returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 0;
        }
        if rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        }
        rl.rlim_cur
    }
}

/// Starts a non-blocking TCP connect to `dst`, optionally from source address `src` (bound with
/// IP_BIND_ADDRESS_NO_PORT so the port is chosen at connect time, per destination). TCP_NODELAY
/// is set. The connect completes (or fails) asynchronously: wait for writability.
pub fn connect_nonblocking(
    dst: SocketAddr,
    src: Option<Ipv4Addr>,
) -> io::Result<mio::net::TcpStream> {
    let domain = if dst.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    unsafe {
        let fd = libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // From here the fd is owned by `stream`, which closes it on any error return.
        let stream = std::net::TcpStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        let optlen = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const _ as *const _,
            optlen,
        );
        if let Some(ip) = src {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const _ as *const _,
                optlen,
            );
            let (sa, len) = raw_sockaddr(SocketAddr::new(ip.into(), 0));
            if libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let (sa, len) = raw_sockaddr(dst);
        let rc = libc::connect(fd, &sa as *const _ as *const libc::sockaddr, len);
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(mio::net::TcpStream::from_std(stream))
    }
}

/// `a` as a C socket address (IPv4 or IPv6) and its length, for bind(2) and connect(2).
fn raw_sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid `sockaddr_storage`; the storage is large and aligned
    // enough for either address family.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            let sa = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_port = v4.port().to_be();
            sa.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sa = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_port = v6.port().to_be();
            sa.sin6_addr.s6_addr = v6.ip().octets();
            sa.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// User + system CPU seconds this process has used.
pub fn cpu_seconds() -> f64 {
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::Relaxed);
}

/// Makes SIGINT, SIGTERM and SIGUSR1 count up instead of killing the process: the first asks
/// for a graceful stop (`stop_requested`), a second for an immediate exit (`abort_requested`).
pub fn install_stop_signals() {
    unsafe {
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1] {
            libc::signal(s, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// True once one of the signals above arrived.
pub fn stop_requested() -> bool {
    SIGNALS.load(Ordering::Relaxed) >= 1
}

/// True once two of them arrived.
pub fn abort_requested() -> bool {
    SIGNALS.load(Ordering::Relaxed) >= 2
}

/// A non-blocking listener with SO_REUSEADDR and a deep accept queue (`backlog`, capped by
/// net.core.somaxconn). std and mio use 128, which overflows when thousands of clients connect
/// at once (dropped SYNs then cost a 1 s retransmit).
pub fn listen(addr: SocketAddr, backlog: i32) -> io::Result<mio::net::TcpListener> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    unsafe {
        let fd = libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let l = std::net::TcpListener::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const _ as *const _,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let (sa, len) = raw_sockaddr(addr);
        let rc = libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len);
        if rc != 0 || libc::listen(fd, backlog) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(mio::net::TcpListener::from_std(l))
    }
}

/// A non-blocking `timerfd` (CLOCK_MONOTONIC) that fires every `period`, first after one period.
/// The calling thread's timer slack is set to 1 ns so that short periods keep their pace (the
/// default 50 µs slack would stretch a 100 µs tick by half).
pub fn interval_timer(period: std::time::Duration) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
        let fd = libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
        let ts = libc::timespec {
            tv_sec: period.as_secs() as libc::time_t,
            tv_nsec: period.subsec_nanos() as libc::c_long,
        };
        let spec = libc::itimerspec {
            it_interval: ts,
            it_value: ts,
        };
        if libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(owned)
    }
}

/// Reads (and so re-arms the readiness of) a `timerfd`; returns the expirations since the last
/// read (0 if none).
pub fn drain_timer(fd: &std::os::fd::OwnedFd) -> u64 {
    use std::os::fd::AsRawFd;
    let mut n = 0u64;
    let r = unsafe { libc::read(fd.as_raw_fd(), &mut n as *mut u64 as *mut libc::c_void, 8) };
    if r == 8 {
        n
    } else {
        0
    }
}
