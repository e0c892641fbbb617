//! Request and response heads, parsed with httparse over the connection's read buffer: header
//! names and values are slices of that buffer, nothing is copied.
//!
//! `parse_request` returns `Ok(None)` while the head is incomplete, so the caller reads more and
//! calls again; limits are checked on every call, so an endless head is refused early.

use httparse::{Header, Status, EMPTY_HEADER};

use super::has_token;

/// Longest request line accepted (→ 414). Same as nginx's default large buffer (8k).
pub const REQUEST_LINE_BYTES_MAX: usize = 8 * 1024;
/// Most header fields in one head (→ 431). Browsers send 10–30.
pub const HEADER_FIELDS_MAX: usize = 100;

/// Header array handed to httparse; lives on the caller's stack.
pub type HeaderArray<'b> = [Header<'b>; HEADER_FIELDS_MAX];
pub const fn empty_headers<'b>() -> HeaderArray<'b> {
    [EMPTY_HEADER; HEADER_FIELDS_MAX]
}

/// Why a request head was refused; each maps to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Malformed request line or header field (400).
    Malformed,
    /// Head larger than `limits.max_header_bytes`, or too many fields (431).
    TooLarge,
    /// Request line longer than `REQUEST_LINE_BYTES_MAX` (414).
    UriTooLong,
    /// HTTP/1.1 without `Host`, or several `Host` fields (400).
    BadHost,
    /// Ambiguous body framing: CL+TE, conflicting or invalid Content-Length, bad
    /// Transfer-Encoding (400, and the connection is closed: RFC 9112 §6.3).
    BadFraming,
    /// Not HTTP/1.0 or HTTP/1.1 (505).
    Version,
}

impl HeadError {
    pub fn status(self) -> u16 {
        match self {
            HeadError::Malformed | HeadError::BadHost | HeadError::BadFraming => 400,
            HeadError::TooLarge => 431,
            HeadError::UriTooLong => 414,
            HeadError::Version => 505,
        }
    }
}

/// How the message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    Chunked,
    /// Responses only: the body runs until the connection closes.
    UntilClose,
}

/// A parsed request head; every slice borrows the read buffer.
#[derive(Debug)]
pub struct Request<'h, 'b> {
    pub method: &'b str,
    pub target: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: &'h [Header<'b>],
    /// Bytes of the head including the final CRLFCRLF.
    pub head_len: usize,
    pub host: Option<&'b [u8]>,
    pub body: Body,
    /// The connection stays open after this exchange (HTTP/1.1 default, 1.0 keep-alive).
    pub keep_alive: bool,
}

impl<'b> Request<'_, 'b> {
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The path of the request target, without query or fragment. Absolute-form targets
    /// (`http://host/path`) yield their path; `*` and other forms yield "".
    pub fn path(&self) -> &'b str {
        let t = self.target;
        let t = if t.starts_with('/') {
            t
        } else if let Some(rest) = t
            .strip_prefix("http://")
            .or_else(|| t.strip_prefix("https://"))
        {
            rest.find('/').map_or("/", |i| &rest[i..])
        } else {
            ""
        };
        let end = t.find(['?', '#']).unwrap_or(t.len());
        &t[..end]
    }
}

/// Parses a request head from `buf`. `Ok(None)`: incomplete, read more.
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut HeaderArray<'b>,
    head_bytes_max: usize,
) -> Result<Option<Request<'h, 'b>>, HeadError> {
    check_request_line(buf)?;
    let mut req = httparse::Request::new(headers);
    let status = req.parse(buf).map_err(|e| match e {
        httparse::Error::TooManyHeaders => HeadError::TooLarge,
        httparse::Error::Version => version_error(buf),
        _ => HeadError::Malformed,
    });
    let head_len = match status? {
        Status::Partial if buf.len() > head_bytes_max => return Err(HeadError::TooLarge),
        Status::Partial => return Ok(None),
        Status::Complete(n) if n > head_bytes_max => return Err(HeadError::TooLarge),
        Status::Complete(n) => n,
    };
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(HeadError::Malformed);
    };
    let headers: &'h [Header<'b>] = req.headers;
    let host = single_host(headers)?;
    if minor_version == 1 && host.is_none() {
        return Err(HeadError::BadHost);
    }
    let body = request_body(headers, minor_version)?;
    Ok(Some(Request {
        method,
        target,
        minor_version,
        headers,
        head_len,
        host,
        body,
        keep_alive: keep_alive(headers, minor_version),
    }))
}

/// 414 as soon as the request line is known to be too long, even before it ends.
/// httparse refuses every version but `HTTP/1.0` and `HTTP/1.1` alike. Only a well-formed
/// `HTTP/<digit>.<digit>` (RFC 9112 §2.3) is an unsupported version (505); anything else in the
/// version's place (`HTTQ/1.1`, `HTTP/1.1x`, `HTTP/11`) is a malformed request line (400).
fn version_error(buf: &[u8]) -> HeadError {
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = buf[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..line_end]);
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() && line.len() > version.len() =>
        {
            HeadError::Version
        }
        _ => HeadError::Malformed,
    }
}

pub fn check_request_line(buf: &[u8]) -> Result<(), HeadError> {
    let window = &buf[..buf.len().min(REQUEST_LINE_BYTES_MAX + 2)];
    match window.iter().position(|&b| b == b'\n') {
        Some(end) if end > REQUEST_LINE_BYTES_MAX => Err(HeadError::UriTooLong),
        None if buf.len() > REQUEST_LINE_BYTES_MAX + 1 => Err(HeadError::UriTooLong),
        _ => Ok(()),
    }
}

fn single_host<'b>(headers: &[Header<'b>]) -> Result<Option<&'b [u8]>, HeadError> {
    let mut host = None;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
    {
        if host.is_some() {
            return Err(HeadError::BadHost);
        }
        host = Some(h.value.trim_ascii());
    }
    Ok(host)
}

/// RFC 9112 §6.3: Transfer-Encoding with Content-Length is refused (smuggling); several
/// Content-Length values must agree; a request Transfer-Encoding must end in `chunked`.
fn request_body(headers: &[Header<'_>], minor_version: u8) -> Result<Body, HeadError> {
    let length = content_length(headers)?;
    let chunked = transfer_chunked(headers)?;
    match (length, chunked) {
        (Some(_), Some(_)) => Err(HeadError::BadFraming),
        (None, Some(true)) if minor_version == 1 => Ok(Body::Chunked),
        (None, Some(_)) => Err(HeadError::BadFraming),
        (Some(0), None) | (None, None) => Ok(Body::None),
        (Some(n), None) => Ok(Body::Length(n)),
    }
}

/// All Content-Length fields (and comma-separated values) must be the same valid number.
pub fn content_length(headers: &[Header<'_>]) -> Result<Option<u64>, HeadError> {
    let mut length = None;
    let fields = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"));
    for value in fields.flat_map(|h| h.value.split(|&b| b == b',')) {
        let n = parse_decimal(value.trim_ascii()).ok_or(HeadError::BadFraming)?;
        if length.is_some_and(|l| l != n) {
            return Err(HeadError::BadFraming);
        }
        length = Some(n);
    }
    Ok(length)
}

/// `Some(true)`: Transfer-Encoding present and its last coding is chunked; `Some(false)`:
/// present otherwise; `None`: absent.
pub fn transfer_chunked(headers: &[Header<'_>]) -> Result<Option<bool>, HeadError> {
    let mut last: Option<&[u8]> = None;
    let fields = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    for value in fields.flat_map(|h| h.value.split(|&b| b == b',')) {
        let coding = value.trim_ascii();
        if coding.is_empty() {
            continue;
        }
        if last.is_some_and(|l| l.eq_ignore_ascii_case(b"chunked")) {
            // `chunked` must be the final coding, applied once.
            return Err(HeadError::BadFraming);
        }
        last = Some(coding);
    }
    Ok(last.map(|l| l.eq_ignore_ascii_case(b"chunked")))
}

/// Digits only (no sign, no spaces), at most 18 of them so it cannot overflow.
pub fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 18 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

fn keep_alive(headers: &[Header<'_>], minor_version: u8) -> bool {
    let mut close = false;
    let mut keep = false;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
    {
        close |= has_token(h.value, b"close");
        keep |= has_token(h.value, b"keep-alive");
    }
    !close && (minor_version == 1 || keep)
}

/// A parsed response head (from a backend).
#[derive(Debug)]
pub struct Response<'h, 'b> {
    pub code: u16,
    pub reason: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: &'h [Header<'b>],
    pub head_len: usize,
}

impl<'b> Response<'_, 'b> {
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The backend lets this connection carry another request after this response.
    pub fn keep_alive(&self) -> bool {
        keep_alive(self.headers, self.minor_version)
    }

    /// RFC 9112 §6.3 body length of a response to a request with `method`.
    pub fn body(&self, method: &str) -> Result<Body, HeadError> {
        if method == "HEAD" || (100..200).contains(&self.code) || matches!(self.code, 204 | 304) {
            return Ok(Body::None);
        }
        let length = content_length(self.headers)?;
        match (transfer_chunked(self.headers)?, length) {
            (Some(_), Some(_)) => Err(HeadError::BadFraming),
            (Some(true), None) => Ok(Body::Chunked),
            (Some(false), None) | (None, None) => Ok(Body::UntilClose),
            (None, Some(n)) => Ok(Body::Length(n)),
        }
    }
}

/// Parses a response head. `Ok(None)`: incomplete.
pub fn parse_response<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut HeaderArray<'b>,
    head_bytes_max: usize,
) -> Result<Option<Response<'h, 'b>>, HeadError> {
    let mut resp = httparse::Response::new(headers);
    let head_len = match resp.parse(buf).map_err(|_| HeadError::Malformed)? {
        Status::Partial if buf.len() > head_bytes_max => return Err(HeadError::TooLarge),
        Status::Partial => return Ok(None),
        Status::Complete(n) if n > head_bytes_max => return Err(HeadError::TooLarge),
        Status::Complete(n) => n,
    };
    let code = resp.code.ok_or(HeadError::Malformed)?;
    Ok(Some(Response {
        code,
        reason: resp.reason.unwrap_or(""),
        minor_version: resp.version.unwrap_or(0),
        headers: resp.headers,
        head_len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 32 * 1024;

    fn parse(buf: &[u8]) -> Result<Option<(String, Body, bool, usize)>, HeadError> {
        let mut h = empty_headers();
        parse_request(buf, &mut h, MAX)
            .map(|r| r.map(|r| (r.path().to_string(), r.body, r.keep_alive, r.head_len)))
    }

    #[test]
    fn complete_head_at_every_split() {
        let full =
            b"GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\nNEXT";
        let head_len = full.len() - 4;
        for split in 0..head_len {
            assert_eq!(parse(&full[..split]), Ok(None), "split at {split}");
        }
        let got = parse(full).unwrap().unwrap();
        assert_eq!(got, ("/a/b".to_string(), Body::None, true, head_len));
    }

    #[test]
    fn only_a_well_formed_other_version_is_505() {
        let cases: &[(&[u8], Result<(), HeadError>)] = &[
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Ok(())),
            (b"GET / HTTP/1.0\r\n\r\n", Ok(())),
            (
                b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
                Err(HeadError::Version),
            ),
            (
                b"GET / HTTP/0.9\r\nHost: a\r\n\r\n",
                Err(HeadError::Version),
            ),
            (b"GET / HTTP/3.7\nHost: a\n\n", Err(HeadError::Version)),
            (
                b"GET / HTTQ/1.1\r\nHost: a\r\n\r\n",
                Err(HeadError::Malformed),
            ),
            (
                b"GET / http/1.1\r\nHost: a\r\n\r\n",
                Err(HeadError::Malformed),
            ),
            (
                b"GET / HTTP/1.1x\r\nHost: a\r\n\r\n",
                Err(HeadError::Malformed),
            ),
            (
                b"GET / HTTP/11\r\nHost: a\r\n\r\n",
                Err(HeadError::Malformed),
            ),
            (
                b"GET / HTTP/a.b\r\nHost: a\r\n\r\n",
                Err(HeadError::Malformed),
            ),
            (
                b"GET / HTTP/2\r\nHost: a\r\n\r\n",
                Err(HeadError::Malformed),
            ),
            (b"HTTP/2.0\r\n\r\n", Err(HeadError::Malformed)),
        ];
        for (raw, want) in cases {
            let got = parse(raw).map(|_| ());
            assert_eq!(&got, want, "{:?}", String::from_utf8_lossy(raw));
        }
        assert_eq!(HeadError::Malformed.status(), 400);
        assert_eq!(HeadError::Version.status(), 505);
    }

    #[test]
    fn framing_rules() {
        let cases: &[(&[u8], Result<Body, HeadError>)] = &[
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", Ok(Body::Length(5))),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", Ok(Body::Length(5))),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", Err(HeadError::BadFraming)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", Err(HeadError::BadFraming)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", Err(HeadError::BadFraming)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", Err(HeadError::BadFraming)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", Ok(Body::Chunked)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Ok(Body::Chunked)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", Err(HeadError::BadFraming)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", Err(HeadError::BadFraming)),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Err(HeadError::BadFraming)),
        ];
        for (input, want) in cases {
            let got = parse(input).map(|r| r.unwrap().1);
            assert_eq!(&got, want, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn host_rules() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Err(HeadError::BadHost));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(HeadError::BadHost)
        );
        assert!(parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |b: &[u8]| parse(b).unwrap().unwrap().2;
        assert!(ka(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        ));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn limits_and_malformed() {
        assert_eq!(parse(b"GARBAGE\r\n\r\n"), Err(HeadError::Malformed));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        let mut long_line = b"GET /".to_vec();
        long_line.resize(REQUEST_LINE_BYTES_MAX + 10, b'a');
        assert_eq!(parse(&long_line), Err(HeadError::UriTooLong));
        long_line.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(parse(&long_line), Err(HeadError::UriTooLong));
        let mut big = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        while big.len() <= MAX {
            big.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(parse(&big), Err(HeadError::TooLarge));
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..HEADER_FIELDS_MAX {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many), Err(HeadError::TooLarge));
    }

    #[test]
    fn paths() {
        let p = |b: &[u8]| parse(b).unwrap().unwrap().0;
        assert_eq!(p(b"GET http://h/x/y?q HTTP/1.1\r\nHost: h\r\n\r\n"), "/x/y");
        assert_eq!(p(b"GET http://h HTTP/1.1\r\nHost: h\r\n\r\n"), "/");
        assert_eq!(p(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), "");
    }

    #[test]
    fn response_bodies() {
        let mut h = empty_headers();
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
            &mut h,
            MAX,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (r.code, r.body("GET"), r.head_len),
            (200, Ok(Body::Length(3)), 38)
        );
        assert_eq!(r.body("HEAD"), Ok(Body::None));
        let mut h = empty_headers();
        let r = parse_response(b"HTTP/1.1 403 Forbidden\r\n\r\n", &mut h, MAX)
            .unwrap()
            .unwrap();
        assert_eq!(r.body("GET"), Ok(Body::UntilClose));
        let mut h = empty_headers();
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Le", &mut h, MAX)
                .unwrap()
                .is_none()
        );
    }
}
