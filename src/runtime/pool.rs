//! Per-core buffer pool. Buffers are borrowed only while bytes are in flight and returned as
//! soon as they drain, so an idle connection or tunnel holds no buffer at all, and the data path
//! allocates nothing per message once the pool is warm.

use std::cell::RefCell;

/// One buffer: a 64 KiB WebSocket message moves in one read and one write (16 KiB buffers
/// took four of each and halved bulk throughput). A buffer is held only while its bytes are in
/// flight, so idle tunnels cost nothing; a tunnel blocked on a slow reader holds one.
pub const BUF_BYTES: usize = 64 * 1024;
/// Buffers kept for reuse per core (64 MiB); beyond this, returned buffers are freed.
const POOLED_BUFS_MAX: usize = 1024;

thread_local! {
    static FREE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// Takes a `BUF_BYTES` buffer from this core's pool (allocating only when the pool is empty).
pub fn take() -> Box<[u8]> {
    FREE.with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; BUF_BYTES].into_boxed_slice())
}

/// Returns a buffer taken with `take`.
pub fn give(buf: Box<[u8]>) {
    debug_assert_eq!(buf.len(), BUF_BYTES);
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < POOLED_BUFS_MAX {
            f.push(buf);
        }
    });
}

/// The per-core scratch buffer the tunnels read into (as large as a bulk read can use; the
/// bare epoll forwarder uses the same size).
pub const SCRATCH_BYTES: usize = 256 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH_BYTES].into_boxed_slice());
}

/// Runs `f` with this core's scratch buffer. `f` must not yield: the buffer is shared by every
/// task of the core, so it may hold bytes only within one synchronous step.
pub fn with_scratch<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}

thread_local! {
    static FREE_VECS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty `Vec` for building heads, reused per core.
pub fn take_vec() -> Vec<u8> {
    FREE_VECS
        .with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(1024))
}

/// Largest `Vec` kept for reuse (heads, spills, read buffers). A larger one is freed: a spill
/// that grew under backpressure must not stay pinned in the pool (the 30-minute soak showed
/// RSS creeping up by 2.4 MiB while the limit was `SCRATCH_BYTES`, 256 KiB per kept `Vec`).
pub const KEPT_VEC_BYTES_MAX: usize = BUF_BYTES;

pub fn give_vec(mut v: Vec<u8>) {
    // Keep only modest buffers so one huge head or spill does not pin memory forever.
    if v.capacity() <= KEPT_VEC_BYTES_MAX {
        v.clear();
        FREE_VECS.with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < 256 {
                f.push(v);
            }
        });
    }
}

thread_local! {
    static FREE_READ_VECS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A `Vec` to read into (see `ReadBuf::from_vec`), reused per core with its length kept: the
/// bytes are initialized already, so a reused one is not zeroed again before each read.
pub fn take_read_vec() -> Vec<u8> {
    FREE_READ_VECS
        .with(|f| f.borrow_mut().pop())
        .unwrap_or_default()
}

pub fn give_read_vec(v: Vec<u8>) {
    if v.capacity() <= KEPT_VEC_BYTES_MAX {
        FREE_READ_VECS.with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < 256 {
                f.push(v);
            }
        });
    }
}

/// Bytes this core's pools hold for reuse (the 64 KiB buffers, and the kept `Vec`s'
/// capacities), for `ringway_buffer_pool_bytes`.
pub fn pooled_bytes() -> u64 {
    let bufs = FREE.with(|f| f.borrow().len() * BUF_BYTES);
    let vecs: usize = FREE_VECS.with(|f| f.borrow().iter().map(Vec::capacity).sum());
    let reads: usize = FREE_READ_VECS.with(|f| f.borrow().iter().map(Vec::capacity).sum());
    (bufs + vecs + reads) as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn buffers_are_reused() {
        let a = super::take();
        let ptr = a.as_ptr();
        super::give(a);
        let b = super::take();
        assert_eq!(b.as_ptr(), ptr);
        assert_eq!(b.len(), super::BUF_BYTES);
        super::give(b);
    }
}
