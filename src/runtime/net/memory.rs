//! Process memory for `/metrics`, and handing freed memory back to the kernel.
//!
//! Ringway uses the system allocator (glibc malloc on Linux). Memory a core frees goes back
//! to the allocator's free lists, where it still counts as resident; glibc returns only the
//! top of each heap to the kernel by itself. When the buffer pools shrink (`pool::decay`)
//! by a large amount, [`released`] asks glibc to give back the free pages inside its heaps
//! too (`malloc_trim`). [`read`] exposes what the allocator holds, so an operator can tell
//! live memory from memory kept for reuse.

use std::cell::Cell;

use crate::observe::metrics::MemoryState;

/// Freed bytes (per core) after which the allocator is asked to return free pages.
const TRIM_AFTER_BYTES: usize = 1 << 20;

thread_local! {
    static FREED: Cell<usize> = const { Cell::new(0) };
}

/// This core freed `bytes` of pooled memory; once 1 MiB has gathered, free pages in the
/// allocator's heaps go back to the kernel. Rare (the pools decay every 10 s, and only a
/// shrinking pool frees much), and never on the data path.
pub fn released(bytes: usize) {
    let total = FREED.with(|f| {
        let t = f.get() + bytes;
        f.set(if t >= TRIM_AFTER_BYTES { 0 } else { t });
        t
    });
    if total >= TRIM_AFTER_BYTES {
        trim();
    }
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it locks each arena while it walks it.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Reads VmRSS and the allocator's totals. The allocator's walk locks each arena briefly:
/// called on a scrape, never per request.
pub fn read() -> MemoryState {
    let mut m = MemoryState {
        resident: resident_bytes().unwrap_or(0),
        ..MemoryState::default()
    };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 has no preconditions and returns a plain struct.
        let info = unsafe { libc::mallinfo2() };
        m.heap_in_use = (info.uordblks + info.hblkhd) as u64;
        m.heap_free = info.fordblks as u64;
    }
    m
}

/// VmRSS from `/proc/self/statm` (second field, in pages).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_and_heap_are_read() {
        let m = read();
        assert!(m.resident > 1 << 20, "VmRSS {} bytes", m.resident);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // A live 64 MiB block shows in heap_in_use, and leaves it when freed. The counts
            // are process-wide and other test threads allocate too: 16 MiB of slack.
            const BLOCK: u64 = 64 << 20;
            const SLACK: u64 = 16 << 20;
            let before = read().heap_in_use;
            let block = vec![1u8; BLOCK as usize];
            let during = read().heap_in_use;
            assert!(during >= before + BLOCK - SLACK, "{before} -> {during}");
            drop(std::hint::black_box(block));
            let after = read().heap_in_use;
            assert!(after + BLOCK - SLACK <= during, "{during} -> {after}");
        }
    }
}
