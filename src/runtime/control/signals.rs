//! The control thread (the process's main thread, once the cores run): signals, configuration
//! reloads and binary upgrades. Nothing here is on a data path.
//!
//! - SIGHUP: reload. The file is read and checked as `ringway check` does; a bad config is
//!   refused (each problem logged as FILE:LINE:COL) and the old one keeps serving. A good one
//!   becomes a new `Generation` that every core swaps in.
//! - SIGTERM, SIGINT: graceful drain; a second one exits at once. With `timeouts.lameduck`,
//!   the drain waits that long first (serving normally while `/healthz` answers 503); a second
//!   signal then skips the wait, a third exits.
//! - SIGUSR1: the access log files are reopened (logrotate).
//! - SIGUSR2: binary upgrade. A new process is started from the current executable with the
//!   same arguments; it receives every listening socket over a Unix socket (SCM_RIGHTS), so
//!   no bind gap opens, and says when it serves. Then this process drains.
//!
//! Signals are taken with `signal-hook` by one dedicated thread, `ringway-signals`, the only
//! thread in which they are unblocked: `start` blocks them in the calling thread before any
//! other thread exists (every later thread inherits that mask), registers signal-hook's
//! handlers, then starts that thread, which unblocks them and forwards each one over a channel.
//! A process-directed signal goes to a thread that does not block it, so the handler runs
//! there only, never on a core or on this thread, whose blocking socket calls with a time-out
//! (the upgrade hand-over's reads) would fail with EINTR otherwise. A signal that arrives
//! before that thread unblocks stays pending and is delivered then; one that arrives before
//! `serve` waits in the channel. A new process started by an upgrade gets an empty mask and
//! default dispositions (std's `Command` clears the mask before exec; exec resets handlers).
//!
//! One piece stays hand-written on purpose, though a crate exists for it:
//! - `sd_notify`: `sd-notify` (0.5) connects to `$NOTIFY_SOCKET` as a path only; the function
//!   below also takes systemd's `@name` abstract sockets, in safe std code.

use std::ffi::OsString;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::{self, MaybeUninit};
use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use signal_hook::iterator::Signals;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tracing::{error, info, warn};

use crate::config::{self, Config};
use crate::runtime::control::hub::{Call, Generation, Hub, Msg};

/// The environment variable that tells a new process where its parent hands over sockets.
const UPGRADE_ENV: &str = "RINGWAY_UPGRADE_SOCKET";
/// How long an upgrade waits for the new process to serve.
const UPGRADE_WAIT: Duration = Duration::from_secs(30);
/// Descriptors per SCM_RIGHTS message (the kernel's limit is 253).
const FDS_PER_MESSAGE: usize = 64;
/// How long a reload waits for each core to confirm the swap.
const RELOAD_ACK_WAIT: Duration = Duration::from_secs(5);
/// How often the control thread looks whether the cores have all stopped.
const SIGNAL_POLL: Duration = Duration::from_millis(200);

const SIGNALS: [libc::c_int; 5] = [
    libc::SIGHUP,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initializes the set; sigaddset takes valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks (`SIG_BLOCK`) or unblocks (`SIG_UNBLOCK`) the control signals in this thread.
fn mask(how: libc::c_int) {
    let set = signal_set();
    // SAFETY: a valid, initialized set; the old mask is not wanted.
    unsafe {
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// The control signals as they arrive, from the `ringway-signals` thread.
pub struct Incoming {
    rx: Receiver<libc::c_int>,
    /// Ends the thread's `forever` loop when the control thread is done.
    handle: signal_hook::iterator::Handle,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Blocks the control signals in this thread and every thread started after (call it before
/// any other thread starts), then starts the one thread that takes them (module doc).
pub fn start() -> Result<Incoming, String> {
    mask(libc::SIG_BLOCK);
    // The handlers are registered before any thread unblocks the signals: one that is already
    // pending is delivered to the handler, not to the default action.
    let mut signals =
        Signals::new(SIGNALS).map_err(|e| format!("cannot register signal handlers: {e}"))?;
    let handle = signals.handle();
    let (tx, rx) = crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new()
        .name("ringway-signals".into())
        .spawn(move || {
            mask(libc::SIG_UNBLOCK);
            for signal in signals.forever() {
                if tx.send(signal).is_err() {
                    break;
                }
            }
            // Signals that come later stay pending: no thread has them unblocked.
            mask(libc::SIG_BLOCK);
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(Incoming {
        rx,
        handle,
        thread: Some(thread),
    })
}

/// `ringway reload` / `ringway upgrade`: signals the process named in `[runtime] pid_file`.
pub fn send_signal(config: &Config, signal: libc::c_int) -> Result<u32, String> {
    let path = config
        .runtime
        .pid_file
        .as_ref()
        .ok_or("the config has no [runtime] pid_file: cannot find the running process")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| format!("{}: not a process id: {:?}", path.display(), text.trim()))?;
    crate::runtime::preflight::is_ringway(pid).map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: kill with a pid read from the pid file and a valid signal number.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(format!(
            "signal to pid {pid}: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(pid as u32)
}

/// Listening sockets handed over by an upgrading parent, by listener name and address.
#[derive(Default)]
pub struct Inherited {
    fds: Mutex<Vec<(String, SocketAddr, OwnedFd)>>,
    /// The connection to the parent, to tell it when this process serves.
    parent: Mutex<Option<UnixStream>>,
}

impl Inherited {
    /// Whether a socket for this listener was handed over (a binary upgrade).
    pub fn has(&self, name: &str, address: SocketAddr) -> bool {
        self.fds
            .lock()
            .is_ok_and(|fds| fds.iter().any(|(n, a, _)| n == name && *a == address))
    }

    /// Adds a socket bound by this process (before dropping privileges): a core takes it as
    /// it takes an inherited one.
    pub fn add(&self, name: &str, address: SocketAddr, fd: OwnedFd) {
        if let Ok(mut fds) = self.fds.lock() {
            fds.push((name.to_string(), address, fd));
        }
    }

    /// One inherited socket for this listener, if one is left; each is handed out once.
    pub fn take(&self, name: &str, address: SocketAddr) -> Option<RawFd> {
        let mut fds = self.fds.lock().ok()?;
        let i = fds
            .iter()
            .position(|(n, a, _)| n == name && *a == address)?;
        Some(fds.remove(i).2.into_raw_fd())
    }
}

/// At start: the sockets from an upgrading parent (none when not started by an upgrade).
pub fn inherited_listeners() -> Arc<Inherited> {
    let inherited = Inherited::default();
    let Some(path) = std::env::var_os(UPGRADE_ENV) else {
        return Arc::new(inherited);
    };
    // Children of this process must not take the variable for their own.
    std::env::remove_var(UPGRADE_ENV);
    match receive_listeners(Path::new(&path)) {
        Ok((fds, stream)) => {
            info!(
                sockets = fds.len(),
                "upgrade: took over the parent's listening sockets"
            );
            if let Ok(mut f) = inherited.fds.lock() {
                *f = fds;
            }
            if let Ok(mut p) = inherited.parent.lock() {
                *p = Some(stream);
            }
        }
        Err(e) => warn!(error = %e, "upgrade: no sockets from the parent; binding anew"),
    }
    Arc::new(inherited)
}

/// Closes inherited sockets no core took (this process has fewer cores or listeners).
pub fn close_unused_inherited(inherited: &Inherited, _used: &[(String, SocketAddr, RawFd)]) {
    if let Ok(mut fds) = inherited.fds.lock() {
        for (name, addr, fd) in fds.drain(..) {
            info!(listener = %name, address = %addr, "upgrade: inherited socket not needed; closed");
            drop(fd);
        }
    }
}

/// What the control thread keeps.
pub struct Control {
    signals: Incoming,
    hub: Arc<Hub>,
    gen: Arc<Generation>,
    config_path: PathBuf,
    /// Every core's listening sockets (for an upgrade).
    sockets: Vec<(String, SocketAddr, RawFd)>,
    draining: bool,
    /// After SIGTERM with `timeouts.lameduck`: when the drain begins.
    lame_duck_until: Option<Instant>,
    inherited_parent: Option<UnixStream>,
    /// The executable's path as it was at start: an upgrade starts whatever is there now.
    exe: Option<PathBuf>,
}

impl Control {
    pub fn new(
        hub: Arc<Hub>,
        gen: Arc<Generation>,
        config_path: PathBuf,
        sockets: Vec<(String, SocketAddr, RawFd)>,
        inherited: &Inherited,
        signals: Incoming,
    ) -> Control {
        Control {
            signals,
            hub,
            gen,
            config_path,
            sockets,
            draining: false,
            lame_duck_until: None,
            inherited_parent: inherited.parent.lock().ok().and_then(|mut p| p.take()),
            exe: executable_path(),
        }
    }

    pub fn write_pid_file(&self) {
        let Some(path) = &self.gen.config.runtime.pid_file else {
            return;
        };
        let tmp = path.with_extension("tmp");
        let result = std::fs::write(&tmp, format!("{}\n", std::process::id()))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = result {
            warn!(file = %path.display(), error = %e, "cannot write the pid file");
        }
    }

    /// Removes the pid file if it still names this process (after an upgrade it names the
    /// new one).
    pub fn remove_pid_file(&self) {
        let Some(path) = &self.gen.config.runtime.pid_file else {
            return;
        };
        let mine =
            std::fs::read_to_string(path).is_ok_and(|t| t.trim() == std::process::id().to_string());
        if mine {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Under systemd (`Type=notify`, `NotifyAccess=all`): this process serves and is the
    /// service's main process (after an upgrade, the new one takes over as main process).
    pub fn notify_systemd_ready(&self) {
        sd_notify(&format!("READY=1\nMAINPID={}\n", std::process::id()));
    }

    /// Started by an upgrade: tell the parent that this process serves (it then drains).
    pub fn notify_upgrade_parent(&mut self) {
        if let Some(mut s) = self.inherited_parent.take() {
            if let Err(e) = s.write_all(b"R") {
                warn!(error = %e, "upgrade: cannot tell the parent that this process serves");
            }
        }
    }

    /// Takes signals and control calls until every core has stopped.
    pub fn serve(&mut self) {
        let cores = self.hub.cores.len();
        let calls = self.hub.calls.clone();
        while self.hub.stopped.load(Ordering::Acquire) < cores {
            let wait = self.lame_duck_until.map_or(SIGNAL_POLL, |t| {
                t.saturating_duration_since(Instant::now()).min(SIGNAL_POLL)
            });
            crossbeam_channel::select! {
                recv(self.signals.rx) -> signal => match signal {
                    Ok(signal) => self.on_signal(signal),
                    // The signal thread is gone (it never is while this runs); keep the pace.
                    Err(_) => std::thread::sleep(wait),
                },
                recv(calls.receiver()) -> call => match call {
                    Ok(Call::Reload(reply)) => reply.send(self.reload()),
                    Err(_) => std::thread::sleep(wait),
                },
                default(wait) => {}
            }
            if self.lame_duck_until.is_some_and(|t| Instant::now() >= t) {
                self.lame_duck_until = None;
                self.drain("lame duck over", false);
            }
        }
    }

    fn on_signal(&mut self, signal: libc::c_int) {
        match signal {
            libc::SIGHUP => {
                let _ = self.reload();
            }
            libc::SIGTERM | libc::SIGINT if self.draining => {
                info!("second stop signal: exiting now");
                self.remove_pid_file();
                std::process::exit(0);
            }
            libc::SIGTERM | libc::SIGINT if self.lame_duck_until.is_some() => {
                self.lame_duck_until = None;
                self.drain("second stop signal: lame duck skipped", false);
            }
            libc::SIGTERM | libc::SIGINT => self.stop(),
            libc::SIGUSR1 => {
                info!("SIGUSR1: reopening the access log");
                self.hub.broadcast(|| Msg::ReopenLog);
            }
            libc::SIGUSR2 => self.upgrade(),
            _ => {}
        }
    }

    /// The first stop signal: `/healthz` answers 503 from now on; the drain begins after
    /// `timeouts.lameduck` (at once when it is zero).
    fn stop(&mut self) {
        self.hub.leaving.store(true, Ordering::Relaxed);
        let lameduck = self.gen.config.timeouts.lameduck;
        if lameduck.is_zero() {
            self.drain("stop signal", false);
        } else {
            info!(
                ?lameduck,
                "stop signal: lame duck (serving normally, /healthz answers 503), then draining"
            );
            self.lame_duck_until = Some(Instant::now() + lameduck);
        }
    }

    fn drain(&mut self, why: &str, handover: bool) {
        if self.draining {
            return;
        }
        self.draining = true;
        self.hub.leaving.store(true, Ordering::Relaxed);
        info!(
            timeout = ?self.gen.config.timeouts.drain,
            "{why}: draining (no new connections; tunnels close with 1001)"
        );
        self.hub.broadcast(|| Msg::Drain { handover });
    }

    /// SIGHUP (and `POST /api/reload`): checks the file as `ringway check` does and, when it
    /// is good, serves it. Returns the new generation once every core swapped (or timed out),
    /// or every problem as `FILE:LINE:COL: message`.
    fn reload(&mut self) -> Result<u64, Vec<String>> {
        let file = self.config_path.display().to_string();
        let mut config = match config::load(&self.config_path) {
            Ok(c) => {
                for w in &c.warnings {
                    warn!("{file}:{}:{}: warning: {}", w.line, w.col, w.message);
                }
                c
            }
            Err(problems) => {
                for p in &problems {
                    error!("{file}:{}:{}: {}", p.line, p.col, p.message);
                }
                error!(
                    problems = problems.len(),
                    "reload refused: the config is invalid; the running config keeps serving"
                );
                self.hub.count_reload(false);
                let lines = problems.iter();
                return Err(lines
                    .map(|p| format!("{file}:{}:{}: {}", p.line, p.col, p.message))
                    .collect());
            }
        };
        let old = &self.gen.config;
        if config.runtime.cores != old.runtime.cores {
            warn!(
                was = old.runtime.cores,
                now = config.runtime.cores,
                "runtime.cores changed: that needs a restart; keeping {}",
                old.runtime.cores
            );
            config.runtime.cores = old.runtime.cores;
        }
        if let Err(e) = keep_core_settings(&mut config, old) {
            error!("{e}; the running config keeps serving");
            self.hub.count_reload(false);
            return Err(vec![e]);
        }
        match self.prepare(config) {
            Ok(gen) => {
                for slot in self.gen.slots.iter().flatten() {
                    slot.retired.store(true, Ordering::Relaxed);
                }
                self.configure_directory(&gen);
                // Every core swaps before the reload is reported done (log, metrics).
                let acks = crate::runtime::control::hub::Mailbox::new();
                self.hub
                    .broadcast(|| Msg::Reload(gen.clone(), acks.clone()));
                let cores = self.hub.cores.len();
                let acked = (0..cores)
                    .take_while(|_| acks.recv_blocking(RELOAD_ACK_WAIT).is_some())
                    .count();
                if acked < cores {
                    warn!(acked, cores, "reload: not every core confirmed in time");
                }
                self.hub.generation.store(gen.number, Ordering::Relaxed);
                self.hub.count_reload(true);
                info!(generation = gen.number, "configuration reloaded");
                let number = gen.number;
                self.gen = gen;
                Ok(number)
            }
            Err(e) => {
                error!("{file}: {e}");
                error!("reload refused; the running config keeps serving");
                self.hub.count_reload(false);
                Err(vec![format!("{file}: {e}")])
            }
        }
    }

    /// The directory follows the new configuration before the cores swap (they build their
    /// pools from what it publishes): states and weights survive for servers that remain.
    fn configure_directory(&self, gen: &Generation) {
        self.hub.directory.configure(&gen.config);
    }

    /// Everything a start would check beyond the file itself: certificates, keys, backend
    /// TLS, the access log; then the new OCSP core.
    fn prepare(&self, config: Config) -> Result<Arc<Generation>, String> {
        let slots = crate::runtime::preflight::files(&config)?;
        let config = Arc::new(config);
        crate::runtime::backend::pools::Backends::new(
            config.clone(),
            &crate::runtime::backend::servers::ServerSets::default(),
            0,
        )?;
        crate::runtime::control::ocsp::start(&config, &slots)?;
        let resumption = crate::config::tickets::Resumption::new(
            config.tls.ticket_keys.as_ref().map(|(_, k)| k),
            config.tls.session_cache,
        )?;
        Ok(Arc::new(Generation {
            resumption,
            number: self.hub.generation.load(Ordering::Relaxed) + 1,
            config,
            slots: Arc::new(slots),
        }))
    }

    /// SIGUSR2: starts the new binary, hands it the listening sockets, and drains once it
    /// serves. A new process that fails leaves this one serving.
    fn upgrade(&mut self) {
        if self.draining || self.lame_duck_until.is_some() {
            warn!("upgrade asked while draining; ignored");
            return;
        }
        // `/healthz` answers 503 from the moment the hand-off begins.
        self.hub.leaving.store(true, Ordering::Relaxed);
        match self.start_successor() {
            Ok(pid) => {
                info!(pid, "upgrade: the new process serves; this one drains");
                self.drain("upgrade", true);
            }
            Err(e) => {
                self.hub.leaving.store(false, Ordering::Relaxed);
                error!(error = %e, "upgrade failed; this process keeps serving");
            }
        }
    }

    fn start_successor(&self) -> Result<u32, String> {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("ringway-upgrade-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let result = self.hand_over(&listener, &path);
        let _ = std::fs::remove_file(&path);
        result
    }

    fn hand_over(&self, listener: &UnixListener, path: &Path) -> Result<u32, String> {
        let exe = self.exe.clone().ok_or("the executable's path is unknown")?;
        let args: Vec<OsString> = std::env::args_os().skip(1).collect();
        let mut child = Command::new(&exe)
            .args(&args)
            .env(UPGRADE_ENV, path)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let pid = child.id();
        info!(pid, exe = %exe.display(), "upgrade: new process started");
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("upgrade socket: {e}"))?;
        let deadline = Instant::now() + UPGRADE_WAIT;
        let mut stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("upgrade socket: {e}")),
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "the new process exited ({status}) before taking the sockets"
                ));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                return Err("the new process did not connect in time".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_read_timeout(Some(UPGRADE_WAIT)))
            .map_err(|e| format!("upgrade socket: {e}"))?;
        for chunk in self.sockets.chunks(FDS_PER_MESSAGE) {
            let text: String = chunk
                .iter()
                .map(|(name, addr, _)| format!("{name}\t{addr}\n"))
                .collect();
            let fds: Vec<BorrowedFd<'_>> = chunk
                .iter()
                // SAFETY: the cores' listening sockets stay open while the control thread
                // runs: they close on drain, and an upgrade is refused once draining.
                .map(|(_, _, fd)| unsafe { BorrowedFd::borrow_raw(*fd) })
                .collect();
            send_fds(&stream, text.as_bytes(), &fds)
                .map_err(|e| format!("sending sockets: {e}"))?;
        }
        send_fds(&stream, b"END\n", &[]).map_err(|e| format!("sending sockets: {e}"))?;
        let mut ready = [0u8; 1];
        match stream.read(&mut ready) {
            Ok(1) if ready[0] == b'R' => {
                // The child is not waited for: it outlives this process.
                std::mem::forget(child);
                Ok(pid)
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err("the new process did not start serving".into())
            }
        }
    }
}

/// sd_notify(3): one datagram to `$NOTIFY_SOCKET` when it is set (a path, or `@name` for an
/// abstract socket).
fn sd_notify(message: &str) {
    use std::os::linux::net::SocketAddrExt;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()),
        None => std::os::unix::net::SocketAddr::from_pathname(&path),
    };
    let sent = addr.and_then(|addr| {
        let socket = std::os::unix::net::UnixDatagram::unbound()?;
        socket.send_to_addr(message.as_bytes(), &addr)
    });
    if let Err(e) = sent {
        warn!(socket = %path, error = %e, "sd_notify failed");
    }
}

/// This executable's path. Read at start: once the file is replaced (a package upgrade),
/// `/proc/self/exe` reads `PATH (deleted)`.
fn executable_path() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let text = exe.to_string_lossy();
    Some(match text.strip_suffix(" (deleted)") {
        Some(path) => PathBuf::from(path),
        None => exe,
    })
}

/// One message with `fds` attached (SCM_RIGHTS).
fn send_fds(stream: &UnixStream, payload: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("too many descriptors for one message"));
    }
    rustix::net::sendmsg(
        stream,
        &[IoSlice::new(payload)],
        &mut control,
        SendFlags::empty(),
    )?;
    Ok(())
}

/// One message and the descriptors attached to it (close-on-exec in this process).
fn recv_fds(stream: &UnixStream) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut payload = vec![0u8; 64 * 1024];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = rustix::net::recvmsg(
        stream,
        &mut [IoSliceMut::new(&mut payload)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    payload.truncate(received.bytes);
    Ok((payload, fds))
}

type Sockets = Vec<(String, SocketAddr, OwnedFd)>;

/// The child's side of an upgrade: every socket the parent sends, until `END`.
fn receive_listeners(path: &Path) -> Result<(Sockets, UnixStream), String> {
    let stream = UnixStream::connect(path).map_err(|e| format!("{}: {e}", path.display()))?;
    stream
        .set_read_timeout(Some(UPGRADE_WAIT))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let deadline = Instant::now() + UPGRADE_WAIT;
    loop {
        // This runs before the signal thread exists, so a signal with a handler can land in
        // this thread; with a receive time-out set, the kernel then fails the call with EINTR
        // instead of restarting it (seen once in the suite): try again until the deadline.
        let (payload, fds) = match recv_fds(&stream) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted && Instant::now() < deadline => {
                continue
            }
            r => r.map_err(|e| e.to_string())?,
        };
        if payload.is_empty() {
            return Err("the parent closed the upgrade socket".into());
        }
        let text = String::from_utf8_lossy(&payload);
        if text == "END\n" {
            return Ok((out, stream));
        }
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() != fds.len() {
            return Err(format!("{} names for {} sockets", lines.len(), fds.len()));
        }
        for (line, fd) in lines.into_iter().zip(fds) {
            let (name, addr) = line.split_once('\t').ok_or("bad socket line")?;
            let addr: SocketAddr = addr.parse().map_err(|_| "bad socket address")?;
            out.push((name.to_string(), addr, fd));
        }
    }
}

/// `pin` and the `[[runtime.core]]` entries need a restart (executors are built with their CPU
/// and ring size, listeners are handed over by core at an upgrade): a change is logged and the
/// running settings are kept. A reload that would then leave a listener with no core accepting
/// on it is refused.
fn keep_core_settings(config: &mut Config, old: &Config) -> Result<(), String> {
    let (new, was) = (&mut config.runtime, &old.runtime);
    if new.core_overrides != was.core_overrides || new.pin != was.pin {
        warn!(
            "runtime.pin or [[runtime.core]] changed: that needs a restart; keeping the running \
             per-core settings"
        );
        new.core_overrides = was.core_overrides.clone();
        new.pin = was.pin;
    }
    match crate::config::cores::unaccepted(&config.runtime, &config.listeners) {
        Some(l) => Err(format!(
            "reload refused: no core accepts on listener {:?} with the running [[runtime.core]] \
             settings (a change to them needs a restart)",
            l.name
        )),
        None => Ok(()),
    }
}
