// Unless explicitly stated otherwise all files in this repository are licensed
// under the MIT/Apache-2.0 License, at your convenience
//
// This product includes software developed at Datadog (https://www.datadoghq.com/). Copyright 2020 Datadog, Inc.
//
use crate::{
    reactor::Reactor,
    sys::{self, Source, SourceType},
};
use futures_lite::ready;
use nix::sys::socket::MsgFlags;
use std::{
    cell::Cell,
    io,
    net::Shutdown,
    os::unix::io::{AsRawFd, FromRawFd, RawFd},
    rc::{Rc, Weak},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

type Result<T> = crate::Result<T, ()>;

/// Root trait for socket stream receive buffer
pub trait RxBuf {
    fn read(&mut self, buf: &mut [u8]) -> usize;
    fn peek(&self, buf: &mut [u8]) -> usize;
    fn is_empty(&self) -> bool;
    fn as_bytes(&self) -> &[u8];
    fn consume(&mut self, amt: usize);
    fn buffer_size(&self) -> usize;
    fn handle_result(&mut self, result: usize);
    fn unfilled(&mut self) -> &mut [u8];
}

#[derive(Debug, Default)]
pub struct NonBuffered;

impl RxBuf for NonBuffered {
    fn read(&mut self, _buf: &mut [u8]) -> usize {
        0
    }

    fn peek(&self, _buf: &mut [u8]) -> usize {
        0
    }

    fn is_empty(&self) -> bool {
        true
    }

    fn as_bytes(&self) -> &[u8] {
        &[]
    }

    fn consume(&mut self, _amt: usize) {}

    fn buffer_size(&self) -> usize {
        0
    }

    fn handle_result(&mut self, _result: usize) {}

    fn unfilled(&mut self) -> &mut [u8] {
        &mut []
    }
}

/// Trait for receive buffer implementations
pub trait Buffered: RxBuf {}

/// Non-shared fixed sized receive buffer allocated
/// when buffered stream is created
#[derive(Debug)]
pub struct Preallocated {
    buf: Vec<u8>,
    head: usize,
    tail: usize,
    cap: usize,
}

impl Preallocated {
    const DEFAULT_BUFFER_SIZE: usize = 8192;

    /// Creates a fixed sized receive buffer
    pub fn new(size: usize) -> Self {
        Self {
            buf: vec![0; size],
            tail: 0,
            head: 0,
            cap: size,
        }
    }
}

impl Default for Preallocated {
    fn default() -> Self {
        Self::new(Self::DEFAULT_BUFFER_SIZE)
    }
}

impl Preallocated {
    fn len(&self) -> usize {
        self.tail - self.head
    }
}

impl Buffered for Preallocated {}

impl RxBuf for Preallocated {
    fn read(&mut self, buf: &mut [u8]) -> usize {
        let sz = std::cmp::min(self.len(), buf.len());
        if sz > 0 {
            buf[..sz].copy_from_slice(&self.buf[self.head..self.head + sz]);
            self.head += sz;
        }
        sz
    }

    fn peek(&self, buf: &mut [u8]) -> usize {
        let sz = std::cmp::min(self.len(), buf.len());
        if sz > 0 {
            buf[..sz].copy_from_slice(&self.buf[self.head..self.head + sz]);
        }
        sz
    }

    fn is_empty(&self) -> bool {
        self.head >= self.tail
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.head..self.tail]
    }

    fn consume(&mut self, amt: usize) {
        self.head += std::cmp::min(self.len(), amt);
    }

    fn buffer_size(&self) -> usize {
        self.cap
    }

    fn handle_result(&mut self, result: usize) {
        self.tail += result;
    }

    fn unfilled(&mut self) -> &mut [u8] {
        if self.len() == 0 {
            self.head = 0;
            self.tail = 0;
        }
        &mut self.buf[self.tail..]
    }
}

#[derive(Debug)]
struct Timeout {
    id: u64,
    timeout: Cell<Option<Duration>>,
    timer: Cell<Option<Instant>>,
}

impl Timeout {
    fn new(id: u64) -> Self {
        Self {
            id,
            timeout: Cell::new(None),
            timer: Cell::new(None),
        }
    }

    fn get(&self) -> Option<Duration> {
        self.timeout.get()
    }

    fn set(&self, dur: Option<Duration>) -> Result<()> {
        if let Some(dur) = dur.as_ref() {
            if dur.as_nanos() == 0 {
                return Err(io::Error::from_raw_os_error(libc::EINVAL).into());
            }
        }
        self.timeout.set(dur);
        Ok(())
    }

    fn maybe_set_timer(&self, reactor: &Reactor, waker: &Waker) {
        if let Some(timeout) = self.timeout.get() {
            if self.timer.get().is_none() {
                let deadline = Instant::now() + timeout;
                reactor.insert_timer(self.id, deadline, waker.clone());
                self.timer.set(Some(deadline));
            }
        }
    }

    fn cancel_timer(&self, reactor: &Reactor) {
        if self.timer.take().is_some() {
            reactor.remove_timer(self.id);
        }
    }

    fn check(&self, reactor: &Reactor) -> io::Result<()> {
        if let Some(deadline) = self.timer.get() {
            if !reactor.timer_exists(&(deadline, self.id)) {
                reactor.remove_timer(self.id);
                self.timer.take();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "Operation timed out",
                ));
            }
        }
        Ok(())
    }
}

/// Ringway patch 10 (lazy-timeouts): a stream's read or write `Timeout`, created (boxed) the first
/// time one is set. Unpatched glommio kept two 40-byte `Timeout`s inline in every stream and
/// checked them on every read and write; Ringway never sets them (its timeouts come from a per-core
/// sweeper), so each stream now carries two null pointers and each check is one.
#[derive(Debug, Default)]
struct LazyTimeout(std::cell::OnceCell<Box<Timeout>>);

impl LazyTimeout {
    fn get(&self) -> Option<Duration> {
        self.0.get().and_then(|t| t.get())
    }

    fn set(&self, reactor: &Weak<Reactor>, dur: Option<Duration>) -> Result<()> {
        if dur.is_none() && self.0.get().is_none() {
            return Ok(());
        }
        self.0
            .get_or_init(|| {
                let id = reactor.upgrade().unwrap().register_timer();
                Box::new(Timeout::new(id))
            })
            .set(dur)
    }

    fn armed(&self) -> Option<&Timeout> {
        self.0.get().map(|t| &**t)
    }
}

thread_local! {
    /// Ringway patch 5 (multishot-polls): cleared for good on this executor when the kernel rejects
    /// a multishot poll (IORING_POLL_ADD_MULTI is EINVAL before Linux 5.13); streams then re-arm a
    /// one-shot poll after each completion (patch 2's design) instead of spinning on EINVAL.
    /// `RINGWAY_NO_MULTISHOT_POLL` in the environment starts with it cleared (to test that path).
    static MULTISHOT_POLL: std::cell::Cell<bool> =
        std::cell::Cell::new(std::env::var_os("RINGWAY_NO_MULTISHOT_POLL").is_none());
}

/// Ringway patch 5 (multishot-polls): POLLRDHUP | POLLHUP | POLLERR in a poll completion's mask.
const HUP_MASK: usize = (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) as usize;

/// Ringway patch 5 (multishot-polls): a multishot poll the kernel ended with EINVAL: it has none.
fn multishot_rejected(src: &Source, e: &io::Error) {
    if !src.is_live() && e.raw_os_error() == Some(libc::EINVAL) {
        MULTISHOT_POLL.with(|m| m.set(false));
    }
}

#[derive(Debug)]
pub(crate) struct NonBufferedStream<S> {
    reactor: Weak<Reactor>,
    stream: S,
    source_tx: Option<Source>,
    source_rx: Option<Source>,
    /// Ringway patch 5 (multishot-polls): the multishot FIN/hang-up poll (see `poll_read`).
    source_hup: Option<Source>,
    /// Ringway patch 2 (read-source-reuse): `recv` may find data (see `poll_read`).
    rx_ready: bool,
    /// Ringway patch 5 (multishot-polls): the FIN/hang-up poll fired: `recv` reaches EOF or the
    /// error.
    hup: bool,
    /// Ringway patch 5 (multishot-polls): the readiness polls are armed (no completion since ended
    /// one).
    polls_armed: bool,
    /// Ringway patch 14 (sendfile-nonblock): `O_NONBLOCK` is set on the socket (by the first
    /// `sendfile`, see `yolo_sendfile`).
    nonblocking: bool,
    /// Ringway patch 18 (shut-once): the write side was shut by `poll_close`; a second close is a
    /// no-op instead of a `shutdown` that fails with ENOTCONN once the peer has closed too (a
    /// tunnel propagates each half-close, then its owner closes both streams again).
    shut_wr: bool,
    write_timeout: LazyTimeout,
    read_timeout: LazyTimeout,
}

impl<S: AsRawFd> NonBufferedStream<S> {
    fn init(&mut self) {
        // Ringway patch 2 (read-source-reuse): the first read tries `recv`; the readiness poll is
        // armed only when a read has to wait (see `poll_read`).
        self.rx_ready = true;
    }

    pub(crate) fn try_peek(&self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        super::yolo_peek(self.stream.as_raw_fd(), buf)
    }

    pub(crate) async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let source = self.reactor.upgrade().unwrap().recv(
            self.stream.as_raw_fd(),
            buf.len(),
            MsgFlags::MSG_PEEK,
        );

        let sz = source.collect_rw().await?;
        match source.extract_source_type() {
            SourceType::SockRecv(mut src) => {
                buf[0..sz].copy_from_slice(&src.take().unwrap().as_bytes()[0..sz]);
            }
            _ => unreachable!(),
        }
        Ok(sz)
    }

    /// Ringway patch 5 (multishot-polls): readiness comes from two multishot polls armed once per
    /// stream (the first time a read has to wait), not from a one-shot poll re-armed after every
    /// partial read:
    /// - `source_rx` (POLLIN) reports wake-ups. A short `recv` means the socket was drained,
    ///   so the next read waits for the next report instead of trying `recv` (edge-triggered).
    /// - `source_hup` (POLLRDHUP, POLLHUP, POLLERR) reports the peer's FIN or an error. It is
    ///   needed because the kernel folds wake-ups that arrive before its task work runs into one
    ///   completion, carrying the first one's mask: data followed at once by a FIN gives a
    ///   single POLLIN completion, and the `recv` it leads to returns the data (short) but not
    ///   the EOF behind it. Data wake-ups do not reach `source_hup`, so the FIN always gets a
    ///   completion of its own there.
    /// (The first version, with `source_rx` only, lost about one FIN in 1,000-2,000 under
    /// connection churn; patch 2's one-shot re-arm cost an extra POLL_ADD per partial read.)
    pub(crate) fn poll_read(
        &mut self,
        cx: &Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let want = buf.len();
        self.poll_read_with(cx, want, true, |fd| super::yolo_recv(fd, buf))
    }

    /// Ringway patch 16 (splice): `splice(2)` of up to `len` bytes from the socket into the pipe
    /// `pipe_w`, with a read's readiness (`poll_read`); `Ready(Ok(0))` is EOF. The caller's pipe
    /// must have room (empty is best). A short splice is not taken as "drained" (the pipe's
    /// slots may have been the limit): the next one finds out, by EAGAIN.
    pub(crate) fn poll_splice_in(
        &mut self,
        cx: &Context<'_>,
        pipe_w: RawFd,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = super::set_nonblocking_once(self.stream.as_raw_fd(), &mut self.nonblocking)
        {
            return Poll::Ready(Err(e));
        }
        self.poll_read_with(cx, len, false, |fd| super::yolo_splice(fd, pipe_w, len))
    }

    /// Ringway patch 16 (splice): `splice(2)` of up to `len` bytes from the pipe `pipe_r` to the
    /// socket, waiting for room like a write.
    pub(crate) fn poll_splice_out(
        &mut self,
        cx: &Context<'_>,
        pipe_r: RawFd,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = super::set_nonblocking_once(self.stream.as_raw_fd(), &mut self.nonblocking)
        {
            return Poll::Ready(Err(e));
        }
        self.poll_write_with(cx, |fd| super::yolo_splice(pipe_r, fd, len))
    }

    /// `poll_read` with the receive step given (Ringway patch 16, splice: a `recv` or a
    /// `splice`); `short_drains`: a result shorter than `want` means the socket was drained.
    fn poll_read_with(
        &mut self,
        cx: &Context<'_>,
        want: usize,
        short_drains: bool,
        recv: impl FnOnce(RawFd) -> Option<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let reactor = self.reactor.upgrade().unwrap();
        let reactor = reactor.as_ref();

        // Reports since the last look. A completion may be a poll's last (one-shot, or a
        // multishot poll the kernel ended): then it is armed again before the next wait.
        if let Some(src) = self.source_rx.as_ref() {
            let result = src.take_result();
            if result.is_some() && !src.is_live() {
                self.polls_armed = false;
            }
            match result {
                None => {}
                Some(Ok(mask)) => {
                    self.rx_ready = true;
                    // The mask may already say FIN or error. Not enough alone: a completion
                    // that stands for several wake-ups can miss the FIN (tried: the churn FIN
                    // test fails without `source_hup`), which is what makes sure of it.
                    if mask & HUP_MASK != 0 {
                        self.hup = true;
                    }
                }
                Some(Err(e)) => {
                    self.rx_ready = true;
                    multishot_rejected(src, &e);
                }
            }
        }
        if let Some(src) = self.source_hup.as_ref() {
            let result = src.take_result();
            if result.is_some() && !src.is_live() {
                self.polls_armed = false;
            }
            match result {
                None => {}
                Some(Ok(_)) => self.hup = true,
                Some(Err(e)) => {
                    self.hup = true;
                    multishot_rejected(src, &e);
                }
            }
        }

        if self.rx_ready || self.hup {
            match recv(self.stream.as_raw_fd()) {
                Some(result) => {
                    if let Some(t) = self.read_timeout.armed() {
                        t.cancel_timer(reactor);
                    }
                    let result = poll_err!(result);
                    if short_drains && result > 0 && result < want {
                        // Drained; `hup` (if set) still sends the next read to the EOF.
                        self.rx_ready = false;
                        self.arm_rx(reactor);
                    }
                    return Poll::Ready(Ok(result));
                }
                None => {
                    self.rx_ready = false;
                    self.hup = false;
                }
            }
        }

        if let Some(t) = self.read_timeout.armed() {
            poll_err!(t.check(reactor));
        }

        self.arm_rx(reactor);
        self.source_rx
            .as_ref()
            .unwrap()
            .add_waiter_single(cx.waker());
        if let Some(src) = self.source_hup.as_ref().filter(|s| s.is_live()) {
            src.add_waiter_single(cx.waker());
        }
        if let Some(t) = self.read_timeout.armed() {
            t.maybe_set_timer(reactor, cx.waker());
        }
        Poll::Pending
    }

    /// Ringway patch 5 (multishot-polls): arms the readiness polls that are not armed (first use,
    /// or the kernel ended one), reusing the stream's `Source`s. Where the kernel rejected
    /// multishot polls (before 5.13), a one-shot poll on `source_rx` only, re-armed after each
    /// completion.
    fn arm_rx(&mut self, reactor: &Reactor) {
        if self.polls_armed {
            return;
        }
        self.polls_armed = true;
        let fd = self.stream.as_raw_fd();
        if !MULTISHOT_POLL.with(|m| m.get()) {
            match self.source_rx.as_ref() {
                Some(src) if src.is_live() => {}
                Some(src) => reactor.rearm_poll_read_ready(src),
                None => self.source_rx = Some(reactor.poll_read_ready(fd)),
            }
            return;
        }
        match self.source_rx.as_ref() {
            Some(src) if src.is_live() => {}
            Some(src) => reactor.rearm_read_multi(src),
            None => self.source_rx = Some(reactor.poll_read_multi(fd)),
        }
        match self.source_hup.as_ref() {
            Some(src) if src.is_live() => {}
            Some(src) => reactor.rearm_hup_multi(src),
            None => self.source_hup = Some(reactor.poll_hup_multi(fd)),
        }
    }

    pub(crate) fn poll_write(&mut self, cx: &Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |fd| super::yolo_send(fd, buf))
    }

    /// Ringway patch 3 (vectored-write): one `sendmsg` for several buffers.
    pub(crate) fn poll_write_vectored(
        &mut self,
        cx: &Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |fd| super::yolo_sendv(fd, bufs))
    }

    /// Ringway patch 12 (poll_sendfile): `sendfile` from `file` at `*offset`, waiting for room like
    /// a write.
    pub(crate) fn poll_sendfile(
        &mut self,
        cx: &Context<'_>,
        file: RawFd,
        offset: &mut i64,
        count: usize,
    ) -> Poll<io::Result<usize>> {
        let mut nonblocking = self.nonblocking;
        let r = self.poll_write_with(cx, |fd| {
            super::yolo_sendfile(fd, file, offset, count, &mut nonblocking)
        });
        self.nonblocking = nonblocking;
        r
    }

    /// Ringway patch 14 (sendfile-nonblock): a write with `MSG_MORE` (see `yolo_send_more`).
    pub(crate) fn poll_write_more(&mut self, cx: &Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |fd| super::yolo_send_more(fd, buf))
    }

    /// Ringway patch 5 (multishot-polls): drops the wakers a waiting read left on the readiness
    /// polls. A read woken by one poll leaves its waker on the other (kept on purpose: the next
    /// wait then needs no clone); a stream that outlives its reader (a pooled keep-alive
    /// connection) calls this so it does not keep the finished task's allocation alive.
    pub(crate) fn forget_read_wakers(&self) {
        for src in [&self.source_rx, &self.source_hup].into_iter().flatten() {
            src.clear_waiters();
        }
    }

    /// Ringway patch 15 (quiet-read-skip): whether `poll_read` would return `Pending` with
    /// nothing to do: the last read drained the socket, the polls are armed and live, nothing
    /// came from them, and `waker` is already the one they wake. A task that polls several
    /// streams per wake-up (a tunnel) skips those reads. False whenever that is not known.
    pub(crate) fn read_would_pend(&self, waker: &Waker) -> bool {
        if !self.polls_armed || self.rx_ready || self.hup || self.read_timeout.armed().is_some() {
            return false;
        }
        let Some(rx) = self.source_rx.as_ref() else {
            return false;
        };
        if !rx.quiet_for(waker) {
            return false;
        }
        match self.source_hup.as_ref() {
            None => !MULTISHOT_POLL.with(|m| m.get()),
            Some(hup) => hup.quiet_for(waker),
        }
    }

    /// Ringway patch 3 (vectored-write): whether no data, hang-up or error has been reported on
    /// the stream since a read drained it: both polls are armed and nothing came from them. A
    /// pooled keep-alive connection that is quiet needs no `MSG_PEEK` probe before reuse
    /// (completions the reactor has not reaped yet are not seen). Patch 5 (multishot-polls)
    /// made it look at both polls and count a poll only once it is submitted.
    pub(crate) fn is_read_quiet(&self) -> bool {
        // Submitted, not merely queued: a queued poll has not looked at the socket yet.
        let quiet =
            |s: &Option<Source>| s.as_ref().is_some_and(|s| s.is_dispatched() && !s.has_result());
        let hup_quiet = !MULTISHOT_POLL.with(|m| m.get()) || quiet(&self.source_hup);
        !self.rx_ready && !self.hup && quiet(&self.source_rx) && hup_quiet
    }

    fn poll_write_with(
        &mut self,
        cx: &Context<'_>,
        send: impl FnOnce(RawFd) -> Option<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        // On the write path, we always start with calling `yolo_send`, because
        // it is very likely to success. It could be a waste if it already timed
        // out since the last `poll_write`, but it would not cost much more to
        // give it one last chance in this case.
        if let Some(result) = send(self.stream.as_raw_fd()) {
            if let Some(t) = self.write_timeout.armed() {
                t.cancel_timer(self.reactor.upgrade().unwrap().as_ref());
            }
            self.source_tx.take();
            return Poll::Ready(result);
        }

        let reactor = self.reactor.upgrade().unwrap();
        let reactor = reactor.as_ref();
        if let Some(t) = self.write_timeout.armed() {
            poll_err!(t.check(reactor));
        }

        let no_pending_poll = self
            .source_tx
            .as_ref()
            .map(|src| src.result().is_some())
            .unwrap_or(true);

        if no_pending_poll {
            self.source_tx = Some(reactor.poll_write_ready(self.stream.as_raw_fd()));
        }

        let source = self.source_tx.as_ref().unwrap();
        source.add_waiter_single(cx.waker());
        if let Some(t) = self.write_timeout.armed() {
            t.maybe_set_timer(reactor, cx.waker());
        }
        Poll::Pending
    }

    pub(crate) fn poll_close(&mut self, _: &Context<'_>) -> Poll<io::Result<()>> {
        self.source_tx.take();
        // Ringway patch 18 (shut-once): see `shut_wr`.
        if self.shut_wr {
            return Poll::Ready(Ok(()));
        }
        let r = sys::shutdown(self.stream.as_raw_fd(), Shutdown::Write);
        self.shut_wr = r.is_ok();
        Poll::Ready(r)
    }

    /// io_uring has support for shutdown now, but it is not in any released
    /// kernel. Even with my "let's use latest" policy it would be crazy to
    /// mandate a kernel that doesn't even exist. So in preparation for that
    /// we'll sync-emulate this but already on an async wrapper
    pub(crate) fn poll_shutdown(
        &self,
        _cx: &mut Context<'_>,
        how: Shutdown,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(sys::shutdown(self.stream.as_raw_fd(), how))
    }
}

#[derive(Debug)]
pub(crate) struct GlommioStream<S, B> {
    stream: NonBufferedStream<S>,
    rx_buf: B,
    rx_done: Cell<bool>,
}

impl<S> From<socket2::Socket> for GlommioStream<S, NonBuffered>
where
    S: AsRawFd + From<socket2::Socket> + Unpin,
{
    fn from(socket: socket2::Socket) -> Self {
        let reactor = crate::executor().reactor();
        let mut stream = NonBufferedStream {
            reactor: Rc::downgrade(&reactor),
            stream: socket.into(),
            source_tx: None,
            source_rx: None,
            source_hup: None,
            rx_ready: true,
            hup: false,
            polls_armed: false,
            nonblocking: false,
            shut_wr: false,
            write_timeout: LazyTimeout::default(),
            read_timeout: LazyTimeout::default(),
        };
        stream.init();
        GlommioStream {
            stream,
            rx_buf: NonBuffered,
            rx_done: Cell::new(false),
        }
    }
}

impl<S: AsRawFd> AsRawFd for GlommioStream<S, NonBuffered> {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.stream.as_raw_fd()
    }
}

impl<S> FromRawFd for GlommioStream<S, NonBuffered>
where
    S: AsRawFd + FromRawFd + From<socket2::Socket> + Unpin,
{
    unsafe fn from_raw_fd(fd: RawFd) -> Self {
        let socket = socket2::Socket::from_raw_fd(fd);
        GlommioStream::from(socket)
    }
}

impl<S> GlommioStream<S, NonBuffered> {
    pub(crate) fn buffered_with<B: Buffered>(self, rx_buf: B) -> GlommioStream<S, B> {
        GlommioStream {
            stream: self.stream,
            rx_buf,
            rx_done: self.rx_done,
        }
    }
}

impl<S: AsRawFd, B: RxBuf> GlommioStream<S, B> {
    /// Receives data on the socket from the remote address to which it is
    /// connected, without removing that data from the queue.
    ///
    /// On success, returns the number of bytes peeked.
    /// Successive calls return the same data. This is accomplished by passing
    /// `MSG_PEEK` as a flag to the underlying `recv` system call.
    pub(crate) async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut pos = self.rx_buf.peek(buf);
        if pos < buf.len() && !self.rx_done.get() {
            if let Some(result) = self.stream.try_peek(&mut buf[pos..]) {
                match result {
                    Err(e) => return Err(e),
                    Ok(len) => {
                        pos += len;
                        if len == 0 {
                            self.rx_done.set(true);
                        }
                    }
                }
            }
        }
        if pos > 0 || self.rx_done.get() {
            return Ok(pos);
        }
        self.stream.peek(buf).await
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.rx_buf.is_empty() {
            if buf.len() >= self.rx_buf.buffer_size() {
                return self.stream.poll_read(cx, buf);
            }
            if !self.rx_done.get() {
                poll_err!(ready!(self.poll_replenish_buffer(cx)));
            }
        }
        Poll::Ready(Ok(self.rx_buf.read(buf)))
    }

    fn poll_replenish_buffer(&mut self, cx: &Context<'_>) -> Poll<io::Result<usize>> {
        let result = poll_err!(ready!(self.stream.poll_read(cx, self.rx_buf.unfilled())));
        self.rx_buf.handle_result(result);
        if result == 0 {
            self.rx_done.set(true);
        }
        Poll::Ready(Ok(result))
    }

    pub(crate) fn poll_write(&mut self, cx: &Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.stream.poll_write(cx, buf)
    }

    /// Ringway patch 3 (vectored-write): see `NonBufferedStream::poll_write_vectored`.
    pub(crate) fn poll_write_vectored(
        &mut self,
        cx: &Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream.poll_write_vectored(cx, bufs)
    }

    /// Ringway patch 12 (poll_sendfile): see `NonBufferedStream::poll_sendfile`.
    pub(crate) fn poll_sendfile(
        &mut self,
        cx: &Context<'_>,
        file: RawFd,
        offset: &mut i64,
        count: usize,
    ) -> Poll<io::Result<usize>> {
        self.stream.poll_sendfile(cx, file, offset, count)
    }

    /// Ringway patch 14 (sendfile-nonblock): see `NonBufferedStream::poll_write_more`.
    pub(crate) fn poll_write_more(&mut self, cx: &Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.stream.poll_write_more(cx, buf)
    }

    /// Ringway patch 16 (splice): see `NonBufferedStream::poll_splice_in`. Bytes already in the
    /// read buffer must be read first (`Unsupported` until then), and an EOF seen is `Ok(0)`.
    pub(crate) fn poll_splice_in(
        &mut self,
        cx: &Context<'_>,
        pipe_w: RawFd,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        if !self.rx_buf.is_empty() {
            return Poll::Ready(Err(io::ErrorKind::Unsupported.into()));
        }
        if self.rx_done.get() {
            return Poll::Ready(Ok(0));
        }
        self.stream.poll_splice_in(cx, pipe_w, len)
    }

    /// Ringway patch 16 (splice): see `NonBufferedStream::poll_splice_out`.
    pub(crate) fn poll_splice_out(
        &mut self,
        cx: &Context<'_>,
        pipe_r: RawFd,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        self.stream.poll_splice_out(cx, pipe_r, len)
    }

    /// Ringway patch 3 (vectored-write): see `NonBufferedStream::is_read_quiet`.
    pub(crate) fn is_read_quiet(&self) -> bool {
        self.stream.is_read_quiet()
    }

    /// Ringway patch 15 (quiet-read-skip): see `NonBufferedStream::read_would_pend`.
    pub(crate) fn read_would_pend(&self, waker: &Waker) -> bool {
        self.rx_buf.is_empty() && !self.rx_done.get() && self.stream.read_would_pend(waker)
    }

    /// Ringway patch 5 (multishot-polls): see `NonBufferedStream::forget_read_wakers`.
    pub(crate) fn forget_read_wakers(&self) {
        self.stream.forget_read_wakers()
    }

    pub(crate) fn poll_flush(&self, _cx: &Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    pub(crate) fn poll_close(&mut self, cx: &Context<'_>) -> Poll<io::Result<()>> {
        self.stream.poll_close(cx)
    }

    pub(crate) fn poll_shutdown(
        &self,
        cx: &mut Context<'_>,
        how: Shutdown,
    ) -> Poll<io::Result<()>> {
        self.stream.poll_shutdown(cx, how)
    }

    pub(crate) fn set_write_timeout(&self, dur: Option<Duration>) -> Result<()> {
        self.stream.write_timeout.set(&self.stream.reactor, dur)
    }

    pub(crate) fn set_read_timeout(&self, dur: Option<Duration>) -> Result<()> {
        self.stream.read_timeout.set(&self.stream.reactor, dur)
    }

    pub(crate) fn write_timeout(&self) -> Option<Duration> {
        self.stream.write_timeout.get()
    }

    pub(crate) fn read_timeout(&self) -> Option<Duration> {
        self.stream.read_timeout.get()
    }

    pub(crate) fn stream(&self) -> &S {
        &self.stream.stream
    }
}

impl<S: AsRawFd, B: Buffered> GlommioStream<S, B> {
    pub(crate) fn poll_fill_buf(&mut self, cx: &Context<'_>) -> Poll<io::Result<&[u8]>> {
        if self.rx_buf.is_empty() {
            poll_err!(ready!(self.poll_replenish_buffer(cx)));
        }
        Poll::Ready(Ok(self.rx_buf.as_bytes()))
    }

    pub(crate) fn consume(&mut self, amt: usize) {
        self.rx_buf.consume(amt);
    }
}
