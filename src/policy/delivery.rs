//! How a route's responses go out, as configured per vhost or context: on-the-fly compression
//! (`compress`, `compress_types`, `compress_min`), precompressed static variants
//! (`precompressed`) and `cache_control`; and the sans-IO decision whether one response is
//! compressed (`Delivery::compress_for`).
//!
//! A response is compressed only when all hold: the route lists codings and the client accepts
//! one (`protocol::http::coding::Accept::choose`); the request is not `HEAD` and came over
//! HTTP/1.1 or HTTP/2 (HTTP/1.0 has no chunked coding, like nginx's `gzip_http_version 1.1`);
//! the status has a body and is not partial (not 1xx, 204, 206, 304); the response has no
//! `Content-Encoding` (even `identity`) and no `Cache-Control: no-transform`; its type matches
//! `compress_types` and is not `text/event-stream` (SSE stays event by event); and its length,
//! when known, is at least `compress_min` (a client that refuses identity gets even a small one
//! compressed).

use crate::protocol::http::coding::{Accept, Coding};
use crate::protocol::http::has_token;

/// The types compressed when `compress_types` is not given.
pub const DEFAULT_TYPES: &[&str] = &[
    "text/*",
    "application/json",
    "application/*+json",
    "application/javascript",
    "application/x-javascript",
    "application/xml",
    "application/*+xml",
    "image/svg+xml",
    "application/wasm",
];

/// `compress_min` when not given: 1 KiB.
pub const DEFAULT_MIN: u64 = 1024;

/// A route's delivery settings (already merged: a context's keys over its vhost's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// `compress`: codings to produce on the fly, in order of preference; empty = off.
    pub compress: Vec<Coding>,
    /// `compress_types`: lower-case `type/subtype` patterns; `type/*` and `type/*+suffix` match
    /// families.
    pub compress_types: Vec<String>,
    /// `compress_min`: bytes.
    pub compress_min: u64,
    /// `precompressed`: variants (`file.br`, `file.gz`) a static file may be served from.
    pub precompressed: Vec<Coding>,
    /// `cache_control`: sent on static 200/206/304 answers.
    pub cache_control: Option<String>,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            compress: Vec::new(),
            compress_types: DEFAULT_TYPES.iter().map(|t| t.to_string()).collect(),
            compress_min: DEFAULT_MIN,
            precompressed: Vec::new(),
            cache_control: None,
        }
    }
}

/// What `compress_for` looks at in a response.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseFacts<'a> {
    pub status: u16,
    pub content_type: Option<&'a [u8]>,
    pub content_encoding: Option<&'a [u8]>,
    pub cache_control: Option<&'a [u8]>,
    /// `None`: not known (a chunked or close-delimited body).
    pub content_length: Option<u64>,
}

/// The outcome for one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decision {
    /// Compress with this coding.
    pub coding: Option<Coding>,
    /// The response depends on `Accept-Encoding`: send `Vary: Accept-Encoding`.
    pub vary: bool,
}

impl Delivery {
    /// True when `content_type` (a header value, parameters allowed) is one to compress.
    pub fn compressible(&self, content_type: &[u8]) -> bool {
        let essence = content_type
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        if essence.eq_ignore_ascii_case(b"text/event-stream") {
            return false;
        }
        let Ok(essence) = std::str::from_utf8(essence) else {
            return false;
        };
        let essence = essence.to_ascii_lowercase();
        self.compress_types
            .iter()
            .any(|p| type_matches(p, &essence))
    }

    /// Whether this response is compressed, and whether it varies on `Accept-Encoding`.
    /// `head`: the request was `HEAD`; `chunked_ok`: the client can take a body of unknown
    /// length (HTTP/1.1 or HTTP/2).
    pub fn compress_for(
        &self,
        accept: &Accept,
        head: bool,
        chunked_ok: bool,
        r: &ResponseFacts<'_>,
    ) -> Decision {
        let no = Decision::default();
        if self.compress.is_empty() || r.content_encoding.is_some() {
            return no;
        }
        if matches!(r.status, 100..=199 | 204 | 206 | 304) {
            return no;
        }
        if r.cache_control
            .is_some_and(|v| has_token(v, b"no-transform"))
        {
            return no;
        }
        if !r.content_type.is_some_and(|t| self.compressible(t)) {
            return no;
        }
        let small = r.content_length.is_some_and(|n| n < self.compress_min);
        if r.content_length == Some(0) || (small && !accept.identity_refused()) {
            // Too small to be worth it: the same answer for every client.
            return no;
        }
        let coding = if head || !chunked_ok {
            None
        } else {
            accept.choose(&self.compress)
        };
        Decision { coding, vary: true }
    }
}

/// `pattern` (`text/*`, `application/*+json`, `image/svg+xml`) matches a lower-case essence.
fn type_matches(pattern: &str, essence: &str) -> bool {
    let Some((ptype, psub)) = pattern.split_once('/') else {
        return false;
    };
    let Some((etype, esub)) = essence.split_once('/') else {
        return false;
    };
    if ptype != "*" && ptype != etype {
        return false;
    }
    match psub.strip_prefix('*') {
        Some(suffix) => esub.ends_with(suffix),
        None => psub == esub,
    }
}

/// Checks a `compress_types` entry: `type/subtype`, where the subtype may be `*` or `*+suffix`.
pub fn check_type_pattern(p: &str) -> Result<String, String> {
    let lower = p.to_ascii_lowercase();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let ok = match lower.split_once('/') {
        Some((t, sub)) => {
            (token(t) || t == "*")
                && (token(sub) || sub == "*" || sub.strip_prefix("*+").is_some_and(token))
        }
        None => false,
    };
    if ok {
        Ok(lower)
    } else {
        Err(format!(
            "{p:?} is not a media type pattern (like \"text/*\", \"application/json\" or \"application/*+xml\")"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> Delivery {
        Delivery {
            compress: vec![Coding::Br, Coding::Gzip],
            ..Delivery::default()
        }
    }

    #[test]
    fn default_types() {
        let d = on();
        for t in [
            "text/html; charset=utf-8",
            "TEXT/CSS",
            "text/javascript; charset=utf-8",
            "application/json",
            "application/ld+json",
            "application/manifest+json",
            "application/javascript",
            "application/xml",
            "application/atom+xml",
            "image/svg+xml",
            "application/wasm",
            "text/plain",
        ] {
            assert!(d.compressible(t.as_bytes()), "{t}");
        }
        for t in [
            "text/event-stream",
            "Text/Event-Stream; charset=utf-8",
            "image/png",
            "application/octet-stream",
            "application/gzip",
            "font/woff2",
            "video/mp4",
            "",
            "garbage",
        ] {
            assert!(!d.compressible(t.as_bytes()), "{t}");
        }
    }

    #[test]
    fn decisions() {
        let d = on();
        let gzip = Accept::parse(Some(b"gzip"));
        let none = Accept::parse(None);
        let js = ResponseFacts {
            status: 200,
            content_type: Some(b"text/javascript"),
            content_length: Some(100_000),
            ..ResponseFacts::default()
        };
        let yes = Decision {
            coding: Some(Coding::Gzip),
            vary: true,
        };
        let vary_only = Decision {
            coding: None,
            vary: true,
        };
        let no = Decision::default();
        assert_eq!(d.compress_for(&gzip, false, true, &js), yes);
        assert_eq!(d.compress_for(&none, false, true, &js), vary_only);
        assert_eq!(d.compress_for(&gzip, true, true, &js), vary_only, "HEAD");
        assert_eq!(d.compress_for(&gzip, false, false, &js), vary_only, "1.0");
        let unknown = ResponseFacts {
            content_length: None,
            ..js
        };
        assert_eq!(d.compress_for(&gzip, false, true, &unknown), yes);
        let with = |f: ResponseFacts<'static>| d.compress_for(&gzip, false, true, &f);
        for status in [204, 206, 304, 101] {
            assert_eq!(with(ResponseFacts { status, ..js }), no, "{status}");
        }
        assert_eq!(with(ResponseFacts { status: 404, ..js }), yes);
        let encoded = ResponseFacts {
            content_encoding: Some(b"identity"),
            ..js
        };
        assert_eq!(with(encoded), no);
        let nt = ResponseFacts {
            cache_control: Some(b"public, no-transform"),
            ..js
        };
        assert_eq!(with(nt), no);
        let sse = ResponseFacts {
            content_type: Some(b"text/event-stream"),
            content_length: None,
            ..js
        };
        assert_eq!(with(sse), no);
        let png = ResponseFacts {
            content_type: Some(b"image/png"),
            ..js
        };
        assert_eq!(with(png), no);
        let untyped = ResponseFacts {
            content_type: None,
            ..js
        };
        assert_eq!(with(untyped), no);
        let small = ResponseFacts {
            content_length: Some(1023),
            ..js
        };
        assert_eq!(with(small), no);
        assert_eq!(
            with(ResponseFacts {
                content_length: Some(1024),
                ..js
            }),
            yes
        );
        // A client that refuses identity gets even a small body compressed.
        let strict = Accept::parse(Some(b"gzip, identity;q=0"));
        assert_eq!(d.compress_for(&strict, false, true, &small), yes);
        let empty = ResponseFacts {
            content_length: Some(0),
            ..js
        };
        assert_eq!(d.compress_for(&strict, false, true, &empty), no);
        assert_eq!(
            Delivery::default().compress_for(&gzip, false, true, &js),
            no
        );
    }

    #[test]
    fn type_patterns() {
        assert_eq!(check_type_pattern("Text/*"), Ok("text/*".into()));
        assert_eq!(
            check_type_pattern("application/*+json"),
            Ok("application/*+json".into())
        );
        assert!(check_type_pattern("*/*").is_ok());
        for bad in ["text", "text/", "/json", "text/a b", "text/**", ""] {
            assert!(check_type_pattern(bad).is_err(), "{bad}");
        }
        assert!(type_matches("*/*", "image/png"));
        assert!(!type_matches("text/*", "texts/plain"));
    }
}
