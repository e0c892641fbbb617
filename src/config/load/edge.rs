//! The edge-server keys of `[[vhost]]`, `[[vhost.context]]` and `[[vhost.websocket]]`: header
//! rules (`response_headers`, `request_headers`), `error_pages`, and on routes `auth` (users
//! files, plain or bcrypt; plain lines are a warning), `allow_from` / `deny_from`,
//! `requests_per_ip` and `timeouts`; and the `redirect` and `respond` handlers' keys.

use std::path::Path;

use toml::de::DeValue;

use super::problems::Problems;
use super::spanned::{integer, list, string, wrong_type, At, Section, Val};
use super::values::{duration, existing_file, parse_duration};
use crate::config::types::{ErrorPage, Handler, RouteRules, RouteTimeouts};
use crate::policy::access::{Access, Auth, Users};
use crate::policy::headers::{check_name, check_value, HeaderRules, RedirectTarget};

/// Error pages larger than this are refused (they are held in memory by every core).
const ERROR_PAGE_BYTES_MAX: u64 = 1024 * 1024;

/// `response_headers = { set = {...}, add = {...}, remove = [...] }` (or `request_headers`).
pub(super) fn header_rules(
    v: &Val<'_>,
    name: &'static str,
    request: bool,
    p: &mut Problems,
) -> Option<HeaderRules> {
    let mut s = Section::of(v, name, p)?;
    let set = s.opt("set", p, |v, what, p| fields(v, what, request, p));
    let add = s.opt("add", p, |v, what, p| fields(v, what, request, p));
    let remove = s.opt("remove", p, |v, what, p| {
        list(v, what, false, p, |v, what, p| {
            let t = string(v, what, p)?;
            check_name(t.v, request)
                .map_err(|e| p.add(t.at, format!("{name}: {e}")))
                .ok()?;
            Some(t.v.to_string())
        })
    });
    s.finish(p);
    // A wrong entry was reported (the load fails): the rest still gets checked.
    Some(HeaderRules {
        set: set.unwrap_or_default(),
        add: add.unwrap_or_default(),
        remove: remove.unwrap_or_default(),
    })
}

/// `{ "Name" = "value", ... }`; wrong entries are reported and left out.
fn fields(
    v: &Val<'_>,
    what: &str,
    request: bool,
    p: &mut Problems,
) -> Option<Vec<(String, String)>> {
    let DeValue::Table(t) = v.get_ref() else {
        return wrong_type(v, "a table of header names and values", what, p);
    };
    let mut out = Vec::new();
    for (key, value) in t.iter() {
        let name: &str = key.get_ref();
        if let Err(e) = check_name(name, request) {
            p.add(key.span().start, e);
            continue;
        }
        let Some(text) = string(value, &format!("{name:?}"), p) else {
            continue;
        };
        if let Err(e) = check_value(text.v) {
            p.add(text.at, e);
            continue;
        }
        out.push((name.to_string(), text.v.to_string()));
    }
    Some(out)
}

/// `error_pages = { 404 = "errors/404.html", ... }`: each file read now (a reload reads it
/// again); paths relative to the config file.
pub(super) fn error_pages(v: &Val<'_>, base_dir: &Path, p: &mut Problems) -> Vec<ErrorPage> {
    let DeValue::Table(t) = v.get_ref() else {
        return wrong_type(v, "a table of status = \"file\"", "error_pages", p).unwrap_or_default();
    };
    let mut out = Vec::new();
    for (key, value) in t.iter() {
        let k: &str = key.get_ref();
        let status = k.parse::<u16>().ok().filter(|s| (400..=599).contains(s));
        let Some(status) = status else {
            p.add(
                key.span().start,
                format!("error_pages: {k:?} is not an error status (400 to 599)"),
            );
            continue;
        };
        let Some(path) = existing_file(value, &format!("error_pages {status}"), base_dir, p) else {
            continue;
        };
        let at = value.span().start;
        match std::fs::metadata(&path).map(|m| m.len()) {
            Ok(n) if n > ERROR_PAGE_BYTES_MAX => {
                p.add(at, format!("{} is larger than 1 MiB", path.display()));
                continue;
            }
            _ => {}
        }
        match std::fs::read(&path) {
            Ok(body) => out.push(ErrorPage { status, body }),
            Err(e) => p.add(at, format!("cannot read {}: {e}", path.display())),
        }
    }
    out
}

/// `auth = { users_file = "...", realm = "..." }`: the file read and checked now (a reload
/// reads it again). A plain-text password is a warning.
pub(super) fn auth(v: &Val<'_>, base_dir: &Path, p: &mut Problems) -> Option<Auth> {
    let mut s = Section::of(v, "auth", p)?;
    let file_at = s.get("users_file").map(|v| v.span().start);
    let file = s.req("users_file", p, |v, what, p| {
        existing_file(v, what, base_dir, p)
    });
    let realm = s.opt("realm", p, |v, what, p| {
        let t = string(v, what, p)?;
        let ok = !t.v.is_empty()
            && t.v
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
        if !ok {
            p.add(
                t.at,
                format!("{what} must be printable ASCII without '\"' or '\\\\'"),
            );
            return None;
        }
        Some(t.v.to_string())
    });
    let at = s.at;
    s.finish(p);
    let file = file?;
    let at = file_at.unwrap_or(at);
    let parsed = std::fs::read_to_string(&file)
        .map_err(|e| e.to_string())
        .and_then(|t| crate::policy::access::parse_users(&t));
    let users: Users = match parsed {
        Ok(f) => {
            for (line, user) in &f.plain_lines {
                p.warn(
                    at,
                    format!(
                        "users_file {} line {line}: plain-text password for {user:?}; use a bcrypt hash (htpasswd -B)",
                        file.display()
                    ),
                );
            }
            f.users
        }
        Err(e) => {
            p.add(at, format!("users_file {}: {e}", file.display()));
            return None;
        }
    };
    Some(Auth {
        users,
        realm: realm.unwrap_or_else(|| "ringway".to_string()),
    })
}

fn cidrs(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<Vec<crate::policy::cidr::Cidr>> {
    list(v, what, false, p, |v, what, p| {
        let text = string(v, what, p)?;
        text.v
            .parse::<crate::policy::cidr::Cidr>()
            .map_err(|e| p.add(text.at, format!("{what}: {e}")))
            .ok()
    })
}

/// The route keys shared by contexts and WebSocket routes (`requests_per_ip`: contexts only).
/// `auth` is read by the caller (a CONNECT context uses it for its own users).
pub(super) fn route_rules(
    s: &mut Section<'_, '_>,
    context: bool,
    auth: Option<Auth>,
    p: &mut Problems,
) -> RouteRules {
    let response_headers = s.opt("response_headers", p, |v, _, p| {
        header_rules(v, "response_headers", false, p)
    });
    let request_headers = s.opt("request_headers", p, |v, _, p| {
        header_rules(v, "request_headers", true, p)
    });
    let allow_from = s.opt("allow_from", p, cidrs);
    let deny_from = s.opt("deny_from", p, cidrs);
    let requests_per_ip = if context {
        s.opt("requests_per_ip", p, |v, what, p| {
            let t = string(v, what, p)?;
            crate::policy::limits::Rate::parse(t.v, parse_duration)
                .map_err(|e| p.add(t.at, format!("{what}: {e}")))
                .ok()
        })
    } else {
        None
    };
    let timeouts = s.opt("timeouts", p, route_timeouts);
    RouteRules {
        response_headers: response_headers.unwrap_or_default(),
        request_headers: request_headers.unwrap_or_default(),
        access: Access {
            auth,
            allow_from: allow_from.unwrap_or_default(),
            deny_from: deny_from.unwrap_or_default(),
        },
        requests_per_ip,
        timeouts: timeouts.unwrap_or_default(),
        style: None,
        limiter: None,
    }
}

/// `timeouts = { connect = "2s", ... }` on a route.
fn route_timeouts(v: &Val<'_>, _what: &str, p: &mut Problems) -> Option<RouteTimeouts> {
    let mut s = Section::of(v, "timeouts", p)?;
    let t = RouteTimeouts {
        connect: s.opt("connect", p, duration),
        upstream_read: s.opt("upstream_read", p, duration),
        tunnel_idle: s.opt("tunnel_idle", p, duration),
        send: s.opt("send", p, duration),
        header: s.opt("header", p, duration),
    };
    s.finish(p);
    Some(t)
}

/// `handler = "redirect"` (`to`, `status`) or `"respond"` (`status`, `body`); `None` for other
/// handlers, which may not have these keys (reported).
pub(super) fn fixed_answer(
    handler: &str,
    entry_at: usize,
    to: Option<At<&str>>,
    status: Option<At<i64>>,
    body: Option<At<&str>>,
    p: &mut Problems,
) -> Option<Option<Handler>> {
    match handler {
        "redirect" => {
            if let Some(b) = &body {
                p.add(b.at, "\"body\" is only for handler = \"respond\"");
            }
            let Some(to) = to else {
                p.add(
                    entry_at,
                    "handler \"redirect\" needs \"to\" (like \"https://{host}{uri}\")",
                );
                return Some(None);
            };
            let target = RedirectTarget::parse(to.v)
                .map_err(|e| p.add(to.at, format!("\"to\": {e}")))
                .ok();
            let status = match status {
                None => Some(301),
                Some(s) if matches!(s.v, 301 | 302 | 303 | 307 | 308) => Some(s.v as u16),
                Some(s) => {
                    p.add(
                        s.at,
                        format!(
                            "a redirect's \"status\" must be 301, 302, 303, 307 or 308, found {}",
                            s.v
                        ),
                    );
                    None
                }
            };
            Some(
                target
                    .zip(status)
                    .map(|(to, status)| Handler::Redirect { to, status }),
            )
        }
        "respond" => {
            if let Some(t) = &to {
                p.add(t.at, "\"to\" is only for handler = \"redirect\"");
            }
            let body = body.map(|b| b.v.to_string()).unwrap_or_default();
            let status = match status {
                None => Some(200),
                Some(s) if (200..=599).contains(&s.v) => {
                    let bodyless = matches!(s.v, 204 | 304);
                    if bodyless && !body.is_empty() {
                        p.add(
                            s.at,
                            format!("a {} answer has no body: remove \"body\"", s.v),
                        );
                        None
                    } else {
                        Some(s.v as u16)
                    }
                }
                Some(s) => {
                    p.add(
                        s.at,
                        format!(
                            "a fixed answer's \"status\" must be between 200 and 599, found {}",
                            s.v
                        ),
                    );
                    None
                }
            };
            Some(status.map(|status| Handler::Respond { status, body }))
        }
        _ => {
            for (key, at) in [
                ("to", to.map(|t| t.at)),
                ("status", status.map(|s| s.at)),
                ("body", body.map(|b| b.at)),
            ] {
                if let Some(at) = at {
                    p.add(
                        at,
                        format!("{key:?} is only for handler = \"redirect\" or \"respond\""),
                    );
                }
            }
            None
        }
    }
}

/// `status`, read as an integer.
pub(super) fn status(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<At<i64>> {
    integer(v, what, p)
}

#[cfg(test)]
mod tests {
    use crate::config::load::testing::*;
    use crate::config::types::Handler;

    fn context(extra: &[&str]) -> Vec<String> {
        let mut lines = vec!["[[vhost.context]]".to_string(), "uri = \"/x\"".to_string()];
        lines.extend(extra.iter().map(|s| s.to_string()));
        lines
    }

    fn with_owned(lines: &[String]) -> Vec<String> {
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        with(&refs).into_iter().map(String::from).collect()
    }

    fn problems_of(lines: &[String]) -> Vec<(usize, usize, String)> {
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        problems(&refs)
    }

    #[test]
    fn redirect_and_respond_handlers() {
        let lines = with_owned(&context(&[
            "handler = \"redirect\"",
            "to = \"https://{host}{uri}\"",
        ]));
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (c, _d) = ok(&refs);
        assert!(matches!(
            c.vhosts[0].contexts[0].handler,
            Handler::Redirect { status: 301, .. }
        ));
        for (extra, want) in [
            (
                vec!["handler = \"redirect\"", "to = \"/\"", "status = 200"],
                "must be 301, 302, 303, 307 or 308",
            ),
            (vec!["handler = \"redirect\""], "needs \"to\""),
            (
                vec!["handler = \"redirect\"", "to = \"https://{hst}/\""],
                "unknown placeholder {hst}",
            ),
            (
                vec!["handler = \"respond\"", "status = 99"],
                "between 200 and 599",
            ),
            (
                vec!["handler = \"respond\"", "status = 204", "body = \"x\""],
                "has no body",
            ),
            (
                vec!["handler = \"static\"", "status = 410"],
                "only for handler = \"redirect\" or \"respond\"",
            ),
            (
                vec!["handler = \"respond\"", "backend = \"b\""],
                "only allowed with handler = \"proxy\", not \"respond\"",
            ),
        ] {
            let ps = problems_of(&with_owned(&context(&extra)));
            assert!(ps.iter().any(|p| p.2.contains(want)), "{extra:?}: {ps:?}");
        }
    }

    #[test]
    fn header_rule_names_are_checked() {
        let ps = problems_of(&with_owned(&context(&[
            "handler = \"static\"",
            "response_headers = { set = { \"Content-Length\" = \"1\" }, remove = [\"Connection\"] }",
            "request_headers = { add = { \"Host\" = \"x\" } }",
        ])));
        assert_eq!(ps.len(), 3, "{ps:?}");
        assert!(ps[0].2.contains("hop-by-hop or framing header"), "{ps:?}");
        assert_eq!((ps[0].0, ps[0].1), (10, 30));
        assert!(ps[2].2.contains("\"Host\" cannot be changed"), "{ps:?}");
    }
}
