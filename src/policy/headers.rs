//! Header rules (`response_headers`, `request_headers`, on a vhost and on a route): fields to
//! set (replacing any of that name), add (beside any of that name) and remove, applied to a
//! serialized HTTP/1.1 head (sans-IO: bytes in, bytes out); the names no rule may touch; and
//! the `to` template of `handler = "redirect"` with its placeholders.

/// One `response_headers` / `request_headers` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRules {
    /// `set = { Name = "value" }`: replaces every field of that name.
    pub set: Vec<(String, String)>,
    /// `add = { Name = "value" }`: one more field, existing ones kept.
    pub add: Vec<(String, String)>,
    /// `remove = ["Name"]`: every field of that name dropped.
    pub remove: Vec<String>,
}

/// Names no rule may set, add or remove: they frame the message or describe one hop
/// (RFC 9110 §7.6.1), and Ringway writes them itself.
pub const FORBIDDEN: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "keep-alive",
    "te",
    "trailer",
    "proxy-connection",
];

/// Why a rule's name is refused (`request`: a `request_headers` rule, which may not touch
/// `Host` either: `host = "..."` on a proxy context sets that).
pub fn check_name(name: &str, request: bool) -> Result<(), String> {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(format!("{name:?} is not a valid header name"));
    }
    if FORBIDDEN.iter().any(|f| name.eq_ignore_ascii_case(f)) {
        return Err(format!(
            "{name:?} is a hop-by-hop or framing header: Ringway writes it itself, no rule may set, add or remove it"
        ));
    }
    if request && name.eq_ignore_ascii_case("host") {
        return Err(
            "\"Host\" cannot be changed by request_headers (use host = \"...\" on the proxy context)"
                .to_string(),
        );
    }
    Ok(())
}

/// Why a rule's value is refused: no control characters (CR, LF, NUL would split the head).
pub fn check_value(value: &str) -> Result<(), String> {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(format!(
            "{value:?}: a header value cannot hold control characters"
        ));
    }
    Ok(())
}

impl HeaderRules {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    fn drops(&self, name: &[u8]) -> bool {
        self.remove
            .iter()
            .any(|r| r.as_bytes().eq_ignore_ascii_case(name))
            || self
                .set
                .iter()
                .any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
    }

    /// Writes to `out` the head that starts `src` (status or request line, fields, blank line)
    /// with these rules applied, then whatever followed the head. A `src` without a complete
    /// head is copied unchanged.
    pub fn apply(&self, src: &[u8], out: &mut Vec<u8>) {
        let Some(end) = src.windows(4).position(|w| w == b"\r\n\r\n") else {
            out.extend_from_slice(src);
            return;
        };
        let head = &src[..end + 2];
        let mut lines = head.split(|&b| b == b'\n');
        if let Some(first) = lines.next() {
            out.extend_from_slice(first);
            out.push(b'\n');
        }
        for line in lines.filter(|l| !l.is_empty()) {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            if !self.drops(name.trim_ascii()) {
                out.extend_from_slice(line);
                out.push(b'\n');
            }
        }
        for (name, value) in self.set.iter().chain(&self.add) {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&src[end + 4..]);
    }
}

/// Applies each rule set in turn (a vhost's, then its route's) to the head that starts `buf`;
/// `scratch` is working space (left with unspecified contents).
pub fn rewrite<'r>(
    buf: &mut Vec<u8>,
    rules: impl IntoIterator<Item = &'r HeaderRules>,
    scratch: &mut Vec<u8>,
) {
    for r in rules.into_iter().filter(|r| !r.is_empty()) {
        scratch.clear();
        r.apply(buf, scratch);
        std::mem::swap(buf, scratch);
    }
}

/// One piece of a redirect's `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Scheme,
    Host,
    Uri,
    Path,
    Query,
}

/// `to = "https://{host}{uri}"`: text with `{scheme}`, `{host}`, `{uri}` (path and query),
/// `{path}` and `{query}` (without `?`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectTarget(Vec<Part>);

/// What a redirect target is filled with.
pub struct RequestParts<'a> {
    pub scheme: &'a str,
    pub host: &'a [u8],
    pub path: &'a str,
    pub query: Option<&'a str>,
}

impl RedirectTarget {
    pub fn parse(text: &str) -> Result<RedirectTarget, String> {
        if text.is_empty() {
            return Err("must not be empty".to_string());
        }
        check_value(text)?;
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("{text:?}: '{{' without '}}'"))?;
            parts.push(match &after[..close] {
                "scheme" => Part::Scheme,
                "host" => Part::Host,
                "uri" => Part::Uri,
                "path" => Part::Path,
                "query" => Part::Query,
                other => {
                    return Err(format!(
                        "unknown placeholder {{{other}}}: expected {{scheme}}, {{host}}, {{uri}}, {{path}} or {{query}}"
                    ))
                }
            });
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(RedirectTarget(parts))
    }

    /// The `Location` value for a request.
    pub fn expand(&self, r: &RequestParts<'_>, out: &mut Vec<u8>) {
        for part in &self.0 {
            match part {
                Part::Text(t) => out.extend_from_slice(t.as_bytes()),
                Part::Scheme => out.extend_from_slice(r.scheme.as_bytes()),
                Part::Host => out.extend_from_slice(r.host),
                Part::Path => out.extend_from_slice(r.path.as_bytes()),
                Part::Query => out.extend_from_slice(r.query.unwrap_or_default().as_bytes()),
                Part::Uri => {
                    out.extend_from_slice(r.path.as_bytes());
                    if let Some(q) = r.query {
                        out.push(b'?');
                        out.extend_from_slice(q.as_bytes());
                    }
                }
            }
        }
    }
}

/// The query of a request target (after `?`, before `#`), if it has one.
pub fn query_of(target: &str) -> Option<&str> {
    let q = &target[target.find('?')? + 1..];
    Some(&q[..q.find('#').unwrap_or(q.len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(set: &[(&str, &str)], add: &[(&str, &str)], remove: &[&str]) -> HeaderRules {
        let pairs = |l: &[(&str, &str)]| {
            l.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        HeaderRules {
            set: pairs(set),
            add: pairs(add),
            remove: remove.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn set_add_remove_in_order_and_body_kept() {
        let vhost = rules(
            &[("Strict-Transport-Security", "max-age=1")],
            &[],
            &["Server"],
        );
        let route = rules(
            &[("X-Frame-Options", "DENY")],
            &[("Vary", "Origin")],
            &["x-powered-by"],
        );
        let mut buf =
            b"HTTP/1.1 200 OK\r\nServer: ringway\r\nX-Powered-By: php\r\nVary: Accept\r\n\
                        Strict-Transport-Security: max-age=5\r\nContent-Length: 2\r\n\r\nhi"
                .to_vec();
        let mut scratch = Vec::new();
        rewrite(
            &mut buf,
            [&vhost, &HeaderRules::default(), &route],
            &mut scratch,
        );
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "HTTP/1.1 200 OK\r\nVary: Accept\r\nContent-Length: 2\r\n\
             Strict-Transport-Security: max-age=1\r\nX-Frame-Options: DENY\r\nVary: Origin\r\n\r\nhi"
        );
        // A later rule set can remove what an earlier one set.
        let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        rewrite(
            &mut buf,
            [
                &rules(&[("X-A", "1")], &[], &[]),
                &rules(&[], &[], &["X-A"]),
            ],
            &mut scratch,
        );
        assert_eq!(buf, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    }

    #[test]
    fn names_and_values_checked() {
        assert!(check_name("Strict-Transport-Security", false).is_ok());
        assert!(check_name("Host", false).is_ok());
        assert!(check_name("Host", true).is_err());
        for bad in [
            "Content-Length",
            "transfer-encoding",
            "Connection",
            "Upgrade",
            "TE",
            "a b",
            "",
        ] {
            assert!(check_name(bad, false).is_err(), "{bad}");
        }
        assert!(check_value("a\r\nb").is_err());
        assert!(check_value("max-age=1; includeSubDomains").is_ok());
    }

    #[test]
    fn redirect_placeholders() {
        let t = RedirectTarget::parse("https://{host}{uri}").unwrap();
        let r = RequestParts {
            scheme: "http",
            host: b"example.com:8080",
            path: "/a/b",
            query: Some("x=1"),
        };
        let mut out = Vec::new();
        t.expand(&r, &mut out);
        assert_eq!(out, b"https://example.com:8080/a/b?x=1");
        let t = RedirectTarget::parse("{scheme}://new.example{path}?from={query}").unwrap();
        out.clear();
        t.expand(&r, &mut out);
        assert_eq!(out, b"http://new.example/a/b?from=x=1");
        assert!(RedirectTarget::parse("https://{hots}/").is_err());
        assert!(RedirectTarget::parse("https://{host").is_err());
        assert_eq!(query_of("/a?b=1#f"), Some("b=1"));
        assert_eq!(query_of("/a"), None);
    }
}
