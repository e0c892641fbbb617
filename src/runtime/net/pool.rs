//! Per-core buffer pool. Buffers are borrowed only while bytes are in flight and returned as
//! soon as they drain, so an idle connection or tunnel holds no buffer at all, and the data path
//! allocates nothing per message once the pool is warm.
//!
//! The pools give memory back when demand falls: every `DECAY_INTERVAL` each pool frees the
//! entries that sat unused through the whole interval (its low-water mark), so what it keeps
//! follows the load instead of ratcheting up to the highest peak ever seen. A soak showed
//! that ratchet as RSS creeping up for 40 minutes (perf/RESULTS.md, 2026-12-05).

use std::cell::RefCell;
use std::time::Duration;

/// How often each core's pools decay (run by the idle sweeper).
pub const DECAY_INTERVAL: Duration = Duration::from_secs(10);

/// A free list that remembers its low-water mark since the last [`FreeList::decay`].
struct FreeList<T> {
    free: Vec<T>,
    /// The fewest entries the list held since the last decay: that many were never needed.
    low: usize,
    max: usize,
}

impl<T> FreeList<T> {
    const fn new(max: usize) -> FreeList<T> {
        FreeList {
            free: Vec::new(),
            low: 0,
            max,
        }
    }

    fn pop(&mut self) -> Option<T> {
        let v = self.free.pop();
        self.low = self.low.min(self.free.len());
        v
    }

    /// Keeps `v` unless the list is full (then it is dropped).
    fn push(&mut self, v: T) {
        if self.free.len() < self.max {
            self.free.push(v);
        }
    }

    /// Removes the entries unused since the last decay (the list is used as a stack, so they
    /// lie at the bottom) and returns them.
    fn decay(&mut self) -> std::vec::Drain<'_, T> {
        let n = self.low;
        self.low = self.free.len() - n;
        self.free.drain(..n)
    }
}

/// One buffer: a 64 KiB WebSocket message moves in one read and one write (16 KiB buffers
/// took four of each and halved bulk throughput). A buffer is held only while its bytes are in
/// flight, so idle tunnels cost nothing; a tunnel blocked on a slow reader holds one.
pub const BUF_BYTES: usize = 64 * 1024;
/// Buffers kept for reuse per core (64 MiB); beyond this, returned buffers are freed.
const POOLED_BUFS_MAX: usize = 1024;

/// `Vec`s kept per pool (heads and spills; read buffers).
const POOLED_VECS_MAX: usize = 256;

thread_local! {
    static FREE: RefCell<FreeList<Box<[u8]>>> = const { RefCell::new(FreeList::new(POOLED_BUFS_MAX)) };
}

/// Takes a `BUF_BYTES` buffer from this core's pool (allocating only when the pool is empty).
pub fn take() -> Box<[u8]> {
    FREE.with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; BUF_BYTES].into_boxed_slice())
}

/// Returns a buffer taken with `take`.
pub fn give(buf: Box<[u8]>) {
    debug_assert_eq!(buf.len(), BUF_BYTES);
    FREE.with(|f| f.borrow_mut().push(buf));
}

/// The per-core scratch buffer the tunnels read into, unless `[[runtime.core]] read_buffer`
/// says otherwise (`set_scratch_bytes`): as large as a bulk read can use; the bare epoll
/// forwarder uses the same size.
pub const SCRATCH_BYTES: usize = crate::config::cores::READ_BUFFER_DEFAULT;

thread_local! {
    static SCRATCH_SIZE: std::cell::Cell<usize> = const { std::cell::Cell::new(SCRATCH_BYTES) };
    static SCRATCH: RefCell<Box<[u8]>> =
        RefCell::new(vec![0u8; SCRATCH_SIZE.get()].into_boxed_slice());
}

/// Sizes this core's scratch buffer (`read_buffer`): the most one tunnel read takes. Called
/// once as the core starts, before any tunnel runs.
pub fn set_scratch_bytes(bytes: usize) {
    SCRATCH_SIZE.set(bytes);
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() != bytes {
            *s = vec![0u8; bytes].into_boxed_slice();
        }
    });
}

/// Runs `f` with this core's scratch buffer. `f` must not yield: the buffer is shared by every
/// task of the core, so it may hold bytes only within one synchronous step.
pub fn with_scratch<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}

thread_local! {
    /// `Vec`s of up to `SMALL_VEC_BYTES` (heads).
    static FREE_VECS: RefCell<FreeList<Vec<u8>>> = const { RefCell::new(FreeList::new(POOLED_VECS_MAX)) };
    /// `Vec`s of up to `KEPT_VEC_BYTES_MAX` (spills, large bodies), taken only by `take_vec_for`.
    static FREE_BIG_VECS: RefCell<FreeList<Vec<u8>>> = const { RefCell::new(FreeList::new(POOLED_VECS_MAX)) };
}

/// Largest `Vec` handed out by `take_vec`. A `Vec` that grew beyond it comes back to the big
/// class, which only `take_vec_for` draws from. Without the split a pool used as a stack
/// ratchets: any use that grows the `Vec` it happened to take (a `/metrics` body, a spill) leaves
/// it large, and the small uses that take it next keep it large, so the pool's resident size
/// crept towards (Vecs in use) × 64 KiB over the first half hour of a soak.
pub const SMALL_VEC_BYTES: usize = 4096;

/// An empty `Vec` for building heads, reused per core.
pub fn take_vec() -> Vec<u8> {
    FREE_VECS
        .with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(1024))
}

/// An empty `Vec` that will hold about `bytes` (a spill, a body): a big one from the pool when
/// `bytes` is over `SMALL_VEC_BYTES`.
pub fn take_vec_for(bytes: usize) -> Vec<u8> {
    if bytes <= SMALL_VEC_BYTES {
        return take_vec();
    }
    let mut v = FREE_BIG_VECS
        .with(|f| f.borrow_mut().pop())
        .unwrap_or_default();
    v.reserve(bytes);
    v
}

/// Largest `Vec` kept for reuse (heads, spills, read buffers). A larger one is freed: a spill
/// that grew under backpressure must not stay pinned in the pool (the 30-minute soak showed
/// RSS creeping up by 2.4 MiB while the limit was `SCRATCH_BYTES`, 256 KiB per kept `Vec`).
pub const KEPT_VEC_BYTES_MAX: usize = BUF_BYTES;

/// Returns a `Vec` from `take_vec` or `take_vec_for` (or any other): kept in the class its
/// capacity fits, or freed when it is larger than `KEPT_VEC_BYTES_MAX`.
pub fn give_vec(mut v: Vec<u8>) {
    v.clear();
    let cap = v.capacity();
    if cap <= SMALL_VEC_BYTES {
        FREE_VECS.with(|f| f.borrow_mut().push(v));
    } else if cap <= KEPT_VEC_BYTES_MAX {
        FREE_BIG_VECS.with(|f| f.borrow_mut().push(v));
    }
}

thread_local! {
    static FREE_READ_VECS: RefCell<FreeList<Vec<u8>>> = const { RefCell::new(FreeList::new(POOLED_VECS_MAX)) };
}

/// A `Vec` to read into (see `ReadBuf::from_vec`), reused per core with its length kept: the
/// bytes are initialized already, so a reused one is not zeroed again before each read.
pub fn take_read_vec() -> Vec<u8> {
    FREE_READ_VECS
        .with(|f| f.borrow_mut().pop())
        .unwrap_or_default()
}

/// Returns a read `Vec` (also from `ReadBuf`'s `Drop`, so it may run while the thread's
/// locals are being torn down: then the `Vec` is simply freed). An empty one is not kept.
pub fn give_read_vec(v: Vec<u8>) {
    if v.capacity() > 0 && v.capacity() <= KEPT_VEC_BYTES_MAX {
        let _ = FREE_READ_VECS.try_with(|f| f.borrow_mut().push(v));
    }
}

/// Bytes this core's pools hold for reuse (the 64 KiB buffers, and the kept `Vec`s'
/// capacities), for `ringway_buffer_pool_bytes`.
pub fn pooled_bytes() -> u64 {
    let bufs = FREE.with(|f| f.borrow().free.len() * BUF_BYTES);
    let vecs: usize = [&FREE_VECS, &FREE_BIG_VECS]
        .iter()
        .map(|class| class.with(|f| f.borrow().free.iter().map(Vec::capacity).sum::<usize>()))
        .sum();
    let reads: usize = FREE_READ_VECS.with(|f| f.borrow().free.iter().map(Vec::capacity).sum());
    (bufs + vecs + reads) as u64
}

/// One decay step for this core's pools (see the module comment); returns the bytes freed.
pub fn decay() -> usize {
    let bufs = FREE.with(|f| f.borrow_mut().decay().count() * BUF_BYTES);
    let vecs: usize = [&FREE_VECS, &FREE_BIG_VECS]
        .iter()
        .map(|class| class.with(|f| f.borrow_mut().decay().map(|v| v.capacity()).sum::<usize>()))
        .sum();
    let reads: usize = FREE_READ_VECS.with(|f| f.borrow_mut().decay().map(|v| v.capacity()).sum());
    bufs + vecs + reads
}

#[cfg(test)]
mod tests {
    use super::FreeList;

    #[test]
    fn a_grown_vec_goes_to_the_big_class_and_heads_stay_small() {
        // A head Vec grown by a large body comes back into the big class ...
        let mut v = super::take_vec();
        v.extend_from_slice(&[0; 20_000]);
        let big = v.as_ptr();
        super::give_vec(v);
        // ... so the next head gets a small one, and a large use gets the grown one back.
        for _ in 0..3 {
            let h = super::take_vec();
            assert!(h.capacity() <= super::SMALL_VEC_BYTES, "{}", h.capacity());
            assert!(h.is_empty());
            super::give_vec(h);
        }
        let s = super::take_vec_for(10_000);
        assert_eq!(s.as_ptr(), big);
        assert!(s.capacity() >= 10_000 && s.is_empty());
        super::give_vec(s);
        // Larger than KEPT_VEC_BYTES_MAX: freed, not kept.
        let before = super::pooled_bytes();
        super::give_vec(Vec::with_capacity(super::KEPT_VEC_BYTES_MAX + 1));
        assert_eq!(super::pooled_bytes(), before);
    }

    #[test]
    fn decay_frees_what_went_unused_and_follows_demand() {
        let mut l = FreeList::new(100);
        for i in 0..40 {
            l.push(i);
        }
        // The first interval starts with a low-water mark of 0: nothing is known unused.
        assert_eq!(l.decay().count(), 0);
        // Demand of 10 at most: 30 sat unused through the interval and go, oldest first.
        for _ in 0..3 {
            let taken: Vec<_> = (0..10).filter_map(|_| l.pop()).collect();
            taken.into_iter().for_each(|v| l.push(v));
        }
        let freed: Vec<_> = l.decay().collect();
        assert_eq!(freed, (0..30).collect::<Vec<_>>());
        assert_eq!(l.free.len(), 10);
        // Demand steady at 10: nothing more goes.
        for _ in 0..3 {
            let taken: Vec<_> = (0..10).filter_map(|_| l.pop()).collect();
            taken.into_iter().for_each(|v| l.push(v));
            assert_eq!(l.decay().count(), 0);
        }
        // Demand grows to 25 within an interval: the list grows, and keeps what was used.
        let taken: Vec<_> = (0..25).map(|i| l.pop().unwrap_or(100 + i)).collect();
        taken.into_iter().for_each(|v| l.push(v));
        assert_eq!(l.decay().count(), 0);
        assert_eq!(l.free.len(), 25);
        // Demand drops to 5: the rest goes at the next decay; no demand: all of it.
        let taken: Vec<_> = (0..5).filter_map(|_| l.pop()).collect();
        taken.into_iter().for_each(|v| l.push(v));
        assert_eq!(l.decay().count(), 20);
        assert_eq!(l.decay().count(), 5);
        assert_eq!(l.free.len(), 0);
        // The bound still holds.
        for i in 0..200 {
            l.push(i);
        }
        assert_eq!(l.free.len(), 100);
    }

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
