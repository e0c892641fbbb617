//! Typed value readers, each with its exact message for a bad value: counts in a range, cores,
//! durations (`"500ms"`, `"10s"`, `"1m30s"`, `"1d"`: `humantime`), byte sizes (`"32KiB"`), listen and backend
//! addresses, URIs, domains, and paths that must name an existing file (relative to the config
//! file's directory).

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::DeValue;

use super::problems::Problems;
use super::spanned::{integer, string, wrong_type, At, Val};
use crate::policy::route::UriMatch;
use crate::policy::upstream::Address;

/// Upper bound for `[runtime] cores`.
const CORES_MAX: i64 = 1024;

/// Longest accepted duration (365 days): keeps `Instant + timeout` far from overflow.
const DURATION_MAX: Duration = Duration::from_secs(365 * 24 * 3600);

/// An integer in `range` (whose start is not negative).
pub(super) fn count(
    v: &Val<'_>,
    what: &str,
    range: RangeInclusive<i64>,
    p: &mut Problems,
) -> Option<usize> {
    let n = integer(v, what, p)?;
    match usize::try_from(n.v) {
        Ok(u) if range.contains(&n.v) => Some(u),
        _ => {
            let (lo, hi) = (range.start(), range.end());
            let msg = if *hi == i64::MAX {
                format!("{what} must be at least {lo}, found {}", n.v)
            } else {
                format!("{what} must be between {lo} and {hi}, found {}", n.v)
            };
            p.add(n.at, msg);
            None
        }
    }
}

pub(super) fn positive(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<usize> {
    count(v, what, 1..=i64::MAX, p)
}

/// `cores`: an integer in 1..=1024, or `"auto"` (the CPUs this process may use).
pub(super) fn cores(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<usize> {
    match v.get_ref() {
        DeValue::String(s) if s == "auto" => Some(auto_cores()),
        DeValue::Integer(_) => count(v, what, 1..=CORES_MAX, p),
        _ => wrong_type(v, "an integer or \"auto\"", what, p),
    }
}

pub(super) fn auto_cores() -> usize {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    n.min(CORES_MAX as usize)
}

pub(super) fn duration(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<Duration> {
    let s = string(v, what, p)?;
    parse_duration(s.v).map_err(|e| p.add(s.at, e)).ok()
}

/// `"500ms"`, `"10s"`, `"5m"`, `"1h"`, `"1d"`, or several in a row like `"1m30s"` or `"1h 30m"`
/// (humantime's units and syntax, up to weeks: months and years are refused); more than zero,
/// at most 365 days.
///
/// Malformed text keeps the message it had before humantime, a number without a unit and a
/// number too long for 64 bits included. A well-formed duration too large to count (humantime's
/// `NumberOverflow`) is too long, as one past 365 days is.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!("invalid duration {text:?}: expected a whole number followed by ms, s, m or h (like \"10s\")")
    };
    let unitless = !text.chars().any(char::is_alphabetic);
    let number_too_long = text
        .split(|c: char| !c.is_ascii_digit())
        .any(|digits| !digits.is_empty() && digits.parse::<u64>().is_err());
    if unitless || number_too_long {
        return Err(bad());
    }
    // humantime reads "M" as a month and "y" as a year: "1M" next to "1m" is a trap, and no
    // timeout here is meant in months. Days (and weeks) are the largest units taken.
    let calendar = text
        .split(|c: char| !c.is_alphabetic())
        .any(|unit| matches!(unit, "M" | "month" | "months" | "y" | "year" | "years"));
    if calendar {
        return Err(format!(
            "invalid duration {text:?}: months and years are not taken (\"M\" is not \"m\"); use days, like \"30d\""
        ));
    }
    let d = match humantime::parse_duration(text) {
        Ok(d) => Some(d),
        Err(humantime::DurationError::NumberOverflow) if !text.contains('.') => None,
        Err(_) => return Err(bad()),
    };
    match d {
        Some(d) if d.is_zero() => Err(format!("duration {text:?} must be more than zero")),
        Some(d) if d <= DURATION_MAX => Ok(d),
        _ => Err(format!("duration {text:?} is too long (at most 365 days)")),
    }
}

/// A byte size: an integer, or a string like `"32KiB"` (units B, KiB, MiB), within `range`.
pub(super) fn size(
    v: &Val<'_>,
    what: &str,
    range: RangeInclusive<usize>,
    p: &mut Problems,
) -> Option<usize> {
    let at = v.span().start;
    let bytes = match v.get_ref() {
        DeValue::Integer(_) => count(v, what, 0..=i64::MAX, p)?,
        DeValue::String(s) => parse_size(s).map_err(|e| p.add(at, e)).ok()?,
        _ => return wrong_type(v, "a size like \"32KiB\" or a number of bytes", what, p),
    };
    if !range.contains(&bytes) {
        let (lo, hi) = (show_size(*range.start()), show_size(*range.end()));
        p.add(
            at,
            format!(
                "{what} must be between {lo} and {hi}, found {}",
                show_size(bytes)
            ),
        );
        return None;
    }
    Some(bytes)
}

fn parse_size(text: &str) -> Result<usize, String> {
    let bad = || {
        format!("invalid size {text:?}: expected a whole number followed by B, KiB or MiB (like \"32KiB\")")
    };
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(0));
    let n: usize = number.parse().map_err(|_| bad())?;
    let scale: usize = match unit {
        "B" => 1,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        _ => return Err(bad()),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

fn show_size(bytes: usize) -> String {
    match bytes {
        b if b >= 1024 * 1024 && b % (1024 * 1024) == 0 => format!("{}MiB", b / (1024 * 1024)),
        b if b >= 1024 && b % 1024 == 0 => format!("{}KiB", b / 1024),
        b => format!("{b}B"),
    }
}

pub(super) fn socket_addr(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<At<SocketAddr>> {
    let s = string(v, what, p)?;
    match s.v.parse() {
        Ok(addr) => Some(At { v: addr, at: s.at }),
        Err(_) => {
            let msg = format!(
                "invalid listen address {:?}: expected IP:port, like \"0.0.0.0:80\" or \"[::1]:8080\"",
                s.v
            );
            p.add(s.at, msg);
            None
        }
    }
}

pub(super) fn address(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<Address> {
    let s = string(v, what, p)?;
    Address::parse(s.v).map_err(|e| p.add(s.at, e)).ok()
}

pub(super) fn uri(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<UriMatch> {
    let s = string(v, what, p)?;
    UriMatch::parse(s.v).map_err(|e| p.add(s.at, e)).ok()
}

/// A `domains` entry: `"example.com"`, `"*.example.com"` or `"*"`, lower-cased.
pub(super) fn domain(v: &Val<'_>, what: &str, p: &mut Problems) -> Option<String> {
    let s = string(v, what, p)?;
    let lower = s.v.to_ascii_lowercase();
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    if lower == "*" || is_hostname(name) {
        return Some(lower);
    }
    let msg = format!(
        "invalid domain {:?}: expected a name like \"example.com\", a wildcard like \"*.example.com\", or \"*\"",
        s.v
    );
    p.add(s.at, msg);
    None
}

/// Letters, digits and inner hyphens, in dot-separated labels of 1 to 63 bytes.
fn is_hostname(name: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    name.len() <= 253 && name.split('.').all(label_ok)
}

/// A path (relative to the config file) that must name an existing file.
pub(super) fn existing_file(
    v: &Val<'_>,
    what: &str,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<PathBuf> {
    let s = string(v, what, p)?;
    let path = absolute(base_dir.join(s.v));
    if !path.is_file() {
        p.add(s.at, format!("{} is not a readable file", path.display()));
        return None;
    }
    Some(path)
}

pub(super) fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::testing::*;

    #[test]
    fn bad_durations_and_sizes() {
        // "10 s", "1.5s" and "2d" were here too: humantime reads them (see
        // `compound_durations_and_days`).
        for bad in [
            "10",
            "0",
            "-1s",
            "s",
            "",
            "10S",
            "1s1",
            "1.",
            "99999999999999999999s",
        ] {
            let quoted = format!("header = {bad:?}");
            let ps = problems(&with(&["[timeouts]", &quoted]));
            assert_eq!(ps.len(), 1, "{bad}: {ps:?}");
            assert_eq!((ps[0].0, ps[0].1), (8, 10), "{bad}");
            assert!(
                ps[0].2.starts_with("invalid duration"),
                "{bad}: {}",
                ps[0].2
            );
        }
        one_problem(
            &with(&["[timeouts]", "connect = \"0ms\""]),
            8,
            11,
            "duration \"0ms\" must be more than zero",
        );
        one_problem(
            &with(&["[timeouts]", "connect = \"9000h\""]),
            8,
            11,
            "is too long",
        );
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        for bad in ["32", "32 KiB", "32kib", "32KB", "1.5MiB", "KiB", "-1B"] {
            let quoted = format!("max_header_bytes = {bad:?}");
            let ps = problems(&with(&["[limits]", &quoted]));
            assert_eq!(ps.len(), 1, "{bad}: {ps:?}");
            assert_eq!((ps[0].0, ps[0].1), (8, 20), "{bad}");
            assert!(ps[0].2.starts_with("invalid size"), "{bad}: {}", ps[0].2);
        }
        one_problem(
            &with(&["[limits]", "max_header_bytes = \"512B\""]),
            8,
            20,
            "\"max_header_bytes\" must be between 1KiB and 1MiB, found 512B",
        );
        one_problem(
            &with(&["[limits]", "max_header_bytes = \"2MiB\""]),
            8,
            20,
            "found 2MiB",
        );
        one_problem(
            &with(&["[limits]", "max_header_bytes = -4"]),
            8,
            20,
            "must be at least 0, found -4",
        );
    }

    #[test]
    fn compound_durations_and_days() {
        let secs = |text| parse_duration(text).map(|d| d.as_secs_f64());
        assert_eq!(secs("1m30s"), Ok(90.0));
        assert_eq!(secs("1d"), Ok(86_400.0));
        assert_eq!(secs("2d"), Ok(172_800.0));
        assert_eq!(secs("1h 30m"), Ok(5_400.0));
        assert_eq!(secs("1h30m15s"), Ok(5_415.0));
        assert_eq!(secs("10 s"), Ok(10.0));
        assert_eq!(secs("1.5s"), Ok(1.5));
        assert_eq!(secs("365d"), Ok(31_536_000.0));
        // The forms accepted before, unchanged.
        assert_eq!(secs("500ms"), Ok(0.5));
        assert_eq!(secs("10s"), Ok(10.0));
        assert_eq!(secs("5m"), Ok(300.0));
        assert_eq!(secs("1h"), Ok(3_600.0));
        // Garbage is refused with the message it had before.
        for bad in ["soon", "10", "10S", "1.5", "99999999999999999999s"] {
            let want = format!(
                "invalid duration {bad:?}: expected a whole number followed by ms, s, m or h (like \"10s\")"
            );
            assert_eq!(parse_duration(bad), Err(want));
        }
        // The bounds apply to compound forms too.
        assert_eq!(
            parse_duration("0d 0s"),
            Err("duration \"0d 0s\" must be more than zero".into())
        );
        // Months and years are refused ("1M" would be a month, not a minute).
        for calendar in ["1M", "1y", "2 months", "1year"] {
            let err = parse_duration(calendar).unwrap_err();
            assert!(err.contains("months and years are not taken"), "{err}");
        }
        for long in ["366d", "53w", "18446744073709551615h", "10000000000000d"] {
            assert_eq!(
                parse_duration(long),
                Err(format!("duration {long:?} is too long (at most 365 days)"))
            );
        }
        one_problem(
            &with(&["[timeouts]", "keepalive = \"1m30s\"", "connect = \"2x\""]),
            9,
            11,
            "invalid duration \"2x\"",
        );
    }

    #[test]
    fn bad_addresses() {
        one_problem(
            &[
                "[[listener]]",
                "name = \"main\"",
                "address = \"localhost:80\"",
                "[[vhost]]",
                "name = \"v\"",
                "domains = [\"*\"]",
                "listeners = [\"main\"]",
            ],
            3,
            11,
            "invalid listen address \"localhost:80\"",
        );
        one_problem(
            &with(&[
                "[[listener]]",
                "name = \"other\"",
                "address = \"127.0.0.1:8080\"",
            ]),
            9,
            11,
            "address 127.0.0.1:8080 is already used by listener \"main\"",
        );
        one_problem(
            &with(&[
                "[[backend]]",
                "name = \"b\"",
                "servers = [\"1.2.3.4:1\", \"uds://rel.sock\"]",
            ]),
            9,
            25,
            "needs an absolute path",
        );
        one_problem(
            &with(&["[[backend]]", "name = \"b\"", "servers = []"]),
            9,
            11,
            "\"servers\" must not be empty",
        );
        one_problem(
            &with(&[
                "[[vhost.websocket]]",
                "uri = \"/ws\"",
                "address = \"1.2.3.4\"",
            ]),
            9,
            11,
            "invalid address \"1.2.3.4\"",
        );
    }

    #[test]
    fn bad_uris() {
        one_problem(
            &with(&[
                "[[vhost.websocket]]",
                "uri = \"exp:(\"",
                "address = \"1.2.3.4:5\"",
            ]),
            8,
            7,
            "invalid regex \"(\"",
        );
        one_problem(
            &with(&["[[vhost.context]]", "uri = \"echo\"", "handler = \"echo\""]),
            8,
            7,
            "uri \"echo\" must start with '/'",
        );
    }

    #[test]
    fn domains() {
        let (c, _dir) = ok(&with(&[
            "[[vhost]]",
            "name = \"b\"",
            "domains = [\"A-1.Example.org\", \"*.X.io\", \"127.0.0.1\"]",
        ]));
        assert_eq!(
            c.vhosts[1].domains,
            ["a-1.example.org", "*.x.io", "127.0.0.1"]
        );
        for bad in [
            "a.*.com",
            "",
            "*.",
            "*.*",
            "a..com",
            "-a.com",
            "a-.com",
            "a b.com",
            "example.com.",
            "*example.com",
        ] {
            let line = format!("domains = [\"*\", {bad:?}]");
            let ps = problems(&with(&["[[vhost]]", "name = \"b\"", &line]));
            assert_eq!(ps.len(), 1, "{bad}: {ps:?}");
            assert_eq!((ps[0].0, ps[0].1), (9, 17), "{bad}");
            assert!(
                ps[0].2.starts_with(&format!("invalid domain {bad:?}")),
                "{}",
                ps[0].2
            );
        }
        one_problem(
            &with(&["[[vhost]]", "name = \"b\"", "domains = []"]),
            9,
            11,
            "\"domains\" must not be empty",
        );
        // Columns count characters, not bytes.
        let ps = problems(&with(&["listeners = [\"é\", \"x\"]"]));
        let got: Vec<_> = ps.iter().map(|(l, c, m)| (*l, *c, m.as_str())).collect();
        assert_eq!(
            got,
            [
                (7, 14, "unknown listener \"é\""),
                (7, 19, "unknown listener \"x\"")
            ]
        );
    }
}
