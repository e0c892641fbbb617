//! The standard `process_*` figures for `/metrics`, read from `/proc` when a scrape asks (never
//! on a data path): CPU seconds, resident and virtual memory, threads and start time from
//! `/proc/self/stat`, open descriptors by counting `/proc/self/fd`, the descriptor limit from
//! `getrlimit(RLIMIT_NOFILE)`, the boot time from `/proc/stat`.

use crate::observe::metrics::ProcessState;

/// `sysconf(_SC_CLK_TCK)` and the page size, asked once.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096)
}

/// The fields of `/proc/PID/stat` after the command name (field 3 onwards, 0-based here).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    Some(rest.split_whitespace().collect())
}

/// Parses `/proc/self/stat` and `/proc/stat`'s `btime` into `p` (sans-IO, for the test).
fn fill_from(p: &mut ProcessState, stat: &str, proc_stat: &str, ticks: f64, page: u64) {
    let Some(f) = stat_fields(stat) else { return };
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Field numbers of proc(5), minus 3: utime 14, stime 15, num_threads 20, starttime 22,
    // vsize 23, rss 24.
    p.cpu_seconds = (num(11) + num(12)) as f64 / ticks;
    p.threads = num(17);
    p.virtual_bytes = num(20);
    p.resident_bytes = num(21) * page;
    let btime = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    p.start_time_s = btime as f64 + num(19) as f64 / ticks;
}

pub fn read() -> ProcessState {
    let mut p = ProcessState::default();
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let proc_stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    fill_from(&mut p, &stat, &proc_stat, clock_ticks(), page_size());
    // The directory's own descriptor, open while it is read, is not counted.
    p.open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count().saturating_sub(1) as u64)
        .unwrap_or(0);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        p.max_fds = lim.rlim_cur;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_by_number() {
        let stat = "4242 (ring way) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 \
                    1234 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0";
        let mut p = ProcessState::default();
        fill_from(&mut p, stat, "cpu 1 2 3\nbtime 1700000000\n", 100.0, 4096);
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.threads, 7);
        assert_eq!(p.virtual_bytes, 104_857_600);
        assert_eq!(p.resident_bytes, 2560 * 4096);
        assert!((p.start_time_s - 1_700_000_012.34).abs() < 1e-3, "{p:?}");
    }

    #[test]
    fn this_process_reads() {
        let p = read();
        assert!(p.open_fds >= 3 && p.max_fds >= p.open_fds, "{p:?}");
        assert!(
            p.resident_bytes > 0 && p.threads >= 1 && p.start_time_s > 1e9,
            "{p:?}"
        );
    }
}
