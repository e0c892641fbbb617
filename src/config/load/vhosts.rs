//! `[[vhost]]`: domains, listeners, `doc_root`, `tls` (read by `tls::vhost_tls`), and its
//! routes: `[[vhost.websocket]]` (a backend or an address; `mode = "tunnel"` with its keys) and
//! `[[vhost.context]]` (a handler: static, echo, proxy, connect, redirect or respond). The
//! edge keys (header rules, error pages, access, per-route timeouts) are read by `edge`. Both take
//! the delivery keys (`delivery`: compression, precompressed variants, `cache_control`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::delivery;
use super::edge::{auth, error_pages, fixed_answer, header_rules, route_rules, status};
use super::problems::Problems;
use super::spanned::{boolean, list, string, tables, At, Section, Val};
use super::tls::vhost_tls;
use super::values::{absolute, address, domain, parse_duration, size, uri};
use super::xref::{reference, Names, Refs};
use crate::config::types::{
    ContextRoute, Handler, TunnelMode, VHost, WebSocketRoute, TUNNEL_MAX_MESSAGE_DEFAULT,
    TUNNEL_PING_INTERVAL_DEFAULT,
};
use crate::policy::route::UriMatch;

pub(super) fn vhosts(
    v: &Val<'_>,
    refs: &Refs<'_>,
    base_dir: &Path,
    p: &mut Problems,
) -> Vec<VHost> {
    let mut names = Names::new("vhost");
    let mut out = Vec::new();
    let mut placed: Vec<Placed> = Vec::new();
    for s in tables(v, "[[vhost]]", p) {
        let domains = domain_positions(&s);
        if let Some(vhost) = vhost(s, refs, base_dir, &mut names, p) {
            placed.push(Placed {
                name: vhost.name.clone(),
                listeners: vhost.listeners.clone(),
                domains,
            });
            out.push(vhost);
        }
    }
    same_domain_twice(&placed, p);
    out
}

/// What the duplicate-domain check needs of a vhost.
struct Placed {
    name: String,
    /// Empty: every listener.
    listeners: Vec<String>,
    /// Lower-cased domains and where each is written.
    domains: Vec<(String, usize)>,
}

/// Each `domains` entry (lower-cased) with its position; wrong entries are left to `domain`.
fn domain_positions(s: &Section<'_, '_>) -> Vec<(String, usize)> {
    let Some(v) = s.peek("domains") else {
        return Vec::new();
    };
    let toml::de::DeValue::Array(items) = v.get_ref() else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item.get_ref() {
            toml::de::DeValue::String(d) => Some((d.to_ascii_lowercase(), item.span().start)),
            _ => None,
        })
        .collect()
}

/// Two vhosts that share a listener cannot both claim a domain (or both be `*`): the second
/// would never be chosen.
fn same_domain_twice(vhosts: &[Placed], p: &mut Problems) {
    for (j, later) in vhosts.iter().enumerate() {
        for earlier in &vhosts[..j] {
            let Some(shared) = shared_listener(&earlier.listeners, &later.listeners) else {
                continue;
            };
            for (domain, at) in &later.domains {
                if earlier.domains.iter().any(|(d, _)| d == domain) {
                    let what = if domain == "*" {
                        "the default domain \"*\"".to_string()
                    } else {
                        format!("domain {domain:?}")
                    };
                    p.add(
                        *at,
                        format!(
                            "{what} is already served by vhost {:?} on {shared}: each listener \
                             takes a domain from one vhost only",
                            earlier.name
                        ),
                    );
                }
            }
        }
    }
}

/// A listener both vhosts are on, in words; `None` when they share none.
fn shared_listener(a: &[String], b: &[String]) -> Option<String> {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Some("every listener".to_string()),
        (true, false) => b.first().map(|l| format!("listener {l:?}")),
        (false, true) => a.first().map(|l| format!("listener {l:?}")),
        (false, false) => a
            .iter()
            .find(|l| b.contains(l))
            .map(|l| format!("listener {l:?}")),
    }
}

/// Warns about routes that can never match: routes are tried most specific first (longest
/// literal; an exact path before a prefix of the same length; regexes last, in file order),
/// and the first match wins. So an entry is dead when an earlier one is the same, and a regex
/// is dead when a `"/"` prefix (which matches every path) is in the same list.
fn unreachable_routes(kind: &str, routes: &[(usize, UriMatch)], p: &mut Problems) {
    for (j, (at, uri)) in routes.iter().enumerate() {
        let earlier = &routes[..j];
        let same = earlier
            .iter()
            .find(|(_, u)| u.as_text() == uri.as_text() && u.specificity() == uri.specificity());
        if let Some((first, _)) = same {
            let line = p.line(*first);
            p.warn(
                *at,
                format!(
                    "this {kind} can never match: the {kind} at line {line} has the same uri {:?} and wins",
                    uri.as_text()
                ),
            );
            continue;
        }
        if matches!(uri, UriMatch::Regex(..)) {
            let root = routes
                .iter()
                .find(|(_, u)| matches!(u, UriMatch::Prefix(x) if x == "/"));
            if let Some((first, _)) = root {
                let line = p.line(*first);
                p.warn(
                    *at,
                    format!(
                        "this {kind} can never match: the {kind} at line {line} (uri \"/\") matches every path, and regexes are tried after every prefix"
                    ),
                );
            }
        }
    }
}

fn vhost(
    mut s: Section<'_, '_>,
    refs: &Refs<'_>,
    base_dir: &Path,
    names: &mut Names,
    p: &mut Problems,
) -> Option<VHost> {
    let name = s.req("name", p, string);
    let domains = s.req("domains", p, |v, what, p| list(v, what, true, p, domain));
    let listener_ref =
        |v: &Val<'_>, what: &str, p: &mut Problems| reference(v, what, refs.listeners, p);
    let listeners = s.opt("listeners", p, |v, what, p| {
        list(v, what, false, p, listener_ref)
    });
    let doc_root = doc_root(s.get("doc_root"), base_dir, p);
    let tls = s.opt("tls", p, |v, what, p| vhost_tls(v, what, base_dir, p));
    let response_headers = s.opt("response_headers", p, |v, _, p| {
        header_rules(v, "response_headers", false, p)
    });
    let request_headers = s.opt("request_headers", p, |v, _, p| {
        header_rules(v, "request_headers", true, p)
    });
    let error_pages = s.opt("error_pages", p, |v, _, p| {
        Some(error_pages(v, base_dir, p))
    });
    let websockets = s.get("websocket");
    let contexts = s.get("context");
    let keys = delivery::read(&mut s, p);
    s.finish(p);
    let (mut ws_at, mut ctx_at) = (Vec::new(), Vec::new());
    let websockets = websockets.map(|v| tables(v, "[[vhost.websocket]]", p));
    let websockets: Vec<WebSocketRoute> = websockets
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| {
            let at = uri_at(&s);
            websocket(s, refs, base_dir, p).map(|w| (at, w))
        })
        .map(|(at, w)| {
            ws_at.push((at, w.uri.clone()));
            w
        })
        .collect();
    let contexts = contexts.map(|v| tables(v, "[[vhost.context]]", p));
    let contexts: Vec<ContextRoute> = contexts
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| {
            let at = uri_at(&s);
            context(s, refs, base_dir, &keys, p).map(|c| (at, c))
        })
        .map(|(at, c)| {
            ctx_at.push((at, c.uri.clone()));
            c
        })
        .collect();
    unreachable_routes("[[vhost.websocket]]", &ws_at, p);
    unreachable_routes("[[vhost.context]]", &ctx_at, p);
    let name = name?;
    names.add(&name, p);
    Some(VHost {
        name: name.v.to_string(),
        domains: domains?,
        listeners: listeners.unwrap_or_default(),
        doc_root,
        websockets,
        contexts,
        tls,
        response_headers: response_headers.unwrap_or_default(),
        request_headers: request_headers.unwrap_or_default(),
        error_pages: error_pages.unwrap_or_default(),
        style: None,
        delivery: keys.settle(),
    })
}

/// `doc_root`, joined to `base_dir`; default `base_dir/www`. A `doc_root` given must exist
/// and be a directory; the default may be missing (a WebSocket-only site needs none; static
/// requests then answer 404).
fn doc_root(v: Option<&Val<'_>>, base_dir: &Path, p: &mut Problems) -> PathBuf {
    let (path, at) = match v.map(|v| string(v, "\"doc_root\"", p)) {
        Some(Some(s)) => (base_dir.join(s.v), s.at),
        Some(None) | None => return absolute(base_dir.join("www")),
    };
    let path = absolute(path);
    if !path.exists() {
        p.add(at, format!("doc_root {} does not exist", path.display()));
    } else if !path.is_dir() {
        p.add(
            at,
            format!("doc_root {} is not a directory", path.display()),
        );
    }
    path
}

/// Where an entry's `uri` is written (else the entry's header).
fn uri_at(s: &Section<'_, '_>) -> usize {
    s.peek("uri").map_or(s.at, |v| v.span().start)
}

fn websocket(
    mut s: Section<'_, '_>,
    refs: &Refs<'_>,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<WebSocketRoute> {
    let at = s.at;
    let uri = s.req("uri", p, uri);
    let backend = s.get("backend");
    let address_value = s.get("address");
    let origins = s.opt("origins", p, |v, what, p| {
        list(v, what, true, p, |v, what, p| {
            let text = string(v, what, p)?;
            match crate::protocol::ws::check_origin_pattern(text.v) {
                Ok(()) => Some(text.v.to_ascii_lowercase()),
                Err(e) => {
                    p.add(text.at, format!("{what}: {e}"));
                    None
                }
            }
        })
    });
    let allow_missing_origin = s.opt("allow_missing_origin", p, boolean);
    let tunnel = tunnel_mode(&mut s, p);
    let auth = s.opt("auth", p, |v, _, p| auth(v, base_dir, p));
    let rules = route_rules(&mut s, false, auth, p);
    s.finish(p);
    let backend = match (backend, address_value) {
        (Some(b), None) => {
            let name = reference(b, "\"backend\"", refs.backends, p)?;
            *refs.index.get(&name)?
        }
        (None, Some(a)) => {
            let text = string(a, "\"address\"", p)?.v.to_string();
            let address = address(a, "\"address\"", p)?;
            refs.implicit_backend(address, &text, a.span().start)
        }
        _ => {
            let msg = "a [[vhost.websocket]] entry needs exactly one of \"backend\" or \"address\"";
            p.add(at, msg);
            return None;
        }
    };
    Some(WebSocketRoute {
        uri: uri?,
        backend,
        origins: origins.unwrap_or_default(),
        allow_missing_origin: allow_missing_origin.unwrap_or(false),
        tunnel,
        rules,
    })
}

/// `mode` and the keys that go with `mode = "tunnel"` in a `[[vhost.websocket]]` entry.
fn tunnel_mode(s: &mut Section<'_, '_>, p: &mut Problems) -> Option<TunnelMode> {
    let at = s.at;
    let tunnel = s.opt("mode", p, is_tunnel).unwrap_or(false);
    let text = s.opt("frame", p, frame_is_text);
    let subprotocols = s.opt("subprotocols", p, |v, what, p| {
        list(v, what, false, p, subprotocol)
    });
    let ping_interval = s.opt("ping_interval", p, ping_interval);
    let max_message = s.opt("max_message", p, |v, what, p| {
        size(v, what, 1..=256 * 1024 * 1024, p)
    });
    if !tunnel {
        let given = [
            ("frame", text.is_some()),
            ("subprotocols", subprotocols.is_some()),
            ("ping_interval", ping_interval.is_some()),
            ("max_message", max_message.is_some()),
        ];
        for (key, _) in given.iter().filter(|(_, g)| *g) {
            p.add(at, format!("\"{key}\" applies to mode = \"tunnel\" only"));
        }
        return None;
    }
    Some(TunnelMode {
        text: text.unwrap_or(true),
        subprotocols: subprotocols.unwrap_or_default(),
        ping_interval: ping_interval.unwrap_or(Some(TUNNEL_PING_INTERVAL_DEFAULT)),
        max_message: max_message.unwrap_or(TUNNEL_MAX_MESSAGE_DEFAULT),
    })
}

/// `mode = "proxy" | "tunnel"`: true for a tunnel.
fn is_tunnel(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<bool> {
    let text = string(v, what, p)?;
    match text.v {
        "proxy" => Some(false),
        "tunnel" => Some(true),
        other => {
            p.add(
                text.at,
                format!("{what} must be \"proxy\" or \"tunnel\", found {other:?}"),
            );
            None
        }
    }
}

/// `frame = "text" | "binary"`: true for text frames.
fn frame_is_text(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<bool> {
    let t = string(v, what, p)?;
    match t.v {
        "text" => Some(true),
        "binary" => Some(false),
        other => {
            p.add(
                t.at,
                format!("{what} must be \"text\" or \"binary\", found {other:?}"),
            );
            None
        }
    }
}

/// A `subprotocols` entry: a token (RFC 6455 §4.1), visible ASCII without separators.
fn subprotocol(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<String> {
    let t = string(v, what, p)?;
    let token = !t.v.is_empty()
        && t.v
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    if !token {
        p.add(
            t.at,
            format!("{what} must be a token (like \"chat.v1\"), found {:?}", t.v),
        );
        return None;
    }
    Some(t.v.to_string())
}

/// `ping_interval`: a duration, or `"0"` (`"0s"`, `"0ms"`) for no pings (`Some(None)`).
fn ping_interval(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<Option<Duration>> {
    let t = string(v, what, p)?;
    if matches!(t.v, "0" | "0s" | "0ms") {
        return Some(None);
    }
    parse_duration(t.v)
        .map_err(|e| p.add(t.at, e))
        .ok()
        .map(Some)
}

fn context(
    mut s: Section<'_, '_>,
    refs: &Refs<'_>,
    base_dir: &Path,
    vhost_keys: &delivery::DeliveryKeys,
    p: &mut Problems,
) -> Option<ContextRoute> {
    let at = s.at;
    let uri = s.req("uri", p, uri);
    let handler_name = s.req("handler", p, string);
    let backend = s.get("backend");
    let host = s.opt("host", p, string).map(|h| h.v.to_string());
    let allow_value = s.get("allow");
    let allow = s.opt("allow", p, |v, what, p| {
        list(v, what, true, p, |v, what, p| {
            let text = string(v, what, p)?;
            crate::policy::connect::Rule::parse(text.v)
                .map_err(|e| p.add(text.at, format!("{what}: {e}")))
                .ok()
        })
    });
    let auth = s.opt("auth", p, |v, _, p| auth(v, base_dir, p));
    let to = s.opt("to", p, string);
    let status = s.opt("status", p, status);
    let body = s.opt("body", p, string);
    let keys = delivery::read(&mut s, p).over(vhost_keys);
    let is_connect = handler_name.as_ref().is_some_and(|h| h.v == "connect");
    let (connect_auth, route_auth) = if is_connect {
        (auth, None)
    } else {
        (None, auth)
    };
    let rules = route_rules(&mut s, true, route_auth, p);
    s.finish(p);
    if !is_connect && allow_value.is_some() {
        p.add(
            at,
            "\"allow\" is only for handler = \"connect\" (use \"allow_from\" for client addresses)",
        );
    }
    let fixed = handler_name
        .as_ref()
        .and_then(|h| fixed_answer(h.v, at, to, status, body, p));
    let handler = if let Some(fixed) = fixed {
        if let (Some(b), Some(h)) = (backend, &handler_name) {
            let msg = format!(
                "\"backend\" is only allowed with handler = \"proxy\", not {:?}",
                h.v
            );
            p.add(b.span().start, msg);
        }
        fixed
    } else if is_connect {
        if allow_value.is_none() {
            p.add(
                at,
                "handler \"connect\" needs an \"allow\" list (HOST:PORT entries)",
            );
        }
        Some(Handler::Connect {
            allow: allow?,
            users: connect_auth.map(|a| a.users),
        })
    } else {
        handler(handler_name?, backend, at, refs, p)
    };
    let handler = match handler? {
        Handler::Proxy { backend, .. } => Handler::Proxy { backend, host },
        other => other,
    };
    Some(ContextRoute {
        uri: uri?,
        handler,
        rules,
        delivery: keys.settle(),
    })
}

fn handler(
    name: At<&str>,
    backend: Option<&Val<'_>>,
    entry_at: usize,
    refs: &Refs<'_>,
    p: &mut Problems,
) -> Option<Handler> {
    let handler = match name.v {
        "static" => Handler::Static,
        "echo" => Handler::Echo,
        "proxy" => {
            let Some(b) = backend else {
                p.add(entry_at, "handler \"proxy\" needs a \"backend\"");
                return None;
            };
            let backend = reference(b, "\"backend\"", refs.backends, p)?;
            let backend = *refs.index.get(&backend)?;
            return Some(Handler::Proxy {
                backend,
                host: None,
            });
        }
        other => {
            let msg =
                format!("unknown handler {other:?}: expected \"static\", \"echo\", \"proxy\", \"connect\", \"redirect\" or \"respond\"");
            p.add(name.at, msg);
            return None;
        }
    };
    if let Some(b) = backend {
        let msg = format!(
            "\"backend\" is only allowed with handler = \"proxy\", not {:?}",
            name.v
        );
        p.add(b.span().start, msg);
    }
    Some(handler)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::load::testing::*;
    use crate::config::load::{load_str, Problem};
    use crate::config::types::Server;
    use crate::policy::upstream::Address;

    #[test]
    fn full_config_vhost_and_routes() {
        let (c, dir) = ok(FULL);
        assert_eq!(c.vhosts.len(), 1);
        let v = &c.vhosts[0];
        assert_eq!(v.name, "site");
        assert_eq!(v.domains, ["example.com", "*.example.com", "*"]);
        assert_eq!(v.listeners, ["main"]);
        assert_eq!(v.doc_root, dir.0.join("www"));
        assert!(v.doc_root.is_absolute());
        assert_eq!(v.websockets.len(), 2);
        assert_eq!(v.websockets[0].uri.as_text(), "/chat/");
        assert_eq!(c.backends[v.websockets[0].backend].name, "chat");
        assert_eq!(v.websockets[1].uri.as_text(), "exp:^/room/[0-9]+$");
        assert!(v.websockets[1].uri.matches("/room/7"));
        // An `address` entry gets an implicit one-server backend after the declared ones.
        let implicit = &c.backends[v.websockets[1].backend];
        assert_eq!(v.websockets[1].backend, 2);
        assert_eq!(
            (implicit.name.as_str(), implicit.implicit),
            ("127.0.0.1:9100", true)
        );
        assert_eq!(
            implicit.servers,
            [Server {
                address: Address::parse("127.0.0.1:9100").unwrap(),
                weight: 1,
                pos: (47, 11),
            }]
        );
        let contexts: Vec<_> = v
            .contexts
            .iter()
            .map(|c| (c.uri.as_text(), c.handler.clone()))
            .collect();
        let api = Handler::Proxy {
            backend: 1,
            host: None,
        };
        assert_eq!(
            contexts,
            [
                ("/echo".to_string(), Handler::Echo),
                ("/api/".to_string(), api),
                ("/files/".to_string(), Handler::Static),
            ]
        );
    }

    #[test]
    fn websocket_tunnel_mode_keys() {
        fn route<'a>(extra: &[&'a str]) -> Vec<&'a str> {
            let mut lines = vec![
                "[[vhost.websocket]]",
                "uri = \"/feed/\"",
                "backend = \"line\"",
            ];
            lines.extend_from_slice(extra);
            lines.extend([
                "[[backend]]",
                "name = \"line\"",
                "servers = [\"127.0.0.1:9\"]",
            ]);
            with(&lines)
        }
        let (c, _d) = ok(&route(&[]));
        assert_eq!(c.vhosts[0].websockets[0].tunnel, None);
        let (c, _d) = ok(&route(&["mode = \"tunnel\""]));
        assert_eq!(
            c.vhosts[0].websockets[0].tunnel,
            Some(TunnelMode {
                text: true,
                subprotocols: vec![],
                ping_interval: Some(TUNNEL_PING_INTERVAL_DEFAULT),
                max_message: TUNNEL_MAX_MESSAGE_DEFAULT,
            })
        );
        let (c, _d) = ok(&route(&[
            "mode = \"tunnel\"",
            "frame = \"binary\"",
            "subprotocols = [\"chat.v1\", \"mqtt\"]",
            "ping_interval = \"0s\"",
            "max_message = \"64KiB\"",
        ]));
        assert_eq!(
            c.vhosts[0].websockets[0].tunnel,
            Some(TunnelMode {
                text: false,
                subprotocols: vec!["chat.v1".into(), "mqtt".into()],
                ping_interval: None,
                max_message: 64 * 1024,
            })
        );
        for (extra, want) in [
            ("mode = \"pass\"", "must be \"proxy\" or \"tunnel\""),
            ("frame = \"hex\"", "must be \"text\" or \"binary\""),
            ("max_message = \"0B\"", "must be between"),
            ("ping_interval = \"soon\"", "invalid duration"),
            ("subprotocols = [\"a b\"]", "must be a token"),
        ] {
            let mode = if extra.starts_with("mode") {
                ""
            } else {
                "mode = \"tunnel\""
            };
            let ps = problems(&route(&[mode, extra]));
            assert!(ps.iter().any(|p| p.2.contains(want)), "{extra}: {ps:?}");
        }
        let ps = problems(&route(&["frame = \"text\""]));
        assert!(
            ps.iter()
                .any(|p| p.2.contains("\"frame\" applies to mode = \"tunnel\" only")),
            "{ps:?}"
        );
    }

    #[test]
    fn websocket_needs_exactly_one_target() {
        let both = [
            "[[vhost.websocket]]",
            "uri = \"/ws\"",
            "backend = \"b\"",
            "address = \"1.2.3.4:5\"",
        ];
        one_problem(
            &with(&both),
            7,
            1,
            "needs exactly one of \"backend\" or \"address\"",
        );
        one_problem(
            &with(&["[[vhost.websocket]]", "uri = \"/ws\""]),
            7,
            1,
            "needs exactly one of",
        );
    }

    #[test]
    fn doc_root_must_be_a_directory() {
        let dir = TempDir::new();
        std::fs::write(dir.0.join("file"), "x").unwrap();
        std::fs::create_dir(dir.0.join("site")).unwrap();
        let cfg = |extra: &str| {
            format!(
                "{}\n[[vhost]]\nname = \"v\"\ndomains = [\"*\"]\n{extra}",
                LISTENER.join("\n")
            )
        };
        let c = load_str(&cfg("doc_root = \"site\""), &dir.0).unwrap();
        assert_eq!(c.vhosts[0].doc_root, dir.0.join("site"));
        let abs = format!("doc_root = {:?}", dir.0.join("site").display().to_string());
        assert_eq!(
            load_str(&cfg(&abs), Path::new("/nonexistent"))
                .unwrap()
                .vhosts[0]
                .doc_root,
            dir.0.join("site")
        );
        let err = load_str(&cfg("doc_root = \"file\""), &dir.0).unwrap_err();
        let msg = format!(
            "doc_root {} is not a directory",
            dir.0.join("file").display()
        );
        assert_eq!(
            err,
            [Problem {
                line: 7,
                col: 12,
                message: msg
            }]
        );
        // A doc_root given must exist; the default one may be missing (WebSocket-only sites
        // need none).
        let err = load_str(&cfg("doc_root = \"nope\""), &dir.0).unwrap_err();
        let msg = format!("doc_root {} does not exist", dir.0.join("nope").display());
        assert_eq!((err.len(), err[0].message.as_str()), (1, msg.as_str()));
        std::fs::remove_dir(dir.0.join("www")).unwrap();
        assert!(load_str(&cfg(""), &dir.0).is_ok());
    }
}
