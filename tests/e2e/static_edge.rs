//! Issue 21 §3 and §4 with real clients: ETag / If-None-Match / If-Modified-Since, byte ranges
//! and If-Range (curl `-r`, `-z`, `-H If-None-Match`), `cache_control`, on-the-fly gzip and
//! brotli (curl `--compressed`; gzip bodies decoded by the `gzip` tool, brotli ones by the
//! brotli crate), precompressed variants, proxied responses (SSE stays uncompressed), HTTP/2,
//! `ringway check` on the new keys, and the same requests side by side against a real nginx
//! serving the same tree.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

use crate::harness::*;
use crate::http_backends::{HttpBackend, Then};

/// What curl got: the last response's status and fields, and the body as written to disk.
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn h(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Debug for Got {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} ({} body bytes)",
            self.status,
            self.headers,
            self.body.len()
        )
    }
}

/// Runs curl with `args` (the URL among them), headers and body captured to files.
fn curl(args: &[&str]) -> Got {
    let dir = temp_dir();
    let h = dir.path().join("h");
    let b = dir.path().join("b");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-D"])
        .arg(&h)
        .arg("-o")
        .arg(&b)
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&h).unwrap_or_default();
    let block = text
        .split("\r\n\r\n")
        .filter(|b| b.starts_with("HTTP/"))
        .last()
        .unwrap_or_default();
    let mut lines = block.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    // With -I curl writes the head to the body file too: a HEAD has no body.
    let body = if args.contains(&"-I") {
        Vec::new()
    } else {
        std::fs::read(&b).unwrap_or_default()
    };
    Got {
        status,
        headers,
        body,
    }
}

/// Decodes a gzip body with the `gzip` tool.
fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run gzip");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "gzip -dc failed");
    out.stdout
}

/// Decodes a brotli body (the brotli crate's decoder: the `brotli` tool is not installed).
fn unbrotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(data, 4096)
        .read_to_end(&mut out)
        .expect("valid brotli stream");
    out
}

/// A text bundle of `n` bytes that compresses like real JavaScript (repetitive, not trivial).
fn bundle(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 64);
    let mut i = 0u64;
    while out.len() < n {
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let line = format!(
            "export function f{}(a, b) {{ return a * {} + b - \"{}\"; }}\n",
            i % 5000,
            (i >> 20) % 1000,
            (i >> 40) % 77
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(n);
    out
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn brotli_bytes(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 11, 22);
        w.write_all(data).unwrap();
    }
    out
}

fn set_mtime(path: &Path, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// nginx's ETag for a file: `"<mtime hex>-<size hex>"`.
fn nginx_etag(path: &Path) -> String {
    let m = std::fs::metadata(path).unwrap();
    format!("\"{:x}-{:x}\"", m.mtime(), m.len())
}

const APP_LEN: usize = 100 * 1024;
const BIG_LEN: usize = 300_000;

/// The tree both servers serve: a 100 KiB bundle, a small script, an image, a large binary
/// (ranges by sendfile), an HTML page, and precompressed assets (fresh and stale).
fn tree(d: &Path) {
    let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    write_file(d, "www/app.js", bundle(APP_LEN));
    write_file(d, "www/small.js", bundle(500));
    write_file(d, "www/img.png", pattern(5000));
    write_file(d, "www/big.bin", pattern(BIG_LEN));
    write_file(d, "www/index.html", bundle(4000));
    write_file(d, "www/data.json", bundle(3000));
    let spa = bundle(50_000);
    write_file(d, "www/assets/spa.js", &spa);
    write_file(d, "www/assets/spa.js.gz", gzip_bytes(&spa));
    write_file(d, "www/assets/spa.js.br", brotli_bytes(&spa));
    // A variant older than its file is not used.
    write_file(d, "www/assets/stale.js", bundle(2000));
    write_file(d, "www/assets/stale.js.gz", gzip_bytes(b"OLD CONTENT"));
    for f in [
        "app.js",
        "small.js",
        "img.png",
        "big.bin",
        "index.html",
        "data.json",
    ] {
        set_mtime(&d.join("www").join(f), t0);
    }
    set_mtime(&d.join("www/assets/spa.js"), t0);
    set_mtime(&d.join("www/assets/spa.js.gz"), t0 + Duration::from_secs(5));
    set_mtime(&d.join("www/assets/spa.js.br"), t0 + Duration::from_secs(6));
    set_mtime(
        &d.join("www/assets/stale.js"),
        t0 + Duration::from_secs(100),
    );
    set_mtime(&d.join("www/assets/stale.js.gz"), t0);
}

fn edge_config(extra: &str) -> String {
    format!(
        r#"{}
[[vhost]]
name = "site"
domains = ["*"]
doc_root = "www"
compress = ["br", "gzip"]
precompressed = ["br", "gzip"]
cache_control = "public, max-age=3600"
{extra}
"#,
        base_config(1)
    )
}

fn start_edge(extra: &str) -> Ringway {
    let dir = site();
    tree(dir.path());
    Ringway::builder(edge_config(extra)).dir(dir).start()
}

const PLAIN_CONTEXT: &str = r#"
[[vhost.context]]
uri = "/plain/"
handler = "static"
compress = []
cache_control = "no-store"
"#;

#[test]
fn etag_if_none_match_and_if_modified_since_with_curl() {
    let rw = start_edge("");
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", rw.port());
    let file = rw.dir_path().join("www/img.png");
    let tag = nginx_etag(&file);
    let r = curl(&[&url("/img.png")]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.h("etag"), Some(tag.as_str()), "{r:?}");
    assert_eq!(r.h("accept-ranges"), Some("bytes"), "{r:?}");
    assert_eq!(r.h("cache-control"), Some("public, max-age=3600"), "{r:?}");
    assert_eq!(r.body, pattern(5000));
    let lm = r.h("last-modified").unwrap().to_string();
    assert_eq!(lm, "Tue, 14 Nov 2023 22:13:20 GMT");

    let inm = format!("If-None-Match: {tag}");
    let r = curl(&["-H", &inm, &url("/img.png")]);
    assert_eq!(r.status, 304, "{r:?}");
    assert!(r.body.is_empty());
    assert_eq!(r.h("etag"), Some(tag.as_str()));
    assert_eq!(r.h("cache-control"), Some("public, max-age=3600"));
    // Weak comparison, lists, and `*`.
    for value in [
        format!("W/{tag}"),
        format!("\"nope\", {tag}"),
        "*".to_string(),
    ] {
        let r = curl(&["-H", &format!("If-None-Match: {value}"), &url("/img.png")]);
        assert_eq!(r.status, 304, "{value}: {r:?}");
    }
    let r = curl(&["-H", "If-None-Match: \"0-0\"", &url("/img.png")]);
    assert_eq!(r.status, 200, "{r:?}");
    // If-None-Match wins over If-Modified-Since, either way.
    let ims = format!("If-Modified-Since: {lm}");
    let r = curl(&["-H", "If-None-Match: \"0-0\"", "-H", &ims, &url("/img.png")]);
    assert_eq!(r.status, 200, "a stale tag with a current date: {r:?}");
    let old = "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT";
    let r = curl(&["-H", &inm, "-H", old, &url("/img.png")]);
    assert_eq!(r.status, 304, "a current tag with an old date: {r:?}");
    // curl -z: If-Modified-Since.
    let r = curl(&["-z", &lm, &url("/img.png")]);
    assert_eq!(r.status, 304, "{r:?}");
    let r = curl(&["-z", "Mon, 13 Nov 2023 00:00:00 GMT", &url("/img.png")]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body.len(), 5000);
    // A changed file gets a new tag; the old one no longer matches.
    set_mtime(&file, SystemTime::now());
    let r = curl(&["-H", &inm, &url("/img.png")]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.h("etag"), Some(nginx_etag(&file).as_str()));
    // Errors carry no validators or Cache-Control.
    let r = curl(&[&url("/missing.js")]);
    assert_eq!(r.status, 404);
    assert!(
        r.h("etag").is_none() && r.h("cache-control").is_none(),
        "{r:?}"
    );
}

#[test]
fn byte_ranges_and_if_range_with_curl() {
    let rw = start_edge("");
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", rw.port());
    let img = pattern(5000);
    let big = pattern(BIG_LEN);
    // (curl -r, path, expected first..=last)
    let cases: [(&str, &str, &[u8], usize, usize); 6] = [
        ("0-99", "/img.png", &img, 0, 99),
        ("-500", "/img.png", &img, 4500, 4999),
        ("4000-", "/img.png", &img, 4000, 4999),
        ("4990-9999", "/img.png", &img, 4990, 4999),
        // Large ranges of a large file: sendfile from an offset.
        ("100000-299999", "/big.bin", &big, 100_000, 299_999),
        ("-200000", "/big.bin", &big, 100_000, 299_999),
    ];
    for (range, path, content, first, last) in cases {
        let r = curl(&["-r", range, &url(path)]);
        assert_eq!(r.status, 206, "{range}: {r:?}");
        let want_range = format!("bytes {first}-{last}/{}", content.len());
        assert_eq!(r.h("content-range"), Some(want_range.as_str()), "{range}");
        assert_eq!(
            r.h("content-length"),
            Some((last - first + 1).to_string().as_str())
        );
        assert_eq!(r.body, &content[first..=last], "{range}");
    }
    // Unsatisfiable: 416 with the size.
    let r = curl(&["-r", "5000-", &url("/img.png")]);
    assert_eq!(r.status, 416, "{r:?}");
    assert_eq!(r.h("content-range"), Some("bytes */5000"));
    // Several ranges: the whole file, 200.
    let r = curl(&["-r", "0-1,10-20", &url("/img.png")]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, img);
    // A malformed Range is ignored.
    let r = curl(&["-H", "Range: bytes=9-1", &url("/img.png")]);
    assert_eq!(r.status, 200, "{r:?}");
    // HEAD ignores Range (only GET has ranges).
    let r = curl(&["-I", "-r", "0-9", &url("/img.png")]);
    assert_eq!(r.status, 200, "{r:?}");
    // If-Range: the current tag or date lets the range apply; anything else gets the file.
    let tag = nginx_etag(&rw.dir_path().join("www/img.png"));
    let lm = "Tue, 14 Nov 2023 22:13:20 GMT";
    for (if_range, status) in [
        (tag.clone(), 206),
        (lm.to_string(), 206),
        (format!("W/{tag}"), 200),
        ("\"other\"".to_string(), 200),
        ("Tue, 14 Nov 2023 22:13:21 GMT".to_string(), 200),
    ] {
        let h = format!("If-Range: {if_range}");
        let r = curl(&["-r", "10-19", "-H", &h, &url("/img.png")]);
        assert_eq!(r.status, status, "{if_range}: {r:?}");
        let want: &[u8] = if status == 206 { &img[10..20] } else { &img };
        assert_eq!(r.body, want, "{if_range}");
    }
    // A range of a compressible file without Accept-Encoding: plain bytes.
    let app = bundle(APP_LEN);
    let r = curl(&["-r", "1000-1999", &url("/app.js")]);
    assert_eq!(r.status, 206, "{r:?}");
    assert_eq!(r.body, &app[1000..2000]);
    assert!(r.h("content-encoding").is_none());
    assert!(r.h("accept-ranges").is_none(), "a 206 (as nginx): {r:?}");
}

#[test]
fn static_compression_on_the_fly_with_curl() {
    let rw = start_edge(PLAIN_CONTEXT);
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", rw.port());
    let app = bundle(APP_LEN);
    let tag = nginx_etag(&rw.dir_path().join("www/app.js"));
    // curl --compressed offers br and gzip: br is preferred; curl decodes it.
    let r = curl(&["--compressed", &url("/app.js")]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.h("content-encoding"), Some("br"), "{r:?}");
    assert_eq!(r.body, app, "decoded by curl");
    assert!(r.h("content-length").is_none(), "{r:?}");
    assert_eq!(r.h("transfer-encoding"), Some("chunked"));
    assert_eq!(r.h("vary"), Some("Accept-Encoding"));
    let weak = format!("W/{tag}");
    assert_eq!(r.h("etag"), Some(weak.as_str()));
    assert!(r.h("accept-ranges").is_none(), "{r:?}");
    assert!(r.h("content-type").unwrap().starts_with("text/javascript"));
    // Raw bodies, decoded by the tools.
    let r = curl(&["-H", "Accept-Encoding: gzip", &url("/app.js")]);
    assert_eq!(r.h("content-encoding"), Some("gzip"), "{r:?}");
    assert!(r.body.len() < APP_LEN / 2, "compressed to {}", r.body.len());
    assert_eq!(gunzip(&r.body), app);
    let r = curl(&["-H", "Accept-Encoding: br", &url("/app.js")]);
    assert_eq!(r.h("content-encoding"), Some("br"), "{r:?}");
    assert_eq!(unbrotli(&r.body), app);
    // q-values.
    for (accept, want) in [
        ("gzip;q=1, br;q=0.5", Some("gzip")),
        ("br;q=0, gzip", Some("gzip")),
        ("*", Some("br")),
        ("gzip;q=0, br;q=0", None),
        ("identity", None),
        ("deflate", None),
    ] {
        let r = curl(&["-H", &format!("Accept-Encoding: {accept}"), &url("/app.js")]);
        assert_eq!(r.status, 200);
        assert_eq!(r.h("content-encoding"), want, "{accept}: {r:?}");
        assert_eq!(r.h("vary"), Some("Accept-Encoding"), "{accept}");
        let body = match want {
            Some("gzip") => gunzip(&r.body),
            Some(_) => unbrotli(&r.body),
            None => r.body.clone(),
        };
        assert_eq!(body, app, "{accept}");
    }
    // The weak tag revalidates the compressed answer.
    let r = curl(&[
        "-H",
        "Accept-Encoding: gzip",
        "-H",
        &format!("If-None-Match: {weak}"),
        &url("/app.js"),
    ]);
    assert_eq!(r.status, 304, "{r:?}");
    // The 304 carries the tag the 200 would have (RFC 9110 §15.4.5; nginx sends the strong one).
    assert_eq!(r.h("etag"), Some(weak.as_str()));
    // A Range on a response compressed on the fly: the whole compressed body (as nginx).
    let r = curl(&["-H", "Accept-Encoding: gzip", "-r", "0-99", &url("/app.js")]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(gunzip(&r.body), app);
    // Not compressed: under compress_min (but it varies), an image, HEAD, HTTP/1.0, a context
    // that turns it off.
    let r = curl(&["-H", "Accept-Encoding: gzip", &url("/small.js")]);
    assert!(r.h("content-encoding").is_none(), "{r:?}");
    assert_eq!(r.h("content-length"), Some("500"));
    assert!(
        r.h("vary").is_none(),
        "the same answer for every client: {r:?}"
    );
    // ... unless the client refuses identity.
    let r = curl(&[
        "-H",
        "Accept-Encoding: gzip, identity;q=0",
        &url("/small.js"),
    ]);
    assert_eq!(r.h("content-encoding"), Some("gzip"), "{r:?}");
    assert_eq!(gunzip(&r.body), bundle(500));
    let r = curl(&["-H", "Accept-Encoding: gzip", &url("/img.png")]);
    assert!(
        r.h("content-encoding").is_none() && r.h("vary").is_none(),
        "{r:?}"
    );
    assert_eq!(r.body, pattern(5000));
    let r = curl(&["-I", "-H", "Accept-Encoding: gzip", &url("/app.js")]);
    assert!(r.h("content-encoding").is_none(), "HEAD: {r:?}");
    assert_eq!(r.h("content-length"), Some(APP_LEN.to_string().as_str()));
    let r = curl(&["--http1.0", "-H", "Accept-Encoding: gzip", &url("/app.js")]);
    assert!(r.h("content-encoding").is_none(), "HTTP/1.0: {r:?}");
    assert_eq!(r.body, app);
    write_file(rw.dir_path(), "www/plain/page.html", bundle(8000));
    let r = curl(&["-H", "Accept-Encoding: gzip", &url("/plain/page.html")]);
    assert!(r.h("content-encoding").is_none(), "compress = []: {r:?}");
    assert_eq!(r.h("cache-control"), Some("no-store"), "the context's own");
    // Keep-alive survives a chunked compressed body: two in one curl run.
    let two = Command::new("curl")
        .args(["-sS", "--compressed", "-o", "/dev/null", "-o", "/dev/null"])
        .args(["-w", "%{http_code} %{num_connects}\n"])
        .arg(url("/app.js"))
        .arg(url("/index.html"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&two.stdout);
    assert_eq!(
        text, "200 1\n200 0\n",
        "second request on the same connection"
    );
}

#[test]
fn precompressed_variants_with_curl() {
    let rw = start_edge("");
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", rw.port());
    let d = rw.dir_path().join("www/assets");
    let spa = std::fs::read(d.join("spa.js")).unwrap();
    let gz = std::fs::read(d.join("spa.js.gz")).unwrap();
    let br = std::fs::read(d.join("spa.js.br")).unwrap();
    for (accept, coding, raw, file) in [
        ("gzip, br", "br", &br, "spa.js.br"),
        ("gzip", "gzip", &gz, "spa.js.gz"),
        ("br;q=0.1, gzip", "gzip", &gz, "spa.js.gz"),
    ] {
        let r = curl(&[
            "-H",
            &format!("Accept-Encoding: {accept}"),
            &url("/assets/spa.js"),
        ]);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.h("content-encoding"), Some(coding), "{accept}: {r:?}");
        assert_eq!(&r.body, raw, "{accept}: the file as it is on disk");
        assert!(r.h("content-type").unwrap().starts_with("text/javascript"));
        assert_eq!(r.h("vary"), Some("Accept-Encoding"));
        assert_eq!(r.h("content-length"), Some(raw.len().to_string().as_str()));
        assert_eq!(r.h("etag"), Some(nginx_etag(&d.join(file)).as_str()));
        assert!(r.h("accept-ranges").is_none());
    }
    assert_eq!(gunzip(&gz), spa);
    let r = curl(&["--compressed", &url("/assets/spa.js")]);
    assert_eq!(r.body, spa, "curl decodes the variant");
    // No Accept-Encoding: the original.
    let r = curl(&[&url("/assets/spa.js")]);
    assert!(r.h("content-encoding").is_none());
    assert_eq!(r.body, spa);
    assert_eq!(r.h("vary"), Some("Accept-Encoding"));
    // The variant's own tag revalidates it.
    let tag = nginx_etag(&d.join("spa.js.gz"));
    let r = curl(&[
        "-H",
        "Accept-Encoding: gzip",
        "-H",
        &format!("If-None-Match: {tag}"),
        &url("/assets/spa.js"),
    ]);
    assert_eq!(r.status, 304, "{r:?}");
    // A variant takes no ranges (as nginx's gzip_static): the whole variant.
    let r = curl(&[
        "-H",
        "Accept-Encoding: gzip",
        "-r",
        "0-9",
        &url("/assets/spa.js"),
    ]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, gz);
    // A variant older than its file is ignored (compressed on the fly instead).
    let r = curl(&["-H", "Accept-Encoding: gzip", &url("/assets/stale.js")]);
    assert_eq!(r.h("content-encoding"), Some("gzip"), "{r:?}");
    assert_eq!(gunzip(&r.body), bundle(2000));
}

/// A proxied context with compression: bodies with a length, chunked and close-delimited are
/// compressed; already-encoded, no-transform and SSE responses are not.
#[test]
fn proxied_responses_compressed_and_sse_left_alone() {
    let json = bundle(20_000);
    let json_for_backend = json.clone();
    let be = HttpBackend::with_handler("app", move |_, req, w| {
        let path = req.path().to_string();
        let mut out = Vec::new();
        let head = |out: &mut Vec<u8>, status: &str, fields: &[(&str, &str)]| {
            out.extend_from_slice(format!("HTTP/1.1 {status}\r\n").as_bytes());
            for (k, v) in fields {
                out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        };
        let len = json_for_backend.len().to_string();
        match path.as_str() {
            "/api/json" => {
                head(
                    &mut out,
                    "200 OK",
                    &[
                        ("Content-Type", "application/json"),
                        ("Content-Length", &len),
                        ("ETag", "\"v1\""),
                        ("Vary", "Origin"),
                    ],
                );
                out.extend_from_slice(&json_for_backend);
            }
            "/api/chunked" => {
                head(
                    &mut out,
                    "200 OK",
                    &[
                        ("Content-Type", "text/plain"),
                        ("Transfer-Encoding", "chunked"),
                    ],
                );
                for piece in json_for_backend.chunks(7000) {
                    out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    out.extend_from_slice(piece);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
            }
            "/api/encoded" => {
                let gz = gzip_bytes(&json_for_backend);
                head(
                    &mut out,
                    "200 OK",
                    &[
                        ("Content-Type", "application/json"),
                        ("Content-Encoding", "gzip"),
                        ("Content-Length", &gz.len().to_string()),
                    ],
                );
                out.extend_from_slice(&gz);
            }
            "/api/no-transform" => {
                head(
                    &mut out,
                    "200 OK",
                    &[
                        ("Content-Type", "application/json"),
                        ("Cache-Control", "no-transform"),
                        ("Content-Length", &len),
                    ],
                );
                out.extend_from_slice(&json_for_backend);
            }
            "/api/stream" => {
                head(
                    &mut out,
                    "200 OK",
                    &[
                        ("Content-Type", "text/plain"),
                        ("Transfer-Encoding", "chunked"),
                    ],
                );
                let piece = |data: &[u8]| {
                    let mut c = format!("{:x}\r\n", data.len()).into_bytes();
                    c.extend_from_slice(data);
                    c.extend_from_slice(b"\r\n");
                    c
                };
                out.extend_from_slice(&piece(&json_for_backend[..3000]));
                let _ = w.write_all(&out);
                let _ = w.flush();
                thread::sleep(Duration::from_millis(1500));
                let mut rest = piece(&json_for_backend[3000..]);
                rest.extend_from_slice(b"0\r\n\r\n");
                let _ = w.write_all(&rest);
                return Then::KeepAlive;
            }
            "/api/events" => {
                head(
                    &mut out,
                    "200 OK",
                    &[
                        ("Content-Type", "text/event-stream"),
                        ("Transfer-Encoding", "chunked"),
                    ],
                );
                let event = |data: &str| {
                    let e = format!("data: {data}\n\n");
                    format!("{:x}\r\n{e}\r\n", e.len())
                };
                out.extend_from_slice(event(&"one".repeat(500)).as_bytes());
                let _ = w.write_all(&out);
                let _ = w.flush();
                thread::sleep(Duration::from_millis(1500));
                let _ = w.write_all(format!("{}0\r\n\r\n", event("two")).as_bytes());
                return Then::KeepAlive;
            }
            _ => {
                head(&mut out, "404 Not Found", &[("Content-Length", "0")]);
            }
        }
        let _ = w.write_all(&out);
        Then::KeepAlive
    });
    let extra = format!(
        "[[backend]]\nname = \"app\"\nservers = [\"{}\"]\n",
        be.config_addr
    );
    let config = format!(
        "{}http2 = true\n{extra}[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\n\
         doc_root = \"www\"\n\
         [[vhost.context]]\nuri = \"/api/\"\nhandler = \"proxy\"\nbackend = \"app\"\n\
         compress = [\"gzip\", \"br\"]\n",
        base_config(1)
    );
    let rw = Ringway::builder(config).dir(site()).start();
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", rw.port());
    let ae = "Accept-Encoding: gzip, br";
    // The route's order: gzip first.
    let r = curl(&["-H", ae, &url("/api/json")]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.h("content-encoding"), Some("gzip"), "{r:?}");
    assert!(r.h("content-length").is_none());
    assert_eq!(r.h("vary"), Some("Origin, Accept-Encoding"));
    assert_eq!(r.h("etag"), Some("W/\"v1\""));
    assert_eq!(gunzip(&r.body), json);
    let r = curl(&["-H", "Accept-Encoding: br", &url("/api/chunked")]);
    assert_eq!(r.h("content-encoding"), Some("br"), "{r:?}");
    assert_eq!(unbrotli(&r.body), json);
    let r = curl(&["--compressed", &url("/api/chunked")]);
    assert_eq!(r.body, json);
    // Without Accept-Encoding: as the backend sent it, with Vary.
    let r = curl(&[&url("/api/json")]);
    assert!(r.h("content-encoding").is_none());
    assert_eq!(r.h("content-length"), Some(json.len().to_string().as_str()));
    assert_eq!(r.h("vary"), Some("Origin, Accept-Encoding"));
    assert_eq!(r.body, json);
    // Left alone.
    let r = curl(&["-H", ae, &url("/api/encoded")]);
    assert_eq!(r.h("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&r.body), json, "not compressed twice");
    let r = curl(&["-H", ae, &url("/api/no-transform")]);
    assert!(r.h("content-encoding").is_none(), "{r:?}");
    assert_eq!(r.body, json);
    // HTTP/2 (h2c) streams are compressed the same way.
    let h2 = "--http2-prior-knowledge";
    let r = curl(&[h2, "-H", ae, &url("/api/json")]);
    assert_eq!(r.h("content-encoding"), Some("gzip"), "{r:?}");
    assert!(r.h("content-length").is_none(), "{r:?}");
    assert_eq!(gunzip(&r.body), json);
    let r = curl(&[h2, "-H", "Accept-Encoding: br", &url("/api/chunked")]);
    assert_eq!(unbrotli(&r.body), json);
    let r = curl(&[h2, "-H", ae, &url("/api/events")]);
    assert!(r.h("content-encoding").is_none(), "{r:?}");
    // Streamed: the first piece decodes before the backend sends the rest (a sync flush when
    // the backend pauses; no whole-body buffering).
    let mut c = rw.conn();
    let start = Instant::now();
    c.send(b"GET /api/stream HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n");
    let h = c.try_head(WAIT).unwrap();
    assert_eq!(h.get("content-encoding"), Some("gzip"), "{h:?}");
    let mut dec = flate2::write::GzDecoder::new(Vec::new());
    while dec.get_ref().len() < 3000 {
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            line.extend(c.read_exact(1));
        }
        let size = usize::from_str_radix(std::str::from_utf8(&line).unwrap().trim(), 16).unwrap();
        assert!(size > 0, "the body ended before the first piece decoded");
        let data = c.read_exact(size + 2);
        dec.write_all(&data[..size]).unwrap();
        dec.flush().unwrap();
    }
    assert_eq!(&dec.get_ref()[..], &json[..3000]);
    assert!(
        start.elapsed() < Duration::from_millis(1400),
        "the first piece waited for the rest: {:?}",
        start.elapsed()
    );
    // SSE: uncompressed, and the first event arrives before the second is sent.
    let mut c = rw.conn();
    let start = Instant::now();
    c.send(format!("GET /api/events HTTP/1.1\r\nHost: x\r\n{ae}\r\n\r\n").as_bytes());
    let h = c.try_head(WAIT).unwrap();
    assert!(h.get("content-encoding").is_none(), "SSE compressed: {h:?}");
    let first = c.read_exact(5 + 1508);
    let text = String::from_utf8_lossy(&first);
    assert!(
        text.contains(&format!("data: {}", "one".repeat(500))),
        "{text}"
    );
    assert!(
        start.elapsed() < Duration::from_millis(1400),
        "the first event waited for the second: {:?}",
        start.elapsed()
    );
}

#[test]
fn http2_static_ranges_validators_and_compression() {
    let rw = {
        let dir = site();
        tree(dir.path());
        let config = edge_config("").replacen(
            "address = \"127.0.0.1:@PORT@\"\n",
            "address = \"127.0.0.1:@PORT@\"\nhttp2 = true\n",
            1,
        );
        Ringway::builder(config).dir(dir).start()
    };
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", rw.port());
    let h2 = "--http2-prior-knowledge";
    let app = bundle(APP_LEN);
    let r = curl(&[h2, "-H", "Accept-Encoding: gzip", &url("/app.js")]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.h("content-encoding"), Some("gzip"), "{r:?}");
    assert_eq!(r.h("vary"), Some("accept-encoding"));
    assert_eq!(gunzip(&r.body), app);
    let r = curl(&[h2, "--compressed", &url("/index.html")]);
    assert_eq!(r.h("content-encoding"), Some("br"), "{r:?}");
    assert_eq!(r.body, bundle(4000));
    let r = curl(&[h2, "-H", "Accept-Encoding: br", &url("/assets/spa.js")]);
    assert_eq!(r.h("content-encoding"), Some("br"));
    assert_eq!(
        r.body,
        std::fs::read(rw.dir_path().join("www/assets/spa.js.br")).unwrap()
    );
    let r = curl(&[h2, "-r", "100000-100099", &url("/big.bin")]);
    assert_eq!(r.status, 206, "{r:?}");
    assert_eq!(r.body, &pattern(BIG_LEN)[100_000..100_100]);
    assert_eq!(r.h("content-range"), Some("bytes 100000-100099/300000"));
    let r = curl(&[h2, "-r", "999999-", &url("/big.bin")]);
    assert_eq!(r.status, 416);
    let tag = nginx_etag(&rw.dir_path().join("www/img.png"));
    let r = curl(&[h2, "-H", &format!("If-None-Match: {tag}"), &url("/img.png")]);
    assert_eq!(r.status, 304, "{r:?}");
    assert_eq!(r.h("cache-control"), Some("public, max-age=3600"));
}

#[test]
fn check_reports_bad_delivery_keys() {
    let dir = temp_dir();
    let text = format!(
        "{}[[vhost]]\nname = \"s\"\ndomains = [\"*\"]\ncompress = [\"zstd\"]\n\
         precompressed = [\"gzip\", \"gzip\"]\ncompress_types = [\"text\"]\n\
         compress_min = \"lots\"\ncache_control = \"a\\nb\"\n",
        base_config(1).replace("@PORT@", "1")
    );
    let file = write_file(dir.path(), "ringway.toml", &text);
    let (status, stdout, stderr) = run_cli(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    for needle in [
        "must be \"br\" or \"gzip\", found \"zstd\"",
        "lists \"gzip\" twice",
        "\"text\" is not a media type pattern",
        "invalid size \"lots\"",
        "\"cache_control\" must be a non-empty header value",
    ] {
        assert!(stderr.contains(needle), "{needle}\n{stderr}");
    }
    let good = format!(
        "{}[[vhost]]\nname = \"s\"\ndomains = [\"*\"]\ncompress = [\"br\", \"gzip\"]\n\
         compress_types = [\"text/*\", \"application/*+json\"]\ncompress_min = \"2KiB\"\n\
         precompressed = [\"gzip\"]\ncache_control = \"public, max-age=3600\"\n\
         [[vhost.context]]\nuri = \"/\"\nhandler = \"static\"\ncompress = []\n\
         cache_control = \"no-cache\"\n",
        base_config(1).replace("@PORT@", "1")
    );
    let file = write_file(dir.path(), "good.toml", &good);
    let (status, stdout, stderr) = run_cli(&["check", "--config", file.to_str().unwrap()]);
    assert!(status.success(), "{stdout}{stderr}");
}

/// A real nginx on 127.0.0.1 serving `root`, gzip at Ringway's level, ETags, gzip_static.
struct Nginx {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nginx(root: &Path) -> Option<Nginx> {
    if Command::new("nginx").arg("-v").output().is_err() {
        return None;
    }
    let dir = temp_dir();
    let port = free_port();
    let d = dir.path().display();
    let conf = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
error_log {d}/error.log;
pid {d}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    types {{
        text/html html;
        text/javascript js;
        application/json json;
        image/png png;
        application/octet-stream bin;
    }}
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    etag on;
    gzip on;
    gzip_comp_level 5;
    gzip_min_length 1024;
    gzip_http_version 1.1;
    gzip_types text/javascript application/json;
    gzip_vary on;
    gzip_static on;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"#,
        root = root.display()
    );
    let conf_path = write_file(dir.path(), "nginx.conf", conf);
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let up = wait_until(WAIT, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(
        up,
        "nginx did not start: {}",
        std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
    );
    Some(Nginx {
        child,
        port,
        _dir: dir,
    })
}

/// The same requests to nginx and Ringway over the same tree: status, range bytes, decoded
/// bodies, validators and encodings must agree.
#[test]
fn side_by_side_with_nginx() {
    let dir = site();
    tree(dir.path());
    // nginx (as root) runs its worker as nobody: let it read the tree.
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir.path())
        .status();
    let root = dir.path().join("www");
    let config = format!(
        r#"{}
[[vhost]]
name = "site"
domains = ["*"]
doc_root = "www"
compress = ["gzip"]
compress_types = ["text/javascript", "application/json"]
precompressed = ["gzip"]
"#,
        base_config(1)
    );
    let rw = Ringway::builder(config).dir(dir).start();
    let Some(nginx) = start_nginx(&root) else {
        // CI installs it (.ci/run); elsewhere the comparison needs it too.
        assert!(std::env::var_os("CI").is_none(), "nginx is not installed");
        eprintln!("skipping: nginx is not installed");
        return;
    };
    let ours = |args: &[&str], path: &str| {
        let mut a: Vec<&str> = args.to_vec();
        let u = format!("http://127.0.0.1:{}{path}", rw.port());
        a.push(&u);
        curl(&a)
    };
    let theirs = |args: &[&str], path: &str| {
        let mut a: Vec<&str> = args.to_vec();
        let u = format!("http://127.0.0.1:{}{path}", nginx.port);
        a.push(&u);
        curl(&a)
    };
    let decoded = |g: &Got| match g.h("content-encoding") {
        Some("gzip") => gunzip(&g.body),
        _ => g.body.clone(),
    };
    let img_tag = nginx_etag(&root.join("img.png"));
    let lm = "Tue, 14 Nov 2023 22:13:20 GMT";
    let inm = |t: &str| format!("If-None-Match: {t}");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![], "/app.js"),
        (vec![], "/img.png"),
        (vec!["-I".into()], "/app.js"),
        (vec!["-I".into()], "/big.bin"),
        (vec![], "/missing.js"),
        // Validators.
        (vec!["-H".into(), inm(&img_tag)], "/img.png"),
        (vec!["-H".into(), inm(&format!("W/{img_tag}"))], "/img.png"),
        (vec!["-H".into(), inm("\"x\"")], "/img.png"),
        (vec!["-H".into(), inm("*")], "/img.png"),
        (vec!["-z".into(), lm.into()], "/img.png"),
        (
            vec!["-z".into(), "Mon, 13 Nov 2023 00:00:00 GMT".into()],
            "/img.png",
        ),
        (
            vec!["-H".into(), inm("\"x\""), "-z".into(), lm.into()],
            "/img.png",
        ),
        // Ranges.
        (vec!["-r".into(), "0-99".into()], "/img.png"),
        (vec!["-r".into(), "-500".into()], "/img.png"),
        (vec!["-r".into(), "4000-".into()], "/img.png"),
        (vec!["-r".into(), "100000-299999".into()], "/big.bin"),
        (vec!["-r".into(), "5000-".into()], "/img.png"),
        (
            vec![
                "-r".into(),
                "10-19".into(),
                "-H".into(),
                format!("If-Range: {img_tag}"),
            ],
            "/img.png",
        ),
        (
            vec![
                "-r".into(),
                "10-19".into(),
                "-H".into(),
                "If-Range: \"old\"".into(),
            ],
            "/img.png",
        ),
        (
            vec![
                "-r".into(),
                "10-19".into(),
                "-H".into(),
                format!("If-Range: {lm}"),
            ],
            "/img.png",
        ),
        // Encodings.
        (vec!["-H".into(), "Accept-Encoding: gzip".into()], "/app.js"),
        (
            vec!["-H".into(), "Accept-Encoding: gzip".into()],
            "/data.json",
        ),
        (
            vec!["-H".into(), "Accept-Encoding: gzip".into()],
            "/small.js",
        ),
        (
            vec!["-H".into(), "Accept-Encoding: gzip".into()],
            "/img.png",
        ),
        (
            vec!["-H".into(), "Accept-Encoding: gzip".into()],
            "/assets/spa.js",
        ),
        (vec![], "/assets/spa.js"),
        (
            vec![
                "-H".into(),
                "Accept-Encoding: gzip".into(),
                "-r".into(),
                "0-99".into(),
            ],
            "/assets/spa.js",
        ),
        (
            vec![
                "-H".into(),
                "Accept-Encoding: gzip".into(),
                "-r".into(),
                "0-99".into(),
            ],
            "/app.js",
        ),
    ];
    for (args, path) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let a = ours(&args, path);
        let b = theirs(&args, path);
        let what = format!("{args:?} {path}\nringway: {a:?}\nnginx:   {b:?}");
        assert_eq!(a.status, b.status, "status of {what}");
        for field in ["content-range", "content-encoding", "accept-ranges"] {
            assert_eq!(a.h(field), b.h(field), "{field} of {what}");
        }
        let head = args.contains(&"-I");
        if a.status < 400 {
            assert_eq!(a.h("etag"), b.h("etag"), "etag of {what}");
            assert_eq!(a.h("last-modified"), b.h("last-modified"), "date of {what}");
            assert_eq!(
                a.h("content-length"),
                b.h("content-length"),
                "length of {what}"
            );
            // nginx leaves Vary off a HEAD that a GET would vary on; Ringway keeps it.
            if !head {
                assert_eq!(
                    a.h("vary").map(str::to_ascii_lowercase),
                    b.h("vary").map(str::to_ascii_lowercase),
                    "vary of {what}"
                );
            }
            if a.status == 200 {
                assert_eq!(decoded(&a), decoded(&b), "decoded body of {what}");
            }
            let essence = |g: &Got| {
                g.h("content-type")
                    .map(|t| t.split(';').next().unwrap_or_default().to_string())
            };
            // (A 304 from Ringway repeats the type; nginx's does not.)
            if a.status != 304 {
                assert_eq!(essence(&a), essence(&b), "type of {what}");
            }
        }
        if (a.h("content-encoding").is_none() || a.status == 206) && a.status < 400 {
            assert_eq!(a.body, b.body, "raw body of {what}");
        }
    }
    // Same gzip level: the on-the-fly bodies are within a few percent of each other's size.
    let a = ours(&["-H", "Accept-Encoding: gzip"], "/app.js");
    let b = theirs(&["-H", "Accept-Encoding: gzip"], "/app.js");
    let (x, y) = (a.body.len() as f64, b.body.len() as f64);
    assert!((x / y - 1.0).abs() < 0.1, "ringway {x} vs nginx {y} bytes");
}

/// Headless Chromium loads a page whose 100 KiB bundle comes compressed (gzip: Chromium offers
/// br over HTTPS only), runs it, reloads, and gets the bundle from its cache after a 304
/// (`cache_control = "no-cache"` makes it revalidate with the ETag).
#[test]
fn chromium_gets_the_bundle_compressed_then_304_on_reload() {
    let dir = site();
    let mut js = String::new();
    let mut i = 0u64;
    while js.len() < APP_LEN {
        i += 1;
        js.push_str(&format!(
            "function f{}(a, b) {{ return a * {} + b; }}\n",
            i % 997,
            i % 89
        ));
    }
    js.push_str("function bundleCheck(a, b) { return a * 10 + b; }\n");
    js.push_str("window.bundleSum = 'ok-' + bundleCheck(2, 3);\n");
    write_file(dir.path(), "www/app.js", &js);
    write_file(
        dir.path(),
        "www/page.html",
        "<!doctype html><html><body><p id=\"r\">pending</p>\n\
         <script src=\"/app.js\"></script>\n<script>\n\
         const n = Number(sessionStorage.getItem('loads') || 0) + 1;\n\
         sessionStorage.setItem('loads', String(n));\n\
         document.getElementById('r').textContent = 'loads=' + n + ' sum=' + (window.bundleSum || 'none');\n\
         if (n === 1) location.reload();\n\
         </script></body></html>\n",
    );
    let config = format!(
        "{}[log]\naccess = \"access.log\"\n[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\n\
         doc_root = \"www\"\ncompress = [\"br\", \"gzip\"]\ncache_control = \"no-cache\"\n",
        base_config(1)
    );
    let rw = Ringway::builder(config).dir(dir).start();
    let mut dom = String::new();
    for _ in 0..3 {
        let profile = temp_dir();
        let out = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--virtual-time-budget=10000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--dump-dom")
            .arg(format!("http://127.0.0.1:{}/page.html", rw.port()))
            .output()
            .expect("chromium (apt-get install chromium)");
        dom = String::from_utf8_lossy(&out.stdout).into_owned();
        if dom.contains("loads=2") {
            break;
        }
    }
    assert!(dom.contains("loads=2 sum=ok-23"), "{dom}");
    let log = rw.dir_path().join("access.log");
    let mut text = String::new();
    let seen = wait_until(Duration::from_secs(10), || {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("\"GET /app.js HTTP/1.1\" 200")
            && text.contains("\"GET /app.js HTTP/1.1\" 304")
    });
    assert!(seen, "{text}");
    // The 200 went out compressed: far fewer bytes than the file.
    let sent: u64 = text
        .lines()
        .find_map(|l| l.split("\"GET /app.js HTTP/1.1\" 200 ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(
        sent < (APP_LEN / 3) as u64,
        "{sent} bytes sent for the bundle\n{text}"
    );
}
