//! The checks of `[[runtime.core]]` that need the listeners: every name in a core's
//! `listeners` is a `[[listener]]`, and every listener has a core that accepts on it.

use super::problems::Problems;
use super::spanned::At;
use super::xref::Names;
use crate::config::types::{Listener, Runtime};

/// `refs`: every name the `[[runtime.core]]` entries list, where it is written.
pub(super) fn listeners_accepted(
    runtime: &Runtime,
    refs: &[At<String>],
    listeners: &[Listener],
    names: &Names,
    p: &mut Problems,
) {
    let mut unknown = false;
    for r in refs {
        if !names.has(&r.v) {
            p.add(r.at, format!("unknown listener {:?}", r.v));
            unknown = true;
        }
    }
    if unknown {
        // The lists are wrong already; which listener they leave out is not known.
        return;
    }
    for l in listeners {
        if runtime.cores_accepting(&l.name) == 0 {
            let at = names.at(&l.name).unwrap_or(0);
            p.add(
                at,
                format!(
                    "listener {:?}: no core accepts on it (every [[runtime.core]] entry's \
                     \"listeners\" leaves it out)",
                    l.name
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load::testing::*;

    /// Two cores, two listeners ("main" on line 2, "admin" on line 5), then `extra`
    /// from line 10.
    fn two<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut lines = vec![
            "[[listener]]",
            "name = \"main\"",
            "address = \"127.0.0.1:8080\"",
            "[[listener]]",
            "name = \"admin\"",
            "address = \"127.0.0.1:8081\"",
            "[[vhost]]",
            "name = \"site\"",
            "domains = [\"*\"]",
            "[runtime]",
            "cores = 2",
            "pin = true",
        ];
        lines.extend(extra);
        lines
    }

    #[test]
    fn per_core_settings_are_read() {
        let (c, _dir) = ok(&two(&[
            "[[runtime.core]]",
            "id = 0",
            "listeners = [\"main\"]",
            "ring_entries = 1024",
            "read_buffer = \"64KiB\"",
            "cpu = 0",
            "[[runtime.core]]",
            "id = 1",
            "listeners = [\"admin\", \"main\"]",
            "read_buffer = 8192",
        ]));
        let o = &c.runtime.core_overrides;
        assert_eq!(o.len(), 2);
        assert_eq!(o[0].listeners, Some(vec!["main".to_string()]));
        assert_eq!(o[0].ring_entries, Some(1024));
        assert_eq!(o[0].read_buffer, Some(65536));
        assert_eq!(o[0].cpu, Some(0));
        assert_eq!(o[1].read_buffer, Some(8192));
        assert!(c.runtime.accepts(1, "admin") && !c.runtime.accepts(0, "admin"));
    }

    #[test]
    fn a_listener_no_core_accepts_on() {
        let lines = two(&[
            "[[runtime.core]]",
            "id = 0",
            "listeners = [\"main\"]",
            "[[runtime.core]]",
            "id = 1",
            "listeners = [\"main\"]",
        ]);
        one_problem(&lines, 5, 8, "listener \"admin\": no core accepts on it");
        // A core without a list accepts on every listener.
        ok(&two(&[
            "[[runtime.core]]",
            "id = 0",
            "listeners = [\"main\"]",
        ]));
    }

    #[test]
    fn unknown_and_empty_listener_lists() {
        one_problem(
            &two(&[
                "[[runtime.core]]",
                "id = 1",
                "listeners = [\"main\", \"nope\"]",
            ]),
            15,
            22,
            "unknown listener \"nope\"",
        );
        one_problem(
            &two(&["[[runtime.core]]", "id = 1", "listeners = []"]),
            15,
            13,
            "must not be empty",
        );
    }

    #[test]
    fn cpu_ring_entries_and_read_buffer_bounds() {
        let ps = problems(&two(&[
            "[[runtime.core]]",
            "id = 0",
            "cpu = 99999",
            "ring_entries = 100",
            "read_buffer = \"1KiB\"",
            "[[runtime.core]]",
            "id = 1",
            "cpu = -1",
            "ring_entries = 65536",
            "read_buffer = \"32MiB\"",
            "[[runtime.core]]",
            "id = 1",
        ]));
        let want: &[(usize, usize, &str)] = &[
            (
                15,
                7,
                "cpu 99999 is outside this process's CPU affinity (allowed: ",
            ),
            (
                16,
                16,
                "\"ring_entries\" must be a power of two between 16 and 32768, found 100",
            ),
            (
                17,
                15,
                "\"read_buffer\" must be between 4KiB and 16MiB, found 1KiB",
            ),
            (20, 7, "cpu -1 is outside this process's CPU affinity"),
            (21, 16, "found 65536"),
            (22, 15, "found 32MiB"),
            (24, 6, "duplicate core id 1 (first at line 19)"),
        ];
        assert_eq!(ps.len(), want.len(), "{ps:#?}");
        for (got, want) in ps.iter().zip(want) {
            assert_eq!((got.0, got.1), (want.0, want.1), "{got:?}");
            assert!(got.2.contains(want.2), "{:?} lacks {:?}", got.2, want.2);
        }
    }
}
