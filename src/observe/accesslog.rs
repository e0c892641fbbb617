//! Access log lines (sans-IO): one per HTTP request, one per WebSocket tunnel at its end.
//!
//! `combined` is the Apache/nginx combined format followed by Ringway's fields as `key=value`
//! pairs; `json` is one JSON object per line. Bytes a peer sent (path, referer, user agent)
//! are escaped, so a line is always one line of valid text:
//!
//! - combined: `"`, `\`, control and non-ASCII bytes as `\xHH`;
//! - json: serialized by `serde_json` (escaping correct by construction: `"`, `\` and control
//!   characters escaped, `\n`/`\t`-style where JSON has a short form, `\u00XX` otherwise).
//!   JSON strings are Unicode, so bytes that are not UTF-8 become U+FFFD, one per invalid
//!   sequence (`String::from_utf8_lossy`): a line says that a path held such bytes, not which;
//!   the combined format keeps them. DEL (0x7F) is written as is, as JSON allows.
//!
//! Lines are appended to the caller's buffer; a json line is serialized straight into it.

use std::fmt::{self, Write as _};
use std::io;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};
use serde_json::ser::Formatter;

use crate::config::AccessFormat;

/// `Entry::minor` of an HTTP/2 request.
pub const HTTP2: u8 = 20;

fn protocol(minor: u8) -> &'static str {
    match minor {
        0 => "HTTP/1.0",
        HTTP2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    }
}

pub struct Entry<'a> {
    pub time: SystemTime,
    pub client: IpAddr,
    /// `-` when no vhost matched.
    pub vhost: &'a str,
    pub method: &'a [u8],
    pub target: &'a [u8],
    /// HTTP/1.`minor`; `HTTP2` for an HTTP/2 stream.
    pub minor: u8,
    pub status: u16,
    /// Client-side bytes read and written for this request (or tunnel).
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    /// The backend server that answered, if any.
    pub backend: Option<&'a str>,
    /// A WebSocket tunnel's line (written when the tunnel ends).
    pub upgrade: bool,
    pub referer: &'a [u8],
    pub user_agent: &'a [u8],
}

/// Appends one line (with its `\n`) to `out`.
pub fn write(out: &mut Vec<u8>, e: &Entry<'_>, format: AccessFormat) {
    match format {
        AccessFormat::Combined => {
            let mut s = String::with_capacity(256);
            combined(&mut s, e);
            s.push('\n');
            out.extend_from_slice(s.as_bytes());
        }
        AccessFormat::Json => json(out, e),
    }
}

fn combined(s: &mut String, e: &Entry<'_>) {
    let (y, mo, d, h, mi, sec) = civil(e.time);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let _ = write!(
        s,
        "{} - - [{d:02}/{}/{y}:{h:02}:{mi:02}:{sec:02} +0000] \"",
        e.client,
        MONTHS[mo as usize - 1]
    );
    quoted_bytes(s, e.method);
    s.push(' ');
    quoted_bytes(s, e.target);
    let _ = write!(
        s,
        " {}\" {} {} \"",
        protocol(e.minor),
        e.status,
        e.bytes_out
    );
    quoted_or_dash(s, e.referer);
    s.push_str("\" \"");
    quoted_or_dash(s, e.user_agent);
    let _ = write!(
        s,
        "\" vhost={} bytes_in={} duration={:.6} backend={}",
        e.vhost.replace(' ', "_"),
        e.bytes_in,
        e.duration.as_secs_f64(),
        e.backend.unwrap_or("-")
    );
    if e.upgrade {
        s.push_str(" upgrade=ws");
    }
}

fn quoted_or_dash(s: &mut String, b: &[u8]) {
    if b.is_empty() {
        s.push('-');
    } else {
        quoted_bytes(s, b);
    }
}

/// Printable ASCII as is, except `"` and `\`; everything else as `\xHH`.
fn quoted_bytes(s: &mut String, b: &[u8]) {
    for &c in b {
        if (0x20..0x7F).contains(&c) && c != b'"' && c != b'\\' {
            s.push(c as char);
        } else {
            let _ = write!(s, "\\x{c:02X}");
        }
    }
}

/// A json line's fields, in their order.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: Rfc3339,
    client: IpAddr,
    vhost: &'a str,
    method: Lossy<'a>,
    path: Lossy<'a>,
    protocol: &'static str,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    duration_s: f64,
    backend: Option<&'a str>,
    /// `"ws"` on a tunnel's line.
    upgrade: Option<&'static str>,
    referer: Lossy<'a>,
    user_agent: Lossy<'a>,
}

/// `2026-12-05T07:47:03.250Z`: UTC, milliseconds.
struct Rfc3339(SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo, d, h, mi, sec) = civil(self.0);
        let millis = self
            .0
            .duration_since(UNIX_EPOCH)
            .map_or(0, |t| t.subsec_millis());
        write!(
            f,
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}.{millis:03}Z"
        )
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Bytes a peer sent, as a JSON string: invalid UTF-8 becomes U+FFFD (borrowed, no copy, when
/// the bytes are valid).
struct Lossy<'a>(&'a [u8]);

impl Serialize for Lossy<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(self.0))
    }
}

/// Compact JSON with floats at 6 decimals (`duration_s`, microseconds: `0.001500`).
struct Micros;

impl Formatter for Micros {
    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        write!(w, "{value:.6}")
    }
}

fn json(out: &mut Vec<u8>, e: &Entry<'_>) {
    let line = JsonLine {
        time: Rfc3339(e.time),
        client: e.client,
        vhost: e.vhost,
        method: Lossy(e.method),
        path: Lossy(e.target),
        protocol: protocol(e.minor),
        status: e.status,
        bytes_in: e.bytes_in,
        bytes_out: e.bytes_out,
        duration_s: e.duration.as_secs_f64(),
        backend: e.backend,
        upgrade: e.upgrade.then_some("ws"),
        referer: Lossy(e.referer),
        user_agent: Lossy(e.user_agent),
    };
    let start = out.len();
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, Micros);
    // Into a Vec, of these types: it cannot fail; were it to, no half line is left.
    if line.serialize(&mut ser).is_err() {
        out.truncate(start);
        return;
    }
    out.push(b'\n');
}

/// (year, month, day, hour, minute, second) in UTC.
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to civil date (H. Hinnant's algorithm, proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    let rem = rem as u32;
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            // 2026-12-05 07:47:03.250 UTC
            time: UNIX_EPOCH + Duration::from_millis(1_796_456_823_250),
            client: "127.0.0.1".parse().unwrap(),
            vhost: "site",
            method: b"GET",
            target: b"/a \"b\"\x01\xff",
            minor: 1,
            status: 200,
            bytes_in: 78,
            bytes_out: 1234,
            duration: Duration::from_micros(1500),
            backend: Some("127.0.0.1:9001"),
            upgrade: false,
            referer: b"",
            user_agent: b"curl/8",
        }
    }

    #[test]
    fn combined_line() {
        let mut out = Vec::new();
        write(&mut out, &entry(), AccessFormat::Combined);
        let line = String::from_utf8(out).unwrap();
        assert_eq!(
            line,
            "127.0.0.1 - - [05/Dec/2026:07:47:03 +0000] \"GET /a\\x20\\x22b\\x22\\x01\\xFF HTTP/1.1\" 200 1234 \"-\" \"curl/8\" vhost=site bytes_in=78 duration=0.001500 backend=127.0.0.1:9001\n"
                .replace("\\x20", " ")
        );
    }

    #[test]
    fn json_line_and_tunnel_fields() {
        let mut e = entry();
        e.upgrade = true;
        e.status = 101;
        e.backend = None;
        let mut out = Vec::new();
        write(&mut out, &e, AccessFormat::Json);
        let line = String::from_utf8(out).unwrap();
        assert!(line.ends_with("}\n") && line.lines().count() == 1, "{line}");
        for part in [
            "\"time\":\"2026-12-05T07:47:03.250Z\"",
            "\"path\":\"/a \\\"b\\\"\\u0001\u{fffd}\"",
            "\"status\":101",
            "\"bytes_in\":78,\"bytes_out\":1234",
            "\"duration_s\":0.001500",
            "\"backend\":null",
            "\"upgrade\":\"ws\"",
            "\"referer\":\"\"",
        ] {
            assert!(line.contains(part), "{part} not in {line}");
        }
    }

    /// Peer bytes with quotes, backslashes, control bytes and invalid UTF-8.
    const NASTY: &[u8] = b"/p\"q\\r\x01\x7f\n\t\r\x08\x0c\xc3\x28\xe2\x82\xac\xff";

    #[test]
    fn json_lines_are_pinned() {
        let mut e = entry();
        let mut out = Vec::new();
        write(&mut out, &e, AccessFormat::Json);
        e.target = NASTY;
        e.referer = b"http://r/\"";
        e.user_agent = b"\x00ua";
        e.vhost = "-";
        e.minor = HTTP2;
        e.client = "::1".parse().unwrap();
        e.duration = Duration::from_nanos(1);
        e.backend = None;
        e.upgrade = true;
        write(&mut out, &e, AccessFormat::Json);
        e.duration = Duration::from_secs(3600);
        e.time = UNIX_EPOCH;
        e.minor = 0;
        write(&mut out, &e, AccessFormat::Json);
        // As the hand-written writer had them, but for the short escapes (`\n` for `\u000a`)
        // and DEL unescaped.
        let first = r#"{"time":"2026-12-05T07:47:03.250Z","client":"127.0.0.1","vhost":"site","method":"GET","path":"/a \"b\"\u0001�","protocol":"HTTP/1.1","status":200,"bytes_in":78,"bytes_out":1234,"duration_s":0.001500,"backend":"127.0.0.1:9001","upgrade":null,"referer":"","user_agent":"curl/8"}"#;
        let tunnel = r#"{"time":"TIME","client":"::1","vhost":"-","method":"GET","path":"/p\"q\\r\u0001DEL\n\t\r\b\f�(€�","protocol":"PROTO","status":200,"bytes_in":78,"bytes_out":1234,"duration_s":SECONDS,"backend":null,"upgrade":"ws","referer":"http://r/\"","user_agent":"\u0000ua"}"#
            .replace("DEL", "\x7f");
        let line = |time: &str, proto: &str, seconds: &str| {
            tunnel
                .replace("TIME", time)
                .replace("PROTO", proto)
                .replace("SECONDS", seconds)
        };
        let want = [
            first.to_string(),
            line("2026-12-05T07:47:03.250Z", "HTTP/2.0", "0.000000"),
            line("1970-01-01T00:00:00.000Z", "HTTP/1.0", "3600.000000"),
        ];
        assert_eq!(String::from_utf8(out).unwrap(), want.join("\n") + "\n");
    }

    #[test]
    fn json_lines_parse_back() {
        let mut e = entry();
        e.target = NASTY;
        e.referer = b"\\\"\x1b[31m";
        e.user_agent = b"ok\xc0\xaf";
        let mut out = Vec::new();
        write(&mut out, &e, AccessFormat::Json);
        write(&mut out, &e, AccessFormat::Json);
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(
            v["path"],
            "/p\"q\\r\u{1}\u{7f}\n\t\r\u{8}\u{c}\u{fffd}(\u{20ac}\u{fffd}"
        );
        assert_eq!(v["referer"], "\\\"\u{1b}[31m");
        // An overlong encoding: one U+FFFD per invalid byte.
        assert_eq!(v["user_agent"], "ok\u{fffd}\u{fffd}");
        assert_eq!(v["duration_s"], 0.0015);
        assert_eq!(v["status"], 200);
        assert_eq!(v["upgrade"], serde_json::Value::Null);
    }

    #[test]
    fn civil_dates() {
        let at = |s: u64| civil(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(at(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(at(1_796_456_823), (2026, 12, 5, 7, 47, 3));
    }
}
