//! The static handler: GET/HEAD, Content-Type, index.html, conditional GET, errors, methods,
//! keep-alive and pipelining, and paths that try to leave doc_root.

use std::os::unix::fs::symlink;

use tempfile::TempDir;

use crate::harness::*;

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR-not-really-an-image";
const SECRET: &str = "TOP-SECRET-CONTENT-42";

fn static_site() -> TempDir {
    let dir = site();
    let d = dir.path();
    write_file(d, "www/style.css", "body { color: red }\n");
    write_file(d, "www/data.json", "{\"ok\":true}\n");
    write_file(d, "www/notes.txt", "some notes\n");
    write_file(d, "www/img.png", PNG);
    write_file(d, "www/sub/index.html", "<p>sub index</p>\n");
    write_file(d, "www/a.txt", "AAA");
    write_file(d, "www/b.txt", "BBBB");
    dir
}

fn static_config() -> String {
    format!(
        r#"{}
[[vhost]]
name = "site"
domains = ["*"]
listeners = ["main"]
doc_root = "www"

[[vhost.context]]
uri = "/"
handler = "static"
"#,
        base_config(1)
    )
}

fn start_static() -> Ringway {
    Ringway::builder(static_config()).dir(static_site()).start()
}

#[test]
fn get_serves_files_with_type_length_and_last_modified() {
    let rw = start_static();
    let cases: [(&str, &str, &[u8]); 5] = [
        ("/index.html", "text/html", b"<h1>index</h1>\n"),
        ("/style.css", "text/css", b"body { color: red }\n"),
        ("/data.json", "application/json", b"{\"ok\":true}\n"),
        ("/notes.txt", "text/plain", b"some notes\n"),
        ("/img.png", "image/png", PNG),
    ];
    for (path, ctype, content) in cases {
        let r = request(rw.port(), Req::get(path, "app.test").bytes());
        assert_eq!(r.status, 200, "{path}: {r}");
        assert_eq!(r.body, content, "{path}");
        let got = r
            .header("content-type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(
            got.starts_with(ctype),
            "{path}: Content-Type {got:?}, want {ctype}"
        );
        assert_eq!(
            r.header("content-length"),
            Some(content.len().to_string().as_str()),
            "{path}: {r}"
        );
        let lm = r.header("last-modified").unwrap_or_default();
        assert!(lm.ends_with(" GMT"), "{path}: Last-Modified {lm:?}");
    }
}

#[test]
fn head_has_headers_but_no_body() {
    let rw = start_static();
    let mut c = rw.conn();
    // HEAD then GET in one write: a body after the HEAD response would break the second.
    let mut both = Req::get("/notes.txt", "app.test").bytes();
    both.splice(..3, b"HEAD".iter().copied());
    both.extend(Req::get("/a.txt", "app.test").bytes());
    c.send(both);
    let head = c.head_response();
    assert_eq!(head.status, 200, "{head}");
    assert_eq!(head.header("content-length"), Some("11"), "{head}");
    assert!(head
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
    let get = c.response();
    assert_eq!(get.status, 200, "{get}");
    assert_eq!(get.body_text(), "AAA", "the response after HEAD: {get}");
}

#[test]
fn directory_serves_index_html() {
    let rw = start_static();
    for (path, content) in [("/", "<h1>index</h1>\n"), ("/sub/", "<p>sub index</p>\n")] {
        let r = request(rw.port(), Req::get(path, "app.test").bytes());
        assert_eq!(r.status, 200, "{path}: {r}");
        assert_eq!(r.body_text(), content, "{path}");
        assert!(r
            .header("content-type")
            .is_some_and(|t| t.to_ascii_lowercase().starts_with("text/html")));
    }
}

#[test]
fn if_modified_since_gives_304() {
    let rw = start_static();
    let mut c = rw.conn();
    c.send(Req::get("/notes.txt", "app.test").bytes());
    let r = c.response();
    assert_eq!(r.status, 200, "{r}");
    let lm = r
        .header("last-modified")
        .expect("Last-Modified")
        .to_string();
    c.send(
        Req::get("/notes.txt", "app.test")
            .set("If-Modified-Since", &lm)
            .bytes(),
    );
    let r = c.response();
    assert_eq!(r.status, 304, "If-Modified-Since: {lm}: {r}");
    // A stale date gets the file; on the same connection, so a 304 with a body would show.
    c.send(
        Req::get("/notes.txt", "app.test")
            .set("If-Modified-Since", "Sat, 01 Jan 2000 00:00:00 GMT")
            .bytes(),
    );
    let r = c.response();
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body_text(), "some notes\n");
}

#[test]
fn missing_file_gives_404() {
    let rw = start_static();
    for path in ["/nope.txt", "/sub/missing/", "/sub/nope.html"] {
        let r = request(rw.port(), Req::get(path, "app.test").bytes());
        assert_eq!(r.status, 404, "{path}: {r}");
    }
}

#[test]
fn other_methods_get_405_with_allow() {
    let rw = start_static();
    for method in ["POST", "PUT", "DELETE"] {
        let mut req = Req::get("/notes.txt", "app.test").set("Content-Length", "0");
        req.request_line = format!("{method} /notes.txt HTTP/1.1");
        let r = request(rw.port(), req.bytes());
        assert_eq!(r.status, 405, "{method}: {r}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}: {r}");
    }
}

#[test]
fn keepalive_and_pipelining() {
    let rw = start_static();
    let mut c = rw.conn();
    let mut two = Req::get("/a.txt", "app.test").bytes();
    two.extend(Req::get("/b.txt", "app.test").bytes());
    c.send(two); // two requests, one write
    let first = c.response();
    let second = c.response();
    assert_eq!(
        (first.status, first.body_text()),
        (200, "AAA".to_string()),
        "{first}"
    );
    assert_eq!(
        (second.status, second.body_text()),
        (200, "BBBB".to_string()),
        "{second}"
    );
    // Still open for a third request.
    c.send(Req::get("/a.txt", "app.test").bytes());
    let third = c.response();
    assert_eq!(third.status, 200, "{third}");
    assert_eq!(third.body_text(), "AAA");
    // `Connection: close` ends it after the response.
    c.send(
        Req::get("/b.txt", "app.test")
            .set("Connection", "close")
            .bytes(),
    );
    let last = c.response();
    assert_eq!(last.status, 200, "{last}");
    assert_eq!(last.body_text(), "BBBB");
    c.assert_closed("after Connection: close");
}

fn assert_refused(rw: &Ringway, path: &str, statuses: &[u16]) {
    let mut c = rw.conn();
    c.send(format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n"));
    let r = c.response();
    assert!(
        !r.body_text().contains(SECRET),
        "{path} served the file outside doc_root: {r}"
    );
    assert!(
        statuses.contains(&r.status),
        "{path}: want one of {statuses:?}, got {r}"
    );
}

#[test]
fn dot_dot_traversal_refused() {
    let dir = static_site();
    write_file(dir.path(), "secret.txt", SECRET);
    let rw = Ringway::builder(static_config()).dir(dir).start();
    for path in [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/sub/..%2f..%2fsecret.txt",
    ] {
        assert_refused(&rw, path, &[403, 404]);
    }
    // A backslash is no separator on Unix: `..\secret.txt` is one (missing) name. Outside the
    // contract's `..` rule, so a 400 for an odd target is fine too; the content never is.
    assert_refused(&rw, "/..%5csecret.txt", &[400, 403, 404]);
}

#[test]
fn symlinks_out_of_doc_root_refused() {
    let dir = static_site();
    let secret = write_file(dir.path(), "secret.txt", SECRET);
    let www = dir.path().join("www");
    symlink("../secret.txt", www.join("leak.txt")).unwrap();
    symlink(&secret, www.join("abs-leak.txt")).unwrap();
    symlink("..", www.join("updir")).unwrap();
    let rw = Ringway::builder(static_config()).dir(dir).start();
    for path in ["/leak.txt", "/abs-leak.txt", "/updir/secret.txt"] {
        assert_refused(&rw, path, &[403, 404]);
    }
}
