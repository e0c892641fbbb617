//! Bulk tunnels' zero-copy path: bytes move socket → pipe → socket with `splice(2)` (glommio
//! patch 16), never through user space. Owns the per-core pool of pipes, the `Splice` trait the
//! tunnel's streams implement (plain TCP only: TLS and HTTP/2 streams cannot splice) and the
//! constants that decide when a tunnel direction counts as bulk.
//!
//! When: a direction whose reads return at least `BULK_READ_BYTES` `BULK_STREAK` times in a row
//! (both ends plain TCP) turns bulk. A raw tunnel (L4) then splices everything; a WebSocket
//! tunnel reads each frame header by a small buffered read (`HEADER_READ_BYTES`), so the frame
//! tracker sees every header, and splices only that frame's payload, whose length it knows: a
//! splice never passes a frame boundary, so a drain still closes between two frames. A frame
//! shorter than `SPLICE_PAYLOAD_MIN` (or a short raw read) sends the direction back to copying.
//!
//! A pipe is held only while bytes flow: when the source has nothing more to read and the pipe
//! is empty, it goes back to the core's pool (at most `POOLED_PIPES_MAX` kept; the rest are
//! closed), so an idle tunnel holds none.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::AsyncWrite;

/// A read of at least this many bytes counts toward bulk.
pub const BULK_READ_BYTES: usize = 32 * 1024;

/// This many such reads in a row make a direction bulk.
pub const BULK_STREAK: u8 = 4;

/// In a bulk WebSocket direction, frames with a payload shorter than this are copied (and the
/// direction goes back to copying until it is bulk again).
pub const SPLICE_PAYLOAD_MIN: u64 = 16 * 1024;

/// A bulk raw direction whose splice moves fewer bytes than this goes back to copying.
pub const SPLICE_RAW_MIN: usize = 4 * 1024;

/// A bulk WebSocket direction reads at most this many bytes at a boundary: the longest frame
/// header (2 + 8 + 4 bytes), so the payload behind it is left for the splice.
pub const HEADER_READ_BYTES: usize = 14;

/// The pipe capacity asked for (`F_SETPIPE_SZ`): 256 KiB, the core's read buffer's size, so one
/// splice moves as much as one buffered read would (64 page slots; the default 64 KiB pipe has
/// 16, and a socket's data often sits in more, smaller pieces). Where the kernel refuses
/// (`/proc/sys/fs/pipe-user-pages-soft` reached), the pipe keeps its default size.
pub const PIPE_BYTES: usize = 256 * 1024;

/// Idle pipes kept per core for the next bulk burst.
const POOLED_PIPES_MAX: usize = 64;

/// A pipe and the bytes in it that are not yet written on.
pub struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    /// Its capacity in bytes.
    pub cap: usize,
    /// Bytes in it, spliced in and not yet out.
    pub held: usize,
}

impl Pipe {
    fn open() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`; each is owned once, below.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptors from pipe2, owned by nothing else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a descriptor owned here. A refusal (EPERM over the per-user limit)
        // leaves the default size, which F_GETPIPE_SZ reports.
        let cap = unsafe {
            let set = libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES as libc::c_int);
            if set > 0 {
                set
            } else {
                libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ)
            }
        };
        let cap = usize::try_from(cap).unwrap_or(0).max(4096);
        Ok(Pipe { r, w, cap, held: 0 })
    }

    pub fn read_fd(&self) -> RawFd {
        self.r.as_raw_fd()
    }

    pub fn write_fd(&self) -> RawFd {
        self.w.as_raw_fd()
    }
}

thread_local! {
    /// Boxed on purpose: a tunnel direction holds a `Box<Pipe>` (8 bytes in every tunnel's
    /// future, not 24), and taking one from the pool or giving it back allocates nothing.
    #[allow(clippy::vec_box)]
    static PIPES: RefCell<Vec<Box<Pipe>>> = const { RefCell::new(Vec::new()) };
}

/// An empty pipe from the core's pool, or a new one.
pub fn take() -> io::Result<Box<Pipe>> {
    if let Some(p) = PIPES.with(|p| p.borrow_mut().pop()) {
        return Ok(p);
    }
    Pipe::open().map(Box::new)
}

/// Returns a pipe to the core's pool; one that still holds bytes (a tunnel that ended with
/// bytes undelivered), or one over the pool's bound, is closed.
pub fn give(pipe: Box<Pipe>) {
    if pipe.held != 0 {
        return;
    }
    PIPES.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOLED_PIPES_MAX {
            p.push(pipe);
        }
    });
}

/// Pipes in this core's pool (tests).
pub fn pooled() -> usize {
    PIPES.with(|p| p.borrow().len())
}

/// A tunnel end that can move bytes with `splice(2)`: plain TCP with nothing buffered in user
/// space. Everything else answers `can_splice() == false` and is never asked to splice.
pub trait Splice {
    fn can_splice(&self) -> bool {
        false
    }

    /// Moves up to `len` bytes from this stream into the (empty) pipe `pipe_w`, waiting for
    /// data like a read; `Ok(0)` is EOF.
    fn poll_splice_in(
        &mut self,
        _cx: &mut Context<'_>,
        _pipe_w: RawFd,
        _len: usize,
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::Unsupported.into()))
    }

    /// Moves up to `len` bytes from the pipe `pipe_r` to this stream, waiting for room like a
    /// write.
    fn poll_splice_out(
        &mut self,
        _cx: &mut Context<'_>,
        _pipe_r: RawFd,
        _len: usize,
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::Unsupported.into()))
    }

    /// A write whose bytes wait for the next one (`MSG_MORE`: a frame header before its spliced
    /// payload leaves in one segment with it); a plain write where that is not known.
    fn poll_write_more(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>
    where
        Self: AsyncWrite + Unpin + Sized,
    {
        Pin::new(self).poll_write(cx, buf)
    }
}

impl Splice for glommio::net::TcpStream {
    fn can_splice(&self) -> bool {
        true
    }

    fn poll_splice_in(
        &mut self,
        cx: &mut Context<'_>,
        pipe_w: RawFd,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        glommio::net::TcpStream::poll_splice_in(self, cx, pipe_w, len)
    }

    fn poll_splice_out(
        &mut self,
        cx: &mut Context<'_>,
        pipe_r: RawFd,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        glommio::net::TcpStream::poll_splice_out(self, cx, pipe_r, len)
    }

    fn poll_write_more(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        glommio::net::TcpStream::poll_write_more(self, cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_are_reused_and_bounded() {
        let before = pooled();
        let pipes: Vec<_> = (0..POOLED_PIPES_MAX + 3)
            .map(|_| take().expect("pipe"))
            .collect();
        assert!(pipes.iter().all(|p| p.cap >= 4096 && p.held == 0));
        for p in pipes {
            give(p);
        }
        assert_eq!(pooled(), POOLED_PIPES_MAX.max(before));
        let mut p = take().expect("pipe");
        assert_eq!(pooled(), POOLED_PIPES_MAX - 1);
        p.held = 1;
        give(p);
        assert_eq!(
            pooled(),
            POOLED_PIPES_MAX - 1,
            "a pipe with bytes in it is closed"
        );
    }
}
