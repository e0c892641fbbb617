//! Per-core tuning (`[[runtime.core]]`): what each shard runs with once its overrides are laid
//! over the defaults (`CoreSettings`: its CPU, the listeners it accepts on, its io_uring ring
//! size, its tunnel read buffer and its connection cap), which core accepts on which listener,
//! and the process's CPU affinity (`sched_getaffinity`) that `cpu` and the default pinning use.

use serde::Serialize;

use crate::config::types::{Listener, Runtime};

/// `ring_entries` when not given: glommio's default submission depth.
pub const RING_ENTRIES_DEFAULT: usize = 128;
/// Bounds for `ring_entries` (a power of two; the kernel's `IORING_MAX_ENTRIES` is 32768).
pub const RING_ENTRIES_MIN: usize = 16;
pub const RING_ENTRIES_MAX: usize = 32768;

/// `read_buffer` when not given: the core's tunnel read buffer as it always was (as large as a
/// bulk read can use; the bare epoll forwarder uses the same size).
pub const READ_BUFFER_DEFAULT: usize = 256 * 1024;
/// Bounds for `read_buffer`.
pub const READ_BUFFER_MIN: usize = 4 * 1024;
pub const READ_BUFFER_MAX: usize = 16 * 1024 * 1024;

/// One shard's settings: defaults with its `[[runtime.core]]` entry applied. Shown in the
/// start-up line and on the dashboard (`/live`'s `cores[].settings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoreSettings {
    /// The CPU the shard is pinned to; `None`: not pinned (`pin = false` and no `cpu`).
    pub cpu: Option<usize>,
    /// The listeners the shard accepts on, in config order.
    pub listeners: Vec<String>,
    pub ring_entries: usize,
    /// Bytes one tunnel read takes at most (the core's read buffer).
    pub read_buffer: usize,
    pub max_connections: usize,
}

impl Runtime {
    /// Whether core `id` accepts on the listener called `name`: every core does unless its
    /// `[[runtime.core]]` entry lists its listeners.
    pub fn accepts(&self, id: usize, name: &str) -> bool {
        match self.core_override(id).and_then(|o| o.listeners.as_ref()) {
            Some(names) => names.iter().any(|n| n == name),
            None => true,
        }
    }

    /// How many cores accept on `name`.
    pub fn cores_accepting(&self, name: &str) -> usize {
        (0..self.cores).filter(|&id| self.accepts(id, name)).count()
    }

    /// Core `id`'s settings. `cpus` is the process's affinity (`allowed_cpus`): without a
    /// `cpu`, a pinned core takes the `id`-th of them (wrapping), as it always did.
    pub fn settings(&self, id: usize, listeners: &[Listener], cpus: &[usize]) -> CoreSettings {
        let o = self.core_override(id);
        let default_cpu = if self.pin && !cpus.is_empty() {
            Some(cpus[id % cpus.len()])
        } else {
            None
        };
        CoreSettings {
            cpu: o.and_then(|o| o.cpu).or(default_cpu),
            listeners: listeners
                .iter()
                .filter(|l| self.accepts(id, &l.name))
                .map(|l| l.name.clone())
                .collect(),
            ring_entries: o
                .and_then(|o| o.ring_entries)
                .unwrap_or(RING_ENTRIES_DEFAULT),
            read_buffer: o.and_then(|o| o.read_buffer).unwrap_or(READ_BUFFER_DEFAULT),
            max_connections: o
                .and_then(|o| o.max_connections)
                .unwrap_or(self.max_connections),
        }
    }

    fn core_override(&self, id: usize) -> Option<&crate::config::types::CoreOverride> {
        self.core_overrides.iter().find(|o| o.id == id)
    }
}

/// The first listener that no core accepts on, if any.
pub fn unaccepted<'a>(runtime: &Runtime, listeners: &'a [Listener]) -> Option<&'a Listener> {
    listeners
        .iter()
        .find(|l| runtime.cores_accepting(&l.name) == 0)
}

/// CPUs this process may run on (its affinity mask), in order; `[0]` if it cannot be read.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, and sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) }
            == 0;
    let cpus: Vec<usize> = if ok {
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `cpu` is below CPU_SETSIZE.
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect()
    } else {
        Vec::new()
    };
    if cpus.is_empty() {
        vec![0]
    } else {
        cpus
    }
}

/// CPUs as ranges, as `/proc/*/status` writes `Cpus_allowed_list`: `0-3,6`.
pub fn cpu_list(cpus: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    out.join(",")
}

/// A size as the config writes it: `256KiB`, `1MiB`, `512B`.
pub fn show_size(bytes: usize) -> String {
    match bytes {
        b if b >= 1024 * 1024 && b % (1024 * 1024) == 0 => format!("{}MiB", b / (1024 * 1024)),
        b if b >= 1024 && b % 1024 == 0 => format!("{}KiB", b / 1024),
        b => format!("{b}B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::types::CoreOverride;

    fn runtime(cores: usize, overrides: Vec<CoreOverride>) -> Runtime {
        Runtime {
            cores,
            pin: true,
            max_connections: 100,
            core_overrides: overrides,
            pid_file: None,
            user: None,
        }
    }

    fn over(id: usize) -> CoreOverride {
        CoreOverride {
            id,
            max_connections: None,
            cpu: None,
            listeners: None,
            ring_entries: None,
            read_buffer: None,
        }
    }

    fn listener(name: &str, port: u16) -> Listener {
        Listener {
            name: name.into(),
            address: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            tls: false,
            proxy_protocol: false,
            mode: crate::config::types::ListenerMode::Http,
            forward_proxy: false,
            alpn: Vec::new(),
            http2: false,
            redirect_https: false,
        }
    }

    #[test]
    fn settings_lay_overrides_over_defaults() {
        let ls = [listener("main", 1), listener("admin", 2)];
        let r = runtime(
            3,
            vec![
                CoreOverride {
                    cpu: Some(7),
                    listeners: Some(vec!["admin".into()]),
                    ring_entries: Some(1024),
                    read_buffer: Some(65536),
                    max_connections: Some(5),
                    ..over(1)
                },
                CoreOverride {
                    listeners: Some(vec!["main".into()]),
                    ..over(0)
                },
            ],
        );
        let cpus = [0, 1];
        let s0 = r.settings(0, &ls, &cpus);
        assert_eq!(
            s0,
            CoreSettings {
                cpu: Some(0),
                listeners: vec!["main".into()],
                ring_entries: RING_ENTRIES_DEFAULT,
                read_buffer: READ_BUFFER_DEFAULT,
                max_connections: 100,
            }
        );
        let s1 = r.settings(1, &ls, &cpus);
        assert_eq!(s1.cpu, Some(7));
        assert_eq!(s1.listeners, vec!["admin".to_string()]);
        assert_eq!(
            (s1.ring_entries, s1.read_buffer, s1.max_connections),
            (1024, 65536, 5)
        );
        // No entry: every listener; the default pinning wraps around the allowed CPUs.
        let s2 = r.settings(2, &ls, &cpus);
        assert_eq!(s2.cpu, Some(0));
        assert_eq!(s2.listeners, vec!["main".to_string(), "admin".to_string()]);
        assert_eq!(r.cores_accepting("admin"), 2);
        assert!(unaccepted(&r, &ls).is_none());
    }

    #[test]
    fn unpinned_and_unaccepted() {
        let ls = [listener("main", 1), listener("other", 2)];
        let mut r = runtime(
            1,
            vec![CoreOverride {
                listeners: Some(vec!["main".into()]),
                ..over(0)
            }],
        );
        r.pin = false;
        assert_eq!(r.settings(0, &ls, &[0, 1]).cpu, None);
        assert_eq!(unaccepted(&r, &ls).map(|l| l.name.as_str()), Some("other"));
    }

    #[test]
    fn cpu_lists_and_sizes() {
        assert_eq!(cpu_list(&[0, 1, 2, 3, 6]), "0-3,6");
        assert_eq!(cpu_list(&[1]), "1");
        assert_eq!(cpu_list(&[0, 2, 3]), "0,2-3");
        assert_eq!(show_size(256 * 1024), "256KiB");
        assert_eq!(show_size(2 * 1024 * 1024), "2MiB");
        assert_eq!(show_size(1000), "1000B");
        assert!(!allowed_cpus().is_empty());
    }
}
