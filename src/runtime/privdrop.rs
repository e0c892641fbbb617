//! Dropping root: `[runtime] user` / `group`. Called by `start` on the main thread before any
//! other thread exists, after the listeners are bound and the keys read: supplementary groups
//! (`setgroups`), then the group, then the user. A switch from root to another uid clears the
//! permitted, effective and ambient capability sets; that is checked, not assumed.
//!
//! May import: nothing of the runtime.

use std::io;

use crate::config::RunAs;

/// Switches this process to `to`. A process already running as that user and group (started
/// so by systemd's `User=`) is left as it is.
pub fn drop_to(to: &RunAs) -> Result<(), String> {
    // SAFETY: these getters cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == to.uid && gid == to.gid {
        return Ok(());
    }
    let fail = |what: &str| {
        format!(
            "cannot switch to user {:?} (uid {}, gid {}): {what}: {}",
            to.user,
            to.uid,
            to.gid,
            io::Error::last_os_error()
        )
    };
    let groups = [to.gid as libc::gid_t];
    // SAFETY: one gid from a valid array. glibc applies these calls to every thread of the
    // process (there is only this one now).
    if unsafe { libc::setgroups(1, groups.as_ptr()) } != 0 {
        return Err(fail("setgroups"));
    }
    // SAFETY: plain id-setting syscalls.
    if unsafe { libc::setgid(to.gid) } != 0 {
        return Err(fail("setgid"));
    }
    // SAFETY: as above.
    if unsafe { libc::setuid(to.uid) } != 0 {
        return Err(fail("setuid"));
    }
    verify(to)
}

/// The switch took: ids are the wanted ones, root cannot be regained, and (for a non-root
/// user) no capability is left.
fn verify(to: &RunAs) -> Result<(), String> {
    // SAFETY: plain getters.
    let (ruid, euid, rgid, egid) = unsafe {
        (
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
            libc::getegid(),
        )
    };
    if (ruid, euid, rgid, egid) != (to.uid, to.uid, to.gid, to.gid) {
        return Err(format!(
            "after switching to user {:?}: uid {ruid}/{euid}, gid {rgid}/{egid}",
            to.user
        ));
    }
    if to.uid == 0 {
        return Ok(());
    }
    // SAFETY: expected to fail with EPERM.
    if unsafe { libc::setuid(0) } == 0 {
        return Err(format!(
            "after switching to user {:?}: root could be regained",
            to.user
        ));
    }
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    for key in ["CapPrm:", "CapEff:", "CapAmb:"] {
        let value = status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim);
        if let Some(v) = value {
            if !v.trim_start_matches('0').is_empty() {
                return Err(format!(
                    "after switching to user {:?}: capabilities left ({key} {v})",
                    to.user
                ));
            }
        }
    }
    Ok(())
}
