//! Users and groups by name (`[runtime] user`, `group`), through the C library's
//! `getpwnam_r` / `getgrnam_r`, so that NSS sources (files, LDAP, systemd's dynamic users)
//! answer as they do for every other program.

use std::ffi::CString;

/// Buffer for one passwd or group entry; grown on ERANGE up to `MAX_BUF`.
const START_BUF: usize = 1024;
const MAX_BUF: usize = 1 << 20;

/// The uid and primary gid of `name`, if the user exists.
pub(super) fn user(name: &str) -> Option<(u32, u32)> {
    let c = CString::new(name).ok()?;
    let mut size = START_BUF;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        // SAFETY: a zeroed passwd is a valid out-parameter.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` is `size` bytes long.
        let rc = unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), size, &mut out) };
        if rc == libc::ERANGE && size < MAX_BUF {
            size *= 2;
            continue;
        }
        return (rc == 0 && !out.is_null()).then_some((pw.pw_uid, pw.pw_gid));
    }
}

/// The gid of group `name`, if it exists.
pub(super) fn group(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let mut size = START_BUF;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        // SAFETY: a zeroed group is a valid out-parameter.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` is `size` bytes long.
        let rc = unsafe { libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr(), size, &mut out) };
        if rc == libc::ERANGE && size < MAX_BUF {
            size *= 2;
            continue;
        }
        return (rc == 0 && !out.is_null()).then_some(gr.gr_gid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_exists_and_a_made_up_name_does_not() {
        assert_eq!(user("root"), Some((0, 0)));
        assert_eq!(group("root"), Some(0));
        assert_eq!(user("no-such-user-ringway-test"), None);
        assert_eq!(group("no-such-group-ringway-test"), None);
    }
}
