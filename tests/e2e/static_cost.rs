//! Issue 21's CPU goal for static files, pinned by what the real binary asks of the kernel
//! (strace attached to it): a fresh precompressed variant is served without opening its
//! original; a file of 8 KiB or more goes out by `sendfile` from its offset with no `lseek` to
//! learn it and no `fcntl` per request; and the socket that `sendfile` left non-blocking keeps serving
//! (keep-alive, pipelining, a stalled reader that holds up no one).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// Deterministic, not compressible by accident: the bytes of a mid-size file.
fn pattern(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn set_mtime(path: &Path, secs: u64) {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(secs);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(t))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

const GZ_LEN: usize = 20_000;
const MID_LEN: usize = 30_000;
const BIG_LEN: usize = 8 << 20;

fn start() -> Ringway {
    let dir = site();
    let d = dir.path();
    write_file(d, "www/pre/app.js", pattern(100_000, 1));
    // The variant's bytes go out as they are: they need not be real gzip for this test.
    write_file(d, "www/pre/app.js.gz", pattern(GZ_LEN, 2));
    set_mtime(&d.join("www/pre/app.js"), 1_700_000_000);
    set_mtime(&d.join("www/pre/app.js.gz"), 1_700_000_005);
    write_file(d, "www/mid.bin", pattern(MID_LEN, 3));
    write_file(d, "www/big.bin", pattern(BIG_LEN, 4));
    let config = format!(
        r#"{}
[[vhost]]
name = "site"
domains = ["*"]
doc_root = "www"
[[vhost.context]]
uri = "/pre/"
handler = "static"
precompressed = ["gzip"]
[[vhost.context]]
uri = "/"
handler = "static"
"#,
        base_config(1)
    );
    Ringway::builder(config).dir(dir).start()
}

fn get(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut req = Req::get(path, "site");
    for (k, v) in extra {
        req = req.set(k, v);
    }
    req.bytes()
}

/// strace attached to every thread of `pid`, writing the chosen calls to `out`.
struct Strace {
    child: Child,
    err: std::path::PathBuf,
}

impl Strace {
    /// `None` when strace is missing or may not attach (no ptrace here).
    fn attach(pid: u32, out: &Path) -> Option<Strace> {
        let err = out.with_extension("err");
        let child = Command::new("strace")
            .args(["-f", "-p", &pid.to_string(), "-o"])
            .arg(out)
            .args([
                "-e",
                "trace=openat,openat2,newfstatat,statx,fcntl,lseek,sendfile,sendto,sendmsg,read",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).ok()?)
            .spawn()
            .ok()?;
        let mut s = Strace { child, err };
        // "Process N attached" (one line per thread) once it is in.
        let attached = wait_until(WAIT, || {
            std::fs::read_to_string(&s.err).is_ok_and(|t| t.contains("attached"))
                || s.child.try_wait().ok().flatten().is_some()
        });
        if !attached || s.child.try_wait().ok().flatten().is_some() {
            eprintln!(
                "strace could not attach: {}",
                std::fs::read_to_string(&s.err).unwrap_or_default()
            );
            let _ = s.child.kill();
            let _ = s.child.wait();
            return None;
        }
        // The first request's calls must not be lost to a late attach of some thread.
        std::thread::sleep(Duration::from_millis(300));
        Some(s)
    }

    /// Detaches (SIGINT) and waits for strace to exit.
    fn detach(mut self) {
        // SAFETY: our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn precompressed_and_mid_size_files_cost_few_system_calls() {
    // scripts/install-test-deps.sh installs strace: its absence is a set-up failure.
    assert!(
        Command::new("strace").arg("-V").output().is_ok(),
        "strace is not installed (scripts/install-test-deps.sh installs it)"
    );
    let rw = start();
    let mut conn = rw.conn();
    let gzip = [("Accept-Encoding", "gzip")];
    // Warm-up: the core opens its doc root descriptor on first use.
    conn.send(get("/pre/app.js", &gzip));
    assert_eq!(conn.response().status, 200);

    let tmp = temp_dir();
    let trace = tmp.path().join("trace");
    let Some(strace) = Strace::attach(rw.pid(), &trace) else {
        eprintln!("skipping: strace cannot attach to the ringway process here");
        return;
    };
    let want_gz = pattern(GZ_LEN, 2);
    let want_mid = pattern(MID_LEN, 3);
    for _ in 0..3 {
        conn.send(get("/pre/app.js", &gzip));
        let r = conn.response();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        assert!(r.body == want_gz, "the variant's bytes");
    }
    for _ in 0..3 {
        conn.send(get("/mid.bin", &[]));
        let r = conn.response();
        assert_eq!(r.status, 200);
        assert!(r.body == want_mid, "mid.bin's bytes");
    }
    // A range by sendfile from its offset, then a small one by read.
    conn.send(get("/mid.bin", &[("Range", "bytes=1000-9999")]));
    let r = conn.response();
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 1000-9999/30000"));
    assert!(r.body == want_mid[1000..10000], "the range's bytes");
    conn.send(get("/mid.bin", &[("Range", "bytes=-100")]));
    let r = conn.response();
    assert_eq!(r.status, 206);
    assert!(
        r.body == want_mid[MID_LEN - 100..],
        "the suffix range's bytes"
    );
    strace.detach();

    let text = std::fs::read_to_string(&trace).expect("strace output");
    let lines: Vec<&str> = text.lines().collect();
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    let shown = || text.lines().take(80).collect::<Vec<_>>().join("\n");
    assert_eq!(
        count("\"pre/app.js.gz\""),
        3,
        "one open of the variant per request:\n{}",
        shown()
    );
    assert_eq!(
        count("openat2(") - count("\"pre/app.js.gz\"") - count("\"mid.bin\""),
        0,
        "no other file opened (the original stays closed when its variant is fresh):\n{}",
        shown()
    );
    assert!(
        count("sendfile(") >= 7,
        "the variant (20 KB), mid.bin (30 KB) x3 and the 9,000-byte range by sendfile:\n{}",
        shown()
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("sendfile(") && l.contains("[1000]")),
        "the range from its offset:\n{}",
        shown()
    );
    // Only the two ranges position their file (SEEK_SET, in the policy code); sendfile takes
    // its offset itself: no lseek to learn where the file stands.
    assert_eq!(
        count("SEEK_CUR"),
        0,
        "no lseek to learn the offset:\n{}",
        shown()
    );
    assert_eq!(count("lseek("), 2, "one SEEK_SET per range:\n{}", shown());
    // (A debug build's std also checks each closed descriptor with F_GETFD; not counted.)
    assert!(
        count("F_SETFL") + count("F_GETFL") <= 2,
        "O_NONBLOCK set once per connection, not around every sendfile:\n{}",
        shown()
    );
}

#[test]
fn a_stalled_sendfile_reader_holds_up_no_one_and_its_connection_goes_on() {
    let rw = start();
    let want_big = pattern(BIG_LEN, 4);
    let want_mid = pattern(MID_LEN, 3);
    // A asks for 8 MiB and reads nothing for a while: sendfile fills its socket and waits.
    let mut a = rw.conn();
    a.send(get("/big.bin", &[]));
    std::thread::sleep(Duration::from_millis(300));
    // Meanwhile B, on the same (single) core, is served at once, many times.
    let mut b = rw.conn();
    for _ in 0..20 {
        b.send(get("/mid.bin", &[]));
        let r = b.response();
        assert_eq!(r.status, 200);
        assert!(r.body == want_mid);
    }
    // A reads it all, then keeps using the connection (non-blocking since its first sendfile):
    // one request, then two pipelined ones and a small file.
    let r = a.response();
    assert_eq!(r.status, 200);
    assert!(r.body == want_big, "big.bin's bytes");
    a.send(get("/mid.bin", &[]));
    assert!(a.response().body == want_mid);
    let mut two = get("/mid.bin", &[("Range", "bytes=0-4999")]);
    two.extend(get("/pre/app.js", &[("Accept-Encoding", "gzip")]));
    a.send(two);
    let r = a.response();
    assert_eq!(r.status, 206);
    assert!(r.body == want_mid[..5000]);
    let r = a.response();
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(r.body == pattern(GZ_LEN, 2));
}
