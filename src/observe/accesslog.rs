//! Access log lines (sans-IO): one per HTTP request, one per WebSocket tunnel at its end.
//!
//! `combined` is the Apache/nginx combined format followed by Ringway's fields as `key=value`
//! pairs; `json` is one JSON object per line. Bytes a peer sent (path, referer, user agent)
//! are escaped: `"`, `\`, control and non-ASCII bytes as `\xHH` in combined, JSON escapes in
//! json, so a line is always one line of valid text.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    let mut s = String::with_capacity(256);
    match format {
        AccessFormat::Combined => combined(&mut s, e),
        AccessFormat::Json => json(&mut s, e),
    }
    s.push('\n');
    out.extend_from_slice(s.as_bytes());
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

fn json(s: &mut String, e: &Entry<'_>) {
    let (y, mo, d, h, mi, sec) = civil(e.time);
    let millis = e
        .time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.subsec_millis());
    let _ = write!(
        s,
        "{{\"time\":\"{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}.{millis:03}Z\",\"client\":\"{}\",\"vhost\":",
        e.client
    );
    json_bytes(s, e.vhost.as_bytes());
    s.push_str(",\"method\":");
    json_bytes(s, e.method);
    s.push_str(",\"path\":");
    json_bytes(s, e.target);
    let _ = write!(
        s,
        ",\"protocol\":\"{}\",\"status\":{},\"bytes_in\":{},\"bytes_out\":{},\"duration_s\":{:.6},\"backend\":",
        protocol(e.minor),
        e.status,
        e.bytes_in,
        e.bytes_out,
        e.duration.as_secs_f64()
    );
    match e.backend {
        Some(b) => json_bytes(s, b.as_bytes()),
        None => s.push_str("null"),
    }
    s.push_str(",\"upgrade\":");
    s.push_str(if e.upgrade { "\"ws\"" } else { "null" });
    s.push_str(",\"referer\":");
    json_bytes(s, e.referer);
    s.push_str(",\"user_agent\":");
    json_bytes(s, e.user_agent);
    s.push('}');
}

/// A JSON string of bytes that may not be UTF-8 (invalid sequences become U+FFFD).
fn json_bytes(s: &mut String, b: &[u8]) {
    s.push('"');
    for c in String::from_utf8_lossy(b).chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
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

    #[test]
    fn civil_dates() {
        let at = |s: u64| civil(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(at(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(at(1_796_456_823), (2026, 12, 5, 7, 47, 3));
    }
}
