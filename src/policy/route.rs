//! Routing, sans-IO: virtual host by `Host` (or SNI), then URI match for WebSocket entries and
//! contexts, in the OpenLiteSpeed model. Compiled once at start-up (`config::routes` builds the
//! tables from a `Config`); lookups allocate nothing.

use ahash::AHashMap;
use regex_automata::meta::Regex;

/// How a `uri` entry matches a request path.
#[derive(Debug, Clone)]
pub enum UriMatch {
    /// `"/chat/"`: this prefix and everything under it.
    Prefix(String),
    /// `"/exact"`: exactly this path.
    Exact(String),
    /// `"exp:^/room/[0-9]+$"`: a regex on the path, compiled once. Each shard clones its
    /// `Routes`, and a cloned `Regex` gets its own scratch-space pool: no cross-core sharing.
    Regex(Box<Regex>, String),
}

impl UriMatch {
    /// Parses a config `uri` value. The error is a message for `ringway check`.
    pub fn parse(uri: &str) -> Result<UriMatch, String> {
        if let Some(expr) = uri.strip_prefix("exp:") {
            let expr = expr.trim();
            return Regex::new(expr)
                .map(|r| UriMatch::Regex(Box::new(r), expr.to_string()))
                .map_err(|e| format!("invalid regex {expr:?}: {}", regex_error(expr, &e)));
        }
        if !uri.starts_with('/') {
            return Err(format!(
                "uri {uri:?} must start with '/' (or be a regex written as \"exp:...\")"
            ));
        }
        if uri.ends_with('/') {
            Ok(UriMatch::Prefix(uri.to_string()))
        } else {
            Ok(UriMatch::Exact(uri.to_string()))
        }
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            UriMatch::Prefix(p) => path.starts_with(p.as_str()),
            UriMatch::Exact(p) => path == p,
            UriMatch::Regex(r, _) => r.is_match(path),
        }
    }

    /// Longer literal entries win over shorter ones, so `/chat/room/` beats `/chat/`.
    pub fn specificity(&self) -> usize {
        match self {
            UriMatch::Prefix(p) => p.len(),
            // Exact beats any prefix of the same length.
            UriMatch::Exact(p) => p.len() + 1,
            UriMatch::Regex(..) => 0,
        }
    }

    pub fn as_text(&self) -> String {
        match self {
            UriMatch::Prefix(p) | UriMatch::Exact(p) => p.clone(),
            UriMatch::Regex(_, e) => format!("exp:{e}"),
        }
    }
}

/// The regex parser's own message: what is wrong and where in the pattern.
fn regex_error(expr: &str, e: &regex_automata::meta::BuildError) -> String {
    let at = |start: &regex_syntax::ast::Position, end: &regex_syntax::ast::Position| {
        let text = expr.get(start.offset..end.offset).unwrap_or("");
        if text.is_empty() {
            format!("at character {}", start.column)
        } else {
            format!("at character {}: {text:?}", start.column)
        }
    };
    match e.syntax_error() {
        Some(regex_syntax::Error::Parse(p)) => {
            format!("{} ({})", p.kind(), at(&p.span().start, &p.span().end))
        }
        Some(regex_syntax::Error::Translate(t)) => {
            format!("{} ({})", t.kind(), at(&t.span().start, &t.span().end))
        }
        Some(other) => other.to_string(),
        None => match e.size_limit() {
            Some(limit) => format!("the compiled regex exceeds the size limit of {limit} bytes"),
            None => e.to_string(),
        },
    }
}

/// Host-to-vhost table of one listener.
#[derive(Debug, Default, Clone)]
pub struct HostTable {
    exact: AHashMap<String, usize>,
    /// `("example.com", vhost)` for `*.example.com`, longest suffix first.
    wildcard: Vec<(String, usize)>,
    default: Option<usize>,
}

impl HostTable {
    /// Adds a vhost's `domain`: `"*"` (the default, first one wins), `"*.example.com"` (a
    /// wildcard) or an exact name (first one wins). Call `finish` after the last.
    pub fn insert(&mut self, domain: &str, vhost: usize) {
        if domain == "*" {
            self.default.get_or_insert(vhost);
        } else if let Some(suffix) = domain.strip_prefix("*.") {
            self.wildcard.push((suffix.to_string(), vhost));
        } else {
            self.exact.entry(domain.to_string()).or_insert(vhost);
        }
    }

    /// Orders wildcards longest suffix first, so the most specific one wins.
    pub fn finish(&mut self) {
        self.wildcard
            .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
    }

    /// Finds the vhost for a `Host` header value (port stripped, case-insensitive) or SNI name.
    pub fn lookup(&self, host: Option<&[u8]>) -> Option<usize> {
        let Some(host) = host else {
            return self.default;
        };
        let name = strip_port(host);
        let mut lower = [0u8; 256];
        if name.is_empty() || name.len() > lower.len() {
            return self.default;
        }
        for (d, s) in lower.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        let Ok(name) = std::str::from_utf8(&lower[..name.len()]) else {
            return self.default;
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if let Some(&v) = self.exact.get(name) {
            return Some(v);
        }
        for (suffix, v) in &self.wildcard {
            // One or more labels before the suffix: "a.example.com", "a.b.example.com";
            // never "example.com" itself.
            if name.len() > suffix.len() + 1
                && name.ends_with(suffix.as_str())
                && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
            {
                return Some(*v);
            }
        }
        self.default
    }
}

/// `"example.com:8080"` → `"example.com"`, `"[::1]:80"` → `"[::1]"`.
fn strip_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(domains: &[(&str, usize)]) -> HostTable {
        let mut t = HostTable::default();
        for (d, i) in domains {
            if *d == "*" {
                t.default = Some(*i);
            } else if let Some(s) = d.strip_prefix("*.") {
                t.wildcard.push((s.to_string(), *i));
            } else {
                t.exact.insert(d.to_string(), *i);
            }
        }
        t
    }

    #[test]
    fn host_matching_follows_the_rules() {
        let t = table(&[("example.com", 1), ("*.example.com", 2), ("*", 0)]);
        let cases: &[(&[u8], usize)] = &[
            (b"example.com", 1),
            (b"EXAMPLE.com:8080", 1),
            (b"a.example.com", 2),
            (b"a.b.Example.COM", 2),
            (b"example.com.", 1),
            (b"badexample.com", 0),
            (b".example.com", 0),
            (b"other.org", 0),
            (b"[::1]:8080", 0),
            (b"", 0),
        ];
        for (host, want) in cases {
            assert_eq!(
                t.lookup(Some(host)),
                Some(*want),
                "{:?}",
                String::from_utf8_lossy(host)
            );
        }
        assert_eq!(t.lookup(None), Some(0));
        let no_default = table(&[("*.example.com", 2)]);
        assert_eq!(no_default.lookup(Some(b"example.com")), None);
        assert_eq!(no_default.lookup(Some(b"x.example.com")), Some(2));
    }

    #[test]
    fn uri_forms() {
        let p = UriMatch::parse("/chat/").unwrap();
        assert!(p.matches("/chat/"));
        assert!(p.matches("/chat/room/1"));
        assert!(!p.matches("/chat"));
        assert!(!p.matches("/chatter"));
        let e = UriMatch::parse("/exact").unwrap();
        assert!(e.matches("/exact"));
        assert!(!e.matches("/exact/"));
        assert!(!e.matches("/exactly"));
        let r = UriMatch::parse("exp:^/room/[0-9]+$").unwrap();
        assert!(r.matches("/room/42"));
        assert!(!r.matches("/room/x"));
        assert!(!r.matches("/room/42/x"));
        assert!(UriMatch::parse("exp:(").is_err());
        assert!(UriMatch::parse("chat").is_err());
    }

    #[test]
    fn strip_port_forms() {
        assert_eq!(strip_port(b"a.b:80"), b"a.b");
        assert_eq!(strip_port(b"a.b"), b"a.b");
        assert_eq!(strip_port(b"[::1]:80"), b"[::1]");
        assert_eq!(strip_port(b"[::1]"), b"[::1]");
    }
}
