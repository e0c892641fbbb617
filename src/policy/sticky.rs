//! Session stickiness that holds across cores, instances and backend changes, sans-IO:
//!
//! - `server_id`: the stable id a `balance = "cookie"` backend writes in its cookie — a keyed
//!   hash (HMAC-SHA-256, truncated to 64 bits, hex) of the server's address under the backend's
//!   `sticky_secret`, so every instance with the same config computes the same id and the
//!   address itself never leaves the proxy.
//! - `HashKey` and `key_of`: where a `balance = "hash"` backend finds a request's key (a cookie,
//!   a query parameter, a header, or the path).
//! - `rendezvous`: weighted rendezvous (highest random weight) hashing of a key over servers
//!   named by their ids: every instance picks the same server for a key, and when a server
//!   leaves only its keys move. Servers are identified by id, not position, so a server set that
//!   changes order (DNS) keeps every key's choice.
//! - `cookie_value` / `without_cookie`: reading a cookie from `Cookie` headers and removing it
//!   from what the backend sees.

use ring::hmac;

/// `hash_key = "cookie:NAME" | "query:NAME" | "header:NAME" | "path"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    Cookie(String),
    Query(String),
    /// Lower-cased header name.
    Header(String),
    Path,
}

impl HashKey {
    pub fn parse(text: &str) -> Result<HashKey, String> {
        let named = |kind: &str, name: &str| {
            if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == b';' || b == b'=') {
                Err(format!(
                    "hash_key {text:?}: {kind}: needs a name, like \"{kind}:sid\""
                ))
            } else {
                Ok(name.to_string())
            }
        };
        match text.split_once(':') {
            Some(("cookie", n)) => named("cookie", n).map(HashKey::Cookie),
            Some(("query", n)) => named("query", n).map(HashKey::Query),
            Some(("header", n)) => named("header", n).map(|n| HashKey::Header(n.to_ascii_lowercase())),
            None if text == "path" => Ok(HashKey::Path),
            _ => Err(format!(
                "invalid hash_key {text:?}: expected \"cookie:NAME\", \"query:NAME\", \"header:NAME\" or \"path\""
            )),
        }
    }
}

/// The request parts a key may come from.
pub struct RequestParts<'a> {
    /// The path without the query.
    pub path: &'a [u8],
    /// The query without `?` (empty if none).
    pub query: &'a [u8],
    /// Header (name, value) pairs as received.
    pub headers: &'a [(&'a [u8], &'a [u8])],
}

/// The request's key for `key`, if it has one (an empty value counts as none).
pub fn key_of<'a>(key: &HashKey, req: &RequestParts<'a>) -> Option<&'a [u8]> {
    let found = match key {
        HashKey::Path => Some(req.path),
        HashKey::Query(name) => query_value(req.query, name.as_bytes()),
        HashKey::Header(name) => req
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| trim(v)),
        HashKey::Cookie(name) => cookie_value(req.headers, name.as_bytes()),
    };
    found.filter(|v| !v.is_empty())
}

/// `name`'s value in a query string (`a=1&sid=xyz`), as written (not percent-decoded: the same
/// bytes always hash the same).
pub fn query_value<'a>(query: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    query.split(|&b| b == b'&').find_map(|pair| {
        let eq = pair.iter().position(|&b| b == b'=');
        let (n, v) = match eq {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        (n == name).then_some(v)
    })
}

/// The value of cookie `name` in the request's `Cookie` headers (the first one found).
pub fn cookie_value<'a>(headers: &[(&'a [u8], &'a [u8])], name: &[u8]) -> Option<&'a [u8]> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"cookie"))
        .flat_map(|(_, v)| v.split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = trim(pair);
            let eq = pair.iter().position(|&b| b == b'=')?;
            (trim(&pair[..eq]) == name).then(|| trim(&pair[eq + 1..]))
        })
}

/// A `Cookie` header value without cookie `name` (`None`: nothing else is left, drop the
/// header). Other cookies keep their order and bytes.
pub fn without_cookie(value: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    for pair in value.split(|&b| b == b';') {
        let t = trim(pair);
        if t.is_empty() {
            continue;
        }
        let n = t
            .iter()
            .position(|&b| b == b'=')
            .map_or(t, |i| trim(&t[..i]));
        if n == name {
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(t);
    }
    (!out.is_empty()).then_some(out)
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &v[start..end]
}

/// The cookie id of a server: 16 hex digits of HMAC-SHA-256(secret, address).
pub fn server_id(secret: &[u8], address: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, address.as_bytes());
    tag.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `Set-Cookie` value that pins a client to server `id`: `NAME=ID; Path=/; HttpOnly;
/// SameSite=Lax`, and `; Secure` on TLS listeners.
pub fn set_cookie(name: &str, id: &str, secure: bool) -> String {
    let mut v = format!("{name}={id}; Path=/; HttpOnly; SameSite=Lax");
    if secure {
        v.push_str("; Secure");
    }
    v
}

/// Removes cookie `name` from the `Cookie` lines of a serialized HTTP/1 request head (a line
/// left with no cookie is dropped). Other lines and cookies are kept as they were.
pub fn strip_cookie_from_head(head: &mut Vec<u8>, name: &[u8]) {
    let needle_in = |line: &[u8]| {
        line.len() > 7
            && line[..7].eq_ignore_ascii_case(b"cookie:")
            && cookie_value(&[(&b"cookie"[..], &line[7..])], name).is_some()
    };
    if !head.split(|&b| b == b'\n').any(needle_in) {
        return;
    }
    let mut out = Vec::with_capacity(head.len());
    let mut rest: &[u8] = head;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        let bare = line.strip_suffix(b"\r\n").unwrap_or(line);
        if needle_in(bare) {
            if let Some(kept) = without_cookie(&bare[7..], name) {
                out.extend_from_slice(b"Cookie: ");
                out.extend_from_slice(&kept);
                out.extend_from_slice(b"\r\n");
            }
        } else {
            out.extend_from_slice(line);
        }
    }
    *head = out;
}

/// A 64-bit hash of a server id, computed once per server (the rendezvous input).
pub fn id_hash(id: &str) -> u64 {
    fnv1a(id.as_bytes())
}

/// Weighted rendezvous hashing: among `servers` (each `(id_hash, weight)`) that `ok` allows,
/// the one with the highest score for `key`. `None` if none is allowed.
pub fn rendezvous(
    key: &[u8],
    servers: impl IntoIterator<Item = (u64, u32)>,
    ok: impl Fn(usize) -> bool,
) -> Option<usize> {
    rendezvous_hashed(key_hash(key), servers, ok)
}

/// The 64-bit hash of a request's key (what `rendezvous_hashed` takes), so a request can carry
/// its key without keeping the bytes.
pub fn key_hash(key: &[u8]) -> u64 {
    fnv1a(key)
}

/// `rendezvous` for a key already hashed by `key_hash`.
pub fn rendezvous_hashed(
    k: u64,
    servers: impl IntoIterator<Item = (u64, u32)>,
    ok: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, (id, weight)) in servers.into_iter().enumerate() {
        if !ok(i) {
            continue;
        }
        // Score = -w / ln(u), u uniform in (0, 1) from hash(key, server): the weighted HRW
        // form, under which a server's share of keys is proportional to its weight.
        let h = mix(k ^ mix(id));
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = -f64::from(weight.max(1)) / u.ln();
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// SplitMix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_keys_parse() {
        assert_eq!(
            HashKey::parse("query:sid"),
            Ok(HashKey::Query("sid".into()))
        );
        assert_eq!(
            HashKey::parse("cookie:io"),
            Ok(HashKey::Cookie("io".into()))
        );
        assert_eq!(
            HashKey::parse("header:X-Session"),
            Ok(HashKey::Header("x-session".into()))
        );
        assert_eq!(HashKey::parse("path"), Ok(HashKey::Path));
        for bad in ["query:", "host", "cookie:a b", "path:x", ""] {
            assert!(HashKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_come_from_query_header_cookie_and_path() {
        let headers: [(&[u8], &[u8]); 3] = [
            (b"Host", b"a"),
            (b"Cookie", b"a=1; io=abc ;b=2"),
            (b"X-Session", b"  s1 "),
        ];
        let req = RequestParts {
            path: b"/sockjs/123/xyz/xhr",
            query: b"EIO=4&transport=polling&sid=Qx9",
            headers: &headers,
        };
        let get = |k: &str| key_of(&HashKey::parse(k).unwrap(), &req);
        assert_eq!(get("query:sid"), Some(&b"Qx9"[..]));
        assert_eq!(get("query:EIO"), Some(&b"4"[..]));
        assert_eq!(get("query:nope"), None);
        assert_eq!(get("cookie:io"), Some(&b"abc"[..]));
        assert_eq!(get("cookie:b"), Some(&b"2"[..]));
        assert_eq!(get("cookie:c"), None);
        assert_eq!(get("header:x-session"), Some(&b"s1"[..]));
        assert_eq!(get("path"), Some(&b"/sockjs/123/xyz/xhr"[..]));
        // An empty value is no key.
        let req = RequestParts {
            path: b"/",
            query: b"sid=&x=1",
            headers: &[],
        };
        assert_eq!(key_of(&HashKey::Query("sid".into()), &req), None);
    }

    #[test]
    fn the_sticky_cookie_is_removed_and_the_rest_kept() {
        assert_eq!(
            without_cookie(b"a=1; rw_srv=0123; b=2", b"rw_srv").as_deref(),
            Some(&b"a=1; b=2"[..])
        );
        assert_eq!(without_cookie(b"rw_srv=0123", b"rw_srv"), None);
        assert_eq!(
            without_cookie(b"rw_srv_x=1;rw_srv=2", b"rw_srv").as_deref(),
            Some(&b"rw_srv_x=1"[..])
        );
    }

    #[test]
    fn the_sticky_cookie_leaves_a_request_head() {
        let mut head =
            b"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1; rw_srv=0f\r\ncookie: rw_srv=0f\r\nX: rw_srv=1\r\n\r\n"
                .to_vec();
        strip_cookie_from_head(&mut head, b"rw_srv");
        assert_eq!(
            head,
            b"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1\r\nX: rw_srv=1\r\n\r\n"
        );
        let mut plain = b"GET / HTTP/1.1\r\nCookie: b=2\r\n\r\n".to_vec();
        let before = plain.clone();
        strip_cookie_from_head(&mut plain, b"rw_srv");
        assert_eq!(plain, before);
        assert_eq!(
            set_cookie("rw_srv", "00ff", true),
            "rw_srv=00ff; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
    }

    #[test]
    fn server_ids_are_stable_keyed_and_hide_the_address() {
        let a = server_id(b"secret", "10.0.0.1:9001");
        assert_eq!(a.len(), 16);
        assert_eq!(
            a,
            server_id(b"secret", "10.0.0.1:9001"),
            "same config, same id"
        );
        assert_ne!(a, server_id(b"other", "10.0.0.1:9001"), "keyed");
        assert_ne!(a, server_id(b"secret", "10.0.0.2:9001"));
        assert!(!a.contains("10.0"));
    }

    #[test]
    fn rendezvous_moves_only_the_keys_of_a_server_that_leaves() {
        let ids: Vec<u64> = (0..5).map(|i| id_hash(&format!("s{i}"))).collect();
        let all = |k: &[u8]| rendezvous(k, ids.iter().map(|&h| (h, 1)), |_| true).unwrap();
        let without2 = |k: &[u8]| rendezvous(k, ids.iter().map(|&h| (h, 1)), |i| i != 2).unwrap();
        let mut moved = 0;
        let mut counts = [0usize; 5];
        for n in 0..10_000u32 {
            let k = format!("sid-{n}");
            let (a, b) = (all(k.as_bytes()), without2(k.as_bytes()));
            counts[a] += 1;
            if a != 2 {
                assert_eq!(a, b, "a key of a remaining server moved");
            } else {
                moved += 1;
            }
        }
        assert_eq!(moved, counts[2]);
        for c in counts {
            assert!((1600..2400).contains(&c), "uneven spread: {counts:?}");
        }
        // Reordering the servers (a DNS answer in another order) keeps every key's server.
        let rev: Vec<u64> = ids.iter().rev().copied().collect();
        for n in 0..1000u32 {
            let k = format!("k{n}");
            let a = all(k.as_bytes());
            let r = rendezvous(k.as_bytes(), rev.iter().map(|&h| (h, 1)), |_| true).unwrap();
            assert_eq!(ids[a], rev[r]);
        }
    }

    #[test]
    fn rendezvous_honours_weights() {
        let servers = [(id_hash("a"), 3u32), (id_hash("b"), 1u32)];
        let heavy = (0..8000u32)
            .filter(|n| rendezvous(format!("{n}").as_bytes(), servers, |_| true) == Some(0))
            .count();
        assert!(
            (5600..6400).contains(&heavy),
            "weight 3 of 4 got {heavy}/8000"
        );
        assert_eq!(rendezvous(b"k", servers, |_| false), None);
    }
}
