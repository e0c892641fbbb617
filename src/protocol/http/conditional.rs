//! Validators, conditional requests and byte ranges (RFC 9110 §8.8, §13, §14), sans-IO: the
//! `ETag` of a file, `If-None-Match`, `If-Range` and `Range` evaluated against a representation
//! whose validators and size the caller knows.
//!
//! - `ETag`: nginx's format, `"<mtime in whole seconds, hex>-<size, hex>"`, strong. The inode is
//!   left out on purpose: machines serving the same deployed tree agree on it. A response
//!   compressed on the fly carries it weakened (`W/"…"`), as nginx does.
//! - `If-None-Match`: weak comparison (§13.1.2); `*` matches any existing file.
//! - `If-Range`: an entity-tag must match strongly (a weak one never does); a date must equal
//!   `Last-Modified` exactly (§13.1.5).
//! - `Range`: `bytes=` (unit case-insensitive) with one range-spec: `first-last`, `first-` or the
//!   suffix `-n`. A satisfiable one gives 206; one that is not (first byte at or past the end, a
//!   zero suffix, any range of an empty file) gives 416 with `Content-Range: bytes */size`.
//!   Several range-specs: the whole file with 200 (no multipart), unless none is satisfiable
//!   (416). A syntactically invalid header is ignored (200), as §14.2 allows.

use std::fmt::Write;

/// A strong `ETag` for a file of `size` bytes last modified at `mtime_secs` (Unix seconds).
pub fn etag(mtime_secs: u64, size: u64) -> String {
    let mut s = String::with_capacity(24);
    let _ = write!(s, "\"{mtime_secs:x}-{size:x}\"");
    s
}

/// `etag` as a weak validator (`W/` prefix); already weak ones are kept.
pub fn weaken(etag: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(etag.len() + 2);
    if !etag.starts_with(b"W/") {
        out.extend_from_slice(b"W/");
    }
    out.extend_from_slice(etag);
    out
}

/// The opaque part of an entity-tag (`"x"` of `W/"x"`) and whether it is weak.
fn opaque(tag: &[u8]) -> Option<(&[u8], bool)> {
    let tag = tag.trim_ascii();
    let (weak, rest) = match tag.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, tag),
    };
    let valid = rest.len() >= 2 && rest[0] == b'"' && rest[rest.len() - 1] == b'"';
    valid.then_some((rest, weak))
}

/// `If-None-Match` holds a tag that matches `etag` by weak comparison, or is `*`: a GET or
/// HEAD then answers 304.
pub fn none_match_hits(header: &[u8], etag: &str) -> bool {
    if header.trim_ascii() == b"*" {
        return true;
    }
    let Some((ours, _)) = opaque(etag.as_bytes()) else {
        return false;
    };
    split_tags(header).any(|t| opaque(t).is_some_and(|(theirs, _)| theirs == ours))
}

/// Splits a list of entity-tags on commas outside quotes.
fn split_tags(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = header;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let mut quoted = false;
        let mut end = rest.len();
        for (i, &b) in rest.iter().enumerate() {
            match b {
                b'"' => quoted = !quoted,
                b',' if !quoted => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let item = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or_default();
        if !item.trim_ascii().is_empty() {
            return Some(item);
        }
    })
}

/// `If-Range` lets the `Range` apply: a strong tag equal to `etag` (itself strong), or an
/// HTTP-date equal to the file's modification time in whole seconds.
pub fn if_range_holds(value: &[u8], etag: &str, mtime_secs: Option<u64>) -> bool {
    let value = value.trim_ascii();
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        let (Some((theirs, weak_theirs)), Some((ours, weak_ours))) =
            (opaque(value), opaque(etag.as_bytes()))
        else {
            return false;
        };
        return !weak_theirs && !weak_ours && theirs == ours;
    }
    let Some(mtime) = mtime_secs else {
        return false;
    };
    std::str::from_utf8(value)
        .ok()
        .and_then(|t| httpdate::parse_http_date(t).ok())
        .and_then(|d| d.duration_since(std::time::UNIX_EPOCH).ok())
        .is_some_and(|d| d.as_secs() == mtime)
}

/// What a `Range` header asks of a representation of a known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// 200 with the whole representation (no, invalid or several ranges).
    Whole,
    /// 206 with bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Evaluates a `Range` header value against a representation of `size` bytes.
pub fn byte_range(value: &[u8], size: u64) -> RangeAnswer {
    let value = value.trim_ascii();
    let Some(specs) = value
        .get(..6)
        .filter(|u| u.eq_ignore_ascii_case(b"bytes="))
        .map(|_| &value[6..])
    else {
        return RangeAnswer::Whole;
    };
    let mut parts = Vec::new();
    for spec in specs.split(|&b| b == b',') {
        let spec = spec.trim_ascii();
        if spec.is_empty() {
            continue;
        }
        match range_spec(spec, size) {
            Some(p) => parts.push(p),
            None => return RangeAnswer::Whole,
        }
        if parts.len() > 100 {
            return RangeAnswer::Whole;
        }
    }
    let satisfiable = parts.iter().filter(|p| p.is_some()).count();
    match (parts.len(), satisfiable) {
        (0, _) => RangeAnswer::Whole,
        (_, 0) => RangeAnswer::Unsatisfiable,
        (1, _) => {
            let (start, end) = parts[0].unwrap_or_default();
            RangeAnswer::Part { start, end }
        }
        _ => RangeAnswer::Whole,
    }
}

/// One range-spec: `None` when invalid; `Some(None)` when valid but not satisfiable.
#[allow(clippy::option_option)]
fn range_spec(spec: &[u8], size: u64) -> Option<Option<(u64, u64)>> {
    let dash = spec.iter().position(|&b| b == b'-')?;
    let (first, last) = (spec[..dash].trim_ascii(), spec[dash + 1..].trim_ascii());
    if first.is_empty() {
        let n = number(last)?;
        if n == 0 || size == 0 {
            return Some(None);
        }
        return Some(Some((size - n.min(size), size - 1)));
    }
    let first = number(first)?;
    let last = if last.is_empty() {
        u64::MAX
    } else {
        number(last)?
    };
    if last < first {
        return None;
    }
    if first >= size {
        return Some(None);
    }
    Some(Some((first, last.min(size - 1))))
}

/// Digits only; values past u64 saturate (a `last-pos` may exceed any file).
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// `Content-Range` of a part: `bytes start-end/size`.
pub fn content_range(start: u64, end: u64, size: u64) -> String {
    format!("bytes {start}-{end}/{size}")
}

/// `Content-Range` of a 416: `bytes */size`.
pub fn unsatisfied_range(size: u64) -> String {
    format!("bytes */{size}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_like_nginx() {
        // nginx: "%xT-%xO" of mtime and size.
        assert_eq!(etag(1_700_000_000, 12), "\"6553f100-c\"");
        assert_eq!(etag(0, 0), "\"0-0\"");
        assert_eq!(weaken(b"\"a-1\""), b"W/\"a-1\"");
        assert_eq!(weaken(b"W/\"a-1\""), b"W/\"a-1\"");
    }

    #[test]
    fn if_none_match() {
        let tag = "\"6553f100-c\"";
        for (header, hit) in [
            ("\"6553f100-c\"", true),
            ("W/\"6553f100-c\"", true),
            ("\"x\", \"6553f100-c\"", true),
            ("\"a,b\", W/\"6553f100-c\"", true),
            ("*", true),
            (" * ", true),
            ("\"6553f100-d\"", false),
            ("6553f100-c", false),
            ("\"a,\"6553f100-c\"", false),
            ("", false),
            (",,", false),
        ] {
            assert_eq!(none_match_hits(header.as_bytes(), tag), hit, "{header}");
        }
    }

    #[test]
    fn if_range() {
        let tag = "\"6553f100-c\"";
        let mtime = Some(1_700_000_000);
        assert!(if_range_holds(b"\"6553f100-c\"", tag, mtime));
        assert!(!if_range_holds(b"W/\"6553f100-c\"", tag, mtime));
        assert!(!if_range_holds(
            b"\"6553f100-c\"",
            "W/\"6553f100-c\"",
            mtime
        ));
        assert!(!if_range_holds(b"\"other\"", tag, mtime));
        assert!(if_range_holds(b"Tue, 14 Nov 2023 22:13:20 GMT", tag, mtime));
        assert!(!if_range_holds(
            b"Tue, 14 Nov 2023 22:13:21 GMT",
            tag,
            mtime
        ));
        assert!(!if_range_holds(
            b"Tue, 14 Nov 2023 22:13:19 GMT",
            tag,
            mtime
        ));
        assert!(!if_range_holds(b"Tue, 14 Nov 2023 22:13:20 GMT", tag, None));
        assert!(!if_range_holds(b"garbage", tag, mtime));
    }

    #[test]
    fn ranges() {
        use RangeAnswer::*;
        let part = |start, end| Part { start, end };
        let cases: &[(&str, u64, RangeAnswer)] = &[
            ("bytes=0-99", 1000, part(0, 99)),
            ("bytes=0-0", 1000, part(0, 0)),
            ("BYTES=10-19", 1000, part(10, 19)),
            ("bytes=500-", 1000, part(500, 999)),
            ("bytes=-500", 1000, part(500, 999)),
            ("bytes=-5000", 1000, part(0, 999)),
            ("bytes=900-5000", 1000, part(900, 999)),
            ("bytes=999-999", 1000, part(999, 999)),
            ("bytes=0-99999999999999999999999", 1000, part(0, 999)),
            (" bytes=0-1 ", 1000, part(0, 1)),
            ("bytes= 0-1 ,", 1000, part(0, 1)),
            ("bytes=1000-", 1000, Unsatisfiable),
            ("bytes=1000-2000", 1000, Unsatisfiable),
            ("bytes=-0", 1000, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-1", 0, Unsatisfiable),
            ("bytes=2000-, 3000-", 1000, Unsatisfiable),
            ("bytes=0-1, 5-6", 1000, Whole),
            ("bytes=0-1, 2000-", 1000, Whole),
            ("bytes=5-1", 1000, Whole),
            ("bytes=a-1", 1000, Whole),
            ("bytes=-", 1000, Whole),
            ("bytes=", 1000, Whole),
            ("bytes=1", 1000, Whole),
            ("items=0-1", 1000, Whole),
            ("bytes 0-1", 1000, Whole),
            ("", 1000, Whole),
            ("bytes=+1-2", 1000, Whole),
        ];
        for (header, size, want) in cases {
            assert_eq!(
                byte_range(header.as_bytes(), *size),
                *want,
                "{header} of {size}"
            );
        }
        assert_eq!(content_range(0, 99, 1000), "bytes 0-99/1000");
        assert_eq!(unsatisfied_range(1000), "bytes */1000");
    }
}
