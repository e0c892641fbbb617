//! The control plane: messages between the process's control thread (signals, reloads) and the
//! cores, and between cores (metric snapshots). Never on the data path.
//!
//! A `Mailbox` is a crossbeam channel plus the waker of the one task that receives from it, so
//! a glommio task can await messages sent from any thread (glommio wakers may be woken from
//! other threads). The waker sits behind a mutex: it is touched once per control message, not
//! per request.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::config::tls::CertSlot;
use crate::config::Config;
use crate::observe::metrics::CoreSnapshot;
use crate::runtime::backend::servers::{Count, Note, ServerSets};
use crate::runtime::control::directory::{Directory, Links};

/// How long the directory waits for each core's counts.
const COUNTS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

pub struct Mailbox<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
    waker: Mutex<Option<Waker>>,
}

impl<T> Mailbox<T> {
    pub fn new() -> Arc<Mailbox<T>> {
        let (tx, rx) = crossbeam_channel::unbounded();
        Arc::new(Mailbox {
            tx,
            rx,
            waker: Mutex::new(None),
        })
    }

    pub fn send(&self, msg: T) {
        // Both ends live as long as the mailbox: sending cannot fail.
        let _ = self.tx.send(msg);
        let waker = self.waker.lock().map(|mut w| w.take()).unwrap_or(None);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The receiving end, for a thread that waits on several channels (`select!`).
    pub fn receiver(&self) -> &Receiver<T> {
        &self.rx
    }

    /// Blocking receive for a thread that is not a core (the control thread).
    pub fn recv_blocking(&self, timeout: std::time::Duration) -> Option<T> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next message. One task receives from a mailbox at a time.
    pub async fn recv(&self) -> T {
        poll_fn(|cx| {
            if let Ok(msg) = self.rx.try_recv() {
                return Poll::Ready(msg);
            }
            if let Ok(mut w) = self.waker.lock() {
                *w = Some(cx.waker().clone());
            }
            // A message sent between the first look and storing the waker is seen here.
            match self.rx.try_recv() {
                Ok(msg) => Poll::Ready(msg),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => Poll::Pending,
            }
        })
        .await
    }
}

/// A configuration ready to serve: checked, with its certificates loaded. Each core compiles
/// its own routes and pools from it (and the directory's published server sets).
pub struct Generation {
    pub number: u64,
    pub config: Arc<Config>,
    pub slots: Arc<Vec<Option<Arc<CertSlot>>>>,
    /// Session tickets and the session-ID cache, shared by every core's TLS listeners.
    pub resumption: crate::config::tickets::Resumption,
}

pub enum Msg {
    /// Send this core's metrics to `reply`.
    Snapshot(Arc<Mailbox<CoreSnapshot>>),
    /// Serve this generation from the next connection and request on; then send the core's
    /// id to the mailbox.
    Reload(Arc<Generation>, Arc<Mailbox<usize>>),
    /// Stop accepting, finish what is in flight, close tunnels with 1001. `handover`: a new
    /// process took over the listening sockets (upgrade).
    Drain { handover: bool },
    /// Reopen the access log file (SIGUSR1, logrotate).
    ReopenLog,
    /// The directory's new server sets: reconcile the pools (and, on core 0, the checks).
    Servers(Arc<ServerSets>),
    /// A server drain: close its tunnels (1012 to the client) spread over `spread`.
    DrainServer {
        backend: String,
        server: Arc<str>,
        spread: std::time::Duration,
    },
    /// Send this core's per-server counts to `reply`.
    Counts(Arc<Mailbox<Vec<Count>>>),
}

/// A request to the control thread (which owns the running generation).
pub enum Call {
    /// Reload the config file; reply with the new generation, or every problem as
    /// `FILE:LINE:COL: message`.
    Reload(Arc<Mailbox<Result<u64, Vec<String>>>>),
}

/// A control API request (`/api/...`) that a core hands to the control plane
/// (`control::api`), which answers on `reply`.
pub struct ApiJob {
    pub method: String,
    pub target: String,
    pub body: Vec<u8>,
    pub reply: Arc<Mailbox<ApiAnswer>>,
}

/// A control API answer: status, `Content-Type`, body, and `Allow` for a 405.
pub struct ApiAnswer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub allow: Option<&'static str>,
}

/// What every core and the control thread share: the cores' mailboxes and process counters.
pub struct Hub {
    pub cores: Vec<Arc<Mailbox<Msg>>>,
    pub started: Instant,
    pub generation: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_error: AtomicU64,
    /// Cores whose executor has finished (after a drain, or a failed start).
    pub stopped: AtomicUsize,
    /// Every backend's servers, their states and weights; kept across reloads.
    pub directory: Arc<Directory>,
    /// Requests to the control thread (reload from the control API).
    pub calls: Arc<Mailbox<Call>>,
    /// Control API requests from the cores (the admin listener's `/api/`), served by the
    /// `ringway-api` thread.
    pub api: Arc<Mailbox<ApiJob>>,
    /// A SIGTERM or an upgrade hand-off has begun: `/healthz` answers 503 `draining`.
    pub leaving: AtomicBool,
}

impl Hub {
    pub fn new(cores: usize) -> Arc<Hub> {
        let mailboxes: Vec<Arc<Mailbox<Msg>>> = (0..cores).map(|_| Mailbox::new()).collect();
        let (to_tell, to_ask) = (mailboxes.clone(), mailboxes.clone());
        let notify = move |note: Note| {
            for core in &to_tell {
                core.send(match note.clone() {
                    Note::Servers(sets) => Msg::Servers(sets),
                    Note::Drain {
                        backend,
                        server,
                        spread,
                    } => Msg::DrainServer {
                        backend,
                        server,
                        spread,
                    },
                });
            }
        };
        let counts = move || {
            let reply = Mailbox::new();
            for core in &to_ask {
                core.send(Msg::Counts(reply.clone()));
            }
            (0..to_ask.len())
                .map_while(|_| reply.recv_blocking(COUNTS_WAIT))
                .flatten()
                .collect()
        };
        let directory = Arc::new(Directory::new(Links {
            notify: Box::new(notify),
            counts: Box::new(counts),
        }));
        Arc::new(Hub {
            cores: mailboxes,
            directory,
            started: Instant::now(),
            generation: AtomicU64::new(1),
            reloads_ok: AtomicU64::new(0),
            reloads_error: AtomicU64::new(0),
            stopped: AtomicUsize::new(0),
            calls: Mailbox::new(),
            api: Mailbox::new(),
            leaving: AtomicBool::new(false),
        })
    }

    pub fn broadcast(&self, msg: impl Fn() -> Msg) {
        for core in &self.cores {
            core.send(msg());
        }
    }

    /// Every core's metrics, in core order (asked of all at once).
    pub async fn snapshots(&self) -> Vec<CoreSnapshot> {
        let reply = Mailbox::new();
        self.broadcast(|| Msg::Snapshot(reply.clone()));
        let mut out = Vec::with_capacity(self.cores.len());
        for _ in 0..self.cores.len() {
            out.push(reply.recv().await);
        }
        out.sort_by_key(|s| s.core);
        out
    }

    /// Hands a control API request to the control plane and waits for its answer (a core
    /// awaits this without blocking).
    pub async fn api_request(&self, method: &str, target: &str, body: Vec<u8>) -> ApiAnswer {
        let reply = Mailbox::new();
        self.api.send(ApiJob {
            method: method.to_string(),
            target: target.to_string(),
            body,
            reply: reply.clone(),
        });
        reply.recv().await
    }

    /// Whether `/healthz` answers 503 `draining`.
    pub fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Relaxed)
    }

    pub fn count_reload(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_error
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
