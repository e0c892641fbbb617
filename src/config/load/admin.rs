//! `[admin]` (the listener serving metrics and the dashboard, HTTP/1.1 only, and who may reach
//! it) and `[log]` (the access log's target and format).

use std::path::{Path, PathBuf};

use super::problems::Problems;
use super::spanned::{list, string, Section, Val};
use super::values::absolute;
use crate::config::types::{AccessFormat, AccessTarget, Admin, Listener, Log};

/// `[admin] listener = "<name>", allow = ["127.0.0.1/32", "::1/128"], socket = "path"` (allow
/// defaults to loopback; `socket`, the control socket, is relative to the config file's
/// directory). One of `listener` and `socket` is needed.
pub(super) fn admin(
    v: &Val<'_>,
    listeners: &mut [Listener],
    base_dir: &Path,
    p: &mut Problems,
) -> Option<Admin> {
    let mut s = Section::of(v, "[admin]", p)?;
    let at = s.at;
    // `Some(None)`: given, with a problem (reported).
    let socket = s.opt("socket", p, |v, what, p| {
        Some(control_socket(v, what, base_dir, p))
    });
    let find = |v, what: &str, p: &mut Problems| {
        let name = string(v, what, p)?;
        let found = listeners.iter().position(|l| l.name == name.v);
        if found.is_none() {
            p.add(name.at, format!("unknown listener {:?}", name.v));
        }
        found
    };
    let (given, socket) = (socket.is_some(), socket.flatten());
    let listener = if given {
        s.opt("listener", p, find)
    } else {
        s.req("listener", p, find)
    };
    let allow = s.opt("allow", p, |v, what, p| {
        list(v, what, false, p, |v, what, p| {
            let text = string(v, what, p)?;
            match text.v.parse::<crate::policy::cidr::Cidr>() {
                Ok(c) => Some(c),
                Err(e) => {
                    p.add(text.at, format!("{what}: {e}"));
                    None
                }
            }
        })
    });
    s.finish(p);
    let loopback = || {
        ["127.0.0.1/32", "::1/128"]
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect()
    };
    if listener.is_none() && socket.is_none() {
        return None;
    }
    // The admin endpoint (metrics, dashboard, live feed) speaks HTTP/1.1 only: its TLS
    // listener offers http/1.1 alone, and h2c is refused.
    if let Some(listener) = listener {
        let l = &mut listeners[listener];
        if l.http2 {
            p.add(
                at,
                format!(
                    "the [admin] listener {:?} serves HTTP/1.1 only: remove http2 = true",
                    l.name
                ),
            );
        }
        l.alpn = vec!["http/1.1".into()];
    }
    Some(Admin {
        listener,
        allow: allow.unwrap_or_else(loopback),
        socket,
    })
}

/// `[admin] socket`: a path relative to the config file's directory, whose directory exists.
fn control_socket(v: &Val<'_>, what: &str, base_dir: &Path, p: &mut Problems) -> Option<PathBuf> {
    let text = string(v, what, p)?;
    if text.v.is_empty() {
        p.add(text.at, format!("{what} must be a file path"));
        return None;
    }
    let path = absolute(base_dir.join(text.v));
    // sockaddr_un holds 108 bytes, the terminating NUL included.
    if path.as_os_str().len() > 107 {
        p.add(
            text.at,
            format!(
                "{what}: {} is too long for a Unix socket (at most 107 bytes)",
                path.display()
            ),
        );
        return None;
    }
    if !path.parent().is_some_and(|d| d.is_dir()) {
        p.add(
            text.at,
            format!("{what}: directory of {} does not exist", path.display()),
        );
        return None;
    }
    Some(path)
}

/// `[log] access = "off" | "stderr" | "/path/file"`, `access_format = "combined" | "json"`.
pub(super) fn log(v: Option<&Val<'_>>, base_dir: &Path, p: &mut Problems) -> Log {
    let mut l = Log {
        access: AccessTarget::Off,
        access_format: AccessFormat::Combined,
    };
    let Some(mut s) = v.and_then(|v| Section::of(v, "[log]", p)) else {
        return l;
    };
    let access = s.opt("access", p, |v, what, p| {
        let text = string(v, what, p)?;
        Some(match text.v {
            "off" => AccessTarget::Off,
            "stderr" => AccessTarget::Stderr,
            "" => {
                p.add(
                    text.at,
                    format!("{what} must be \"off\", \"stderr\" or a file path"),
                );
                return None;
            }
            path => AccessTarget::File(absolute(base_dir.join(path))),
        })
    });
    let format = s.opt("access_format", p, |v, what, p| {
        let text = string(v, what, p)?;
        match text.v {
            "combined" => Some(AccessFormat::Combined),
            "json" => Some(AccessFormat::Json),
            other => {
                let msg = format!("{what} must be \"combined\" or \"json\", found {other:?}");
                p.add(text.at, msg);
                None
            }
        }
    });
    s.finish(p);
    if let Some(AccessTarget::File(path)) = &access {
        let dir_ok = path.parent().is_some_and(|d| d.is_dir());
        if !dir_ok {
            p.add(
                v.map_or(0, |v| v.span().start),
                format!(
                    "[log] access: directory of {} does not exist",
                    path.display()
                ),
            );
        }
    }
    l.access = access.unwrap_or(l.access);
    l.access_format = format.unwrap_or(l.access_format);
    l
}

#[cfg(test)]
mod tests {
    use crate::config::load::testing::*;

    #[test]
    fn admin_listener_is_http1_only() {
        let base = [
            "[[listener]]",
            "name = \"admin\"",
            "address = \"127.0.0.1:9090\"",
            "tls = true",
            "[admin]",
            "listener = \"admin\"",
        ];
        let (c, _d) = ok(&with(&base));
        let admin = c.listeners.iter().find(|l| l.name == "admin").unwrap();
        assert_eq!(admin.alpn, vec!["http/1.1".to_string()]);
        assert_eq!(
            c.listeners[0].alpn,
            vec!["h2".to_string(), "http/1.1".to_string()]
        );
        let mut h2c = base.to_vec();
        h2c[3] = "http2 = true";
        let ps = problems(&with(&h2c));
        assert!(
            ps.iter().any(|p| p.2.contains("serves HTTP/1.1 only")),
            "{ps:?}"
        );
    }

    #[test]
    fn the_control_socket_is_relative_to_the_config_and_may_stand_alone() {
        let (c, dir) = ok(&with(&["[admin]", "socket = \"ctl.sock\""]));
        let admin = c.admin.unwrap();
        assert_eq!(admin.socket, Some(dir.0.join("ctl.sock")));
        assert_eq!(admin.listener, None);
        // Its directory must exist.
        one_problem(
            &with(&["[admin]", "socket = \"run/ctl.sock\""]),
            8,
            10,
            "directory of",
        );
        // Neither a listener nor a socket: the listener is missing.
        one_problem(
            &with(&["[admin]", "allow = []"]),
            7,
            1,
            "missing required key \"listener\"",
        );
    }

    #[test]
    fn lameduck_defaults_to_zero_and_takes_zero() {
        use std::time::Duration;
        let (c, _d) = ok(&with(&[]));
        assert_eq!(c.timeouts.lameduck, Duration::ZERO);
        for (text, want) in [("0s", 0), ("0", 0), ("2s", 2), ("1m", 60)] {
            let line = format!("lameduck = \"{text}\"");
            let (c, _d) = ok(&with(&["[timeouts]", &line]));
            assert_eq!(c.timeouts.lameduck, Duration::from_secs(want), "{text}");
        }
        one_problem(
            &with(&["[timeouts]", "lameduck = \"soon\""]),
            8,
            12,
            "invalid duration",
        );
    }
}
