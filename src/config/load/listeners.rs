//! `[[listener]]`: name, address (each used once), TLS, PROXY protocol, forward proxy, mode
//! (`http` or `tcp`), ALPN and h2c, `redirect_https`; at least one is required.

use std::collections::HashMap;
use std::net::SocketAddr;

use toml::de::DeValue;

use super::problems::Problems;
use super::spanned::{boolean, list, string, tables, Val};
use super::values::socket_addr;
use super::xref::Names;
use crate::config::types::{Listener, ListenerMode};

pub(super) fn listeners(v: Option<&Val<'_>>, p: &mut Problems) -> (Vec<Listener>, Names) {
    let mut names = Names::new("listener");
    let mut addresses: HashMap<SocketAddr, String> = HashMap::new();
    let mut out = Vec::new();
    for mut s in v.map(|v| tables(v, "[[listener]]", p)).unwrap_or_default() {
        let name = s.req("name", p, string);
        let address = s.req("address", p, socket_addr);
        let tls = s.opt("tls", p, boolean).unwrap_or(false);
        let proxy_protocol = s.opt("proxy_protocol", p, boolean).unwrap_or(false);
        let forward_proxy = s.opt("forward_proxy", p, boolean).unwrap_or(false);
        let mode = s.opt("mode", p, mode);
        let alpn = s.opt("alpn", p, |v, what, p| {
            list(v, what, true, p, alpn_protocol)
        });
        let http2 = s.opt("http2", p, boolean).unwrap_or(false);
        let redirect_https = s.opt("redirect_https", p, boolean).unwrap_or(false);
        if redirect_https && tls {
            p.add(
                s.at,
                "\"redirect_https\" applies to plain listeners (it sends their requests to https://)",
            );
        }
        if redirect_https && mode == Some(ListenerMode::Tcp) {
            p.add(
                s.at,
                "\"redirect_https\" applies to mode = \"http\" listeners",
            );
        }
        if alpn.is_some() && !tls {
            p.add(s.at, "\"alpn\" applies to tls = true listeners (a plain listener takes http2 = true for h2c)");
        }
        if http2 && tls {
            p.add(
                s.at,
                "\"http2\" applies to plain listeners (h2c); a TLS listener offers h2 by \"alpn\"",
            );
        }
        if mode == Some(ListenerMode::Tcp) && tls {
            p.add(s.at, "a mode = \"tcp\" listener forwards raw bytes: it cannot have tls = true (use [[tls_passthrough]] on a TLS listener)");
        }
        s.finish(p);
        // Record the name even when the address is wrong, so references to it resolve.
        let Some(name) = name else { continue };
        names.add(&name, p);
        let Some(address) = address else { continue };
        if let Some(other) = addresses.insert(address.v, name.v.to_string()) {
            let msg = format!(
                "address {} is already used by listener {other:?}",
                address.v
            );
            p.add(address.at, msg);
        }
        out.push(Listener {
            name: name.v.to_string(),
            address: address.v,
            tls,
            proxy_protocol,
            mode: mode.unwrap_or(ListenerMode::Http),
            forward_proxy,
            alpn: alpn.unwrap_or_else(|| vec!["h2".into(), "http/1.1".into()]),
            http2,
            redirect_https,
        });
    }
    // A wrongly typed `listener` was reported already; an absent or empty one is reported here.
    let empty = v.is_none_or(|v| matches!(v.get_ref(), DeValue::Array(a) if a.is_empty()));
    if empty {
        p.add(0, "at least one [[listener]] is required");
    }
    (out, names)
}

/// `mode = "http" | "tcp"`.
fn mode(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<ListenerMode> {
    let text = string(v, what, p)?;
    match text.v {
        "http" => Some(ListenerMode::Http),
        "tcp" => Some(ListenerMode::Tcp),
        other => {
            p.add(
                text.at,
                format!("{what} must be \"http\" or \"tcp\", found {other:?}"),
            );
            None
        }
    }
}

/// An `alpn` entry: `"h2"` or `"http/1.1"`.
fn alpn_protocol(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<String> {
    let t = string(v, what, p)?;
    match t.v {
        "h2" | "http/1.1" => Some(t.v.to_string()),
        other => {
            p.add(
                t.at,
                format!("{what} must be \"h2\" or \"http/1.1\", found {other:?}"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load::testing::*;

    #[test]
    fn missing_required_keys_and_listeners() {
        one_problem(
            &["[[listener]]", "address = \"127.0.0.1:1\""],
            1,
            1,
            "missing required key \"name\" in [[listener]]",
        );
        one_problem(
            &with(&["  [[vhost]]", "name = \"x\""]),
            7,
            3,
            "missing required key \"domains\" in [[vhost]]",
        );
        one_problem(
            &with(&["[[vhost.context]]", "handler = \"echo\""]),
            7,
            1,
            "missing required key \"uri\" in [[vhost.context]]",
        );
        one_problem(
            &with(&["[[backend]]", "name = \"b\""]),
            7,
            1,
            "missing required key \"servers\" in [[backend]]",
        );
        one_problem(
            &["[runtime]", "cores = 1"],
            1,
            1,
            "at least one [[listener]] is required",
        );
        one_problem(
            &["listener = []"],
            1,
            1,
            "at least one [[listener]] is required",
        );
    }
}
