// Unless explicitly stated otherwise all files in this repository are licensed
// under the MIT/Apache-2.0 License, at your convenience
//
// This product includes software developed at Datadog (https://www.datadoghq.com/). Copyright 2020 Datadog, Inc.
//
//! This module provides glommio's networking support.
use crate::sys;
use nix::sys::socket::{MsgFlags, SockaddrLike};
use std::{io, os::unix::io::RawFd};

fn yolo_accept(fd: RawFd) -> Option<io::Result<RawFd>> {
    let flags =
        nix::fcntl::OFlag::from_bits(nix::fcntl::fcntl(fd, nix::fcntl::F_GETFL).unwrap()).unwrap();
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::F_SETFL(flags | nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let r = sys::accept_syscall(fd);
    nix::fcntl::fcntl(fd, nix::fcntl::F_SETFL(flags)).unwrap();
    match r {
        Ok(x) => Some(Ok(x)),
        Err(err) => match err.kind() {
            io::ErrorKind::WouldBlock => None,
            _ => Some(Err(err)),
        },
    }
}

fn yolo_send(fd: RawFd, buf: &[u8]) -> Option<io::Result<usize>> {
    match sys::send_syscall(fd, buf.as_ptr(), buf.len(), MsgFlags::MSG_DONTWAIT.bits()) {
        Ok(x) => Some(Ok(x)),
        Err(err) => match err.kind() {
            io::ErrorKind::WouldBlock => None,
            _ => Some(Err(err)),
        },
    }
}

/// Ringway patch 12 (poll_sendfile): a non-blocking `sendfile` of up to `count` bytes of `file`
/// from `*offset` (advanced by what was sent). glommio's sockets are blocking (it sends with
/// `MSG_DONTWAIT`) and `sendfile` takes no flags. Ringway patch 14 (sendfile-nonblock): the
/// first `sendfile` on a stream sets `O_NONBLOCK` and leaves it set (`*nonblocking` remembers
/// it), instead of setting and clearing it around every call: nothing else on a stream depends on
/// the socket blocking (reads and writes pass `MSG_DONTWAIT`, readiness comes from io_uring polls,
/// and io_uring's own socket requests retry by poll either way).
fn yolo_sendfile(
    fd: RawFd,
    file: RawFd,
    offset: &mut i64,
    count: usize,
    nonblocking: &mut bool,
) -> Option<io::Result<usize>> {
    // SAFETY: plain fcntl/sendfile calls on descriptors the caller owns; `offset` is a valid
    // pointer for the duration of the call.
    let n = unsafe {
        if !*nonblocking {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags < 0 {
                return Some(Err(io::Error::last_os_error()));
            }
            if flags & libc::O_NONBLOCK == 0
                && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0
            {
                return Some(Err(io::Error::last_os_error()));
            }
            *nonblocking = true;
        }
        libc::sendfile(fd, file, offset as *mut i64, count)
    };
    if n >= 0 {
        return Some(Ok(n as usize));
    }
    let err = io::Error::last_os_error();
    match err.kind() {
        io::ErrorKind::WouldBlock => None,
        _ => Some(Err(err)),
    }
}

/// Ringway patch 16 (splice): sets `O_NONBLOCK` on `fd` once (`*nonblocking` remembers it, as
/// patch 14 does for `sendfile`): `splice(2)` takes its socket side's blocking mode from the file.
fn set_nonblocking_once(fd: RawFd, nonblocking: &mut bool) -> io::Result<()> {
    if *nonblocking {
        return Ok(());
    }
    // SAFETY: plain fcntl calls on a descriptor the caller owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        if flags & libc::O_NONBLOCK == 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    *nonblocking = true;
    Ok(())
}

/// Ringway patch 16 (splice): a non-blocking `splice(2)` of up to `len` bytes from `fd_in` to
/// `fd_out` (one of them a pipe; the socket side must be `O_NONBLOCK`, see
/// `set_nonblocking_once`). EAGAIN (nothing to read, or no room) is `None`.
fn yolo_splice(fd_in: RawFd, fd_out: RawFd, len: usize) -> Option<io::Result<usize>> {
    // SAFETY: splice on descriptors the caller owns; null offsets (neither side is seekable).
    let n = unsafe {
        libc::splice(
            fd_in,
            std::ptr::null_mut(),
            fd_out,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
        )
    };
    if n >= 0 {
        return Some(Ok(n as usize));
    }
    let err = io::Error::last_os_error();
    match err.kind() {
        io::ErrorKind::WouldBlock => None,
        _ => Some(Err(err)),
    }
}

/// Ringway patch 14 (sendfile-nonblock): a non-blocking send with `MSG_MORE`: the bytes wait in
/// the socket for the next send (a head for the `sendfile` that follows it: one segment, not two).
fn yolo_send_more(fd: RawFd, buf: &[u8]) -> Option<io::Result<usize>> {
    match sys::send_syscall(
        fd,
        buf.as_ptr(),
        buf.len(),
        MsgFlags::MSG_DONTWAIT.bits() | libc::MSG_MORE,
    ) {
        Ok(x) => Some(Ok(x)),
        Err(err) => match err.kind() {
            io::ErrorKind::WouldBlock => None,
            _ => Some(Err(err)),
        },
    }
}

/// Ringway patch 3 (vectored-write): a gathered non-blocking send (sendmsg with several iovecs).
fn yolo_sendv(fd: RawFd, bufs: &[io::IoSlice<'_>]) -> Option<io::Result<usize>> {
    // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix; the slices outlive the call.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    hdr.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
    let hdr_ptr: *const libc::msghdr = &hdr;
    let n = unsafe { libc::syscall(libc::SYS_sendmsg, fd, hdr_ptr, libc::MSG_DONTWAIT) };
    if n >= 0 {
        return Some(Ok(n as usize));
    }
    let err = io::Error::last_os_error();
    match err.kind() {
        io::ErrorKind::WouldBlock => None,
        _ => Some(Err(err)),
    }
}

fn yolo_peek(fd: RawFd, buf: &mut [u8]) -> Option<io::Result<usize>> {
    match sys::recv_syscall(
        fd,
        buf.as_mut_ptr(),
        buf.len(),
        (MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_PEEK).bits(),
    ) {
        Ok(x) => Some(Ok(x)),
        Err(err) => match err.kind() {
            io::ErrorKind::WouldBlock => None,
            _ => Some(Err(err)),
        },
    }
}

fn yolo_recv(fd: RawFd, buf: &mut [u8]) -> Option<io::Result<usize>> {
    match sys::recv_syscall(
        fd,
        buf.as_mut_ptr(),
        buf.len(),
        MsgFlags::MSG_DONTWAIT.bits(),
    ) {
        Ok(x) => Some(Ok(x)),
        Err(err) => match err.kind() {
            io::ErrorKind::WouldBlock => None,
            _ => Some(Err(err)),
        },
    }
}

fn yolo_recvmsg<T: SockaddrLike>(
    fd: RawFd,
    buf: &mut [u8],
    flags: MsgFlags,
) -> Option<io::Result<(usize, T)>> {
    match sys::recvmsg_syscall(
        fd,
        buf.as_mut_ptr(),
        buf.len(),
        (flags | MsgFlags::MSG_DONTWAIT).bits(),
    ) {
        Ok(x) => Some(Ok(x)),
        Err(err) => match err.kind() {
            io::ErrorKind::WouldBlock => None,
            _ => Some(Err(err)),
        },
    }
}

fn yolo_sendmsg(
    fd: RawFd,
    buf: &[u8],
    addr: &impl nix::sys::socket::SockaddrLike,
) -> Option<io::Result<usize>> {
    match sys::sendmsg_syscall(
        fd,
        buf.as_ptr(),
        buf.len(),
        addr,
        MsgFlags::MSG_DONTWAIT.bits(),
    ) {
        Ok(x) => Some(Ok(x)),
        Err(err) => match err.kind() {
            io::ErrorKind::WouldBlock => None,
            _ => Some(Err(err)),
        },
    }
}

mod datagram;
mod stream;
mod tcp_socket;
mod udp_socket;
mod unix;
pub use self::{
    stream::{Buffered, Preallocated},
    tcp_socket::{AcceptedTcpStream, TcpListener, TcpStream},
    udp_socket::UdpSocket,
    unix::{AcceptedUnixStream, UnixDatagram, UnixListener, UnixStream},
};
