//! Counts heap allocations on Ringway's data path.
//!
//! Runs Ringway's runtime in this process (one core) under a counting global allocator; the
//! backend (`bench-backend`) and the load (`ringway-bench`, `wrk`) run as separate processes,
//! so only Ringway's allocations are counted. The load generator signals this process (SIGUSR1,
//! through `--on-measure`) just before and just after its measured interval; the counter is
//! read at those moments, so connection set-up is excluded from the per-message figure.
//!
//! Usage: alloc-count [--seconds N] [--bin-dir target/release] [--sample N]
//! `--sample N` prints a backtrace (Ringway and glommio frames) of every Nth allocation made
//! during the measured runs, to see where they come from.
//! Prints allocations per echoed WebSocket message (64 conns x 64 B) and per proxied HTTP
//! request (wrk, keep-alive; this one includes wrk's 64 connection set-ups).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Every how many allocations a backtrace is printed (0: never).
static SAMPLE_EVERY: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set while a sample is being taken (taking one allocates).
    static SAMPLING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn maybe_sample(n: u64, size: usize) {
    let every = SAMPLE_EVERY.load(Ordering::Relaxed);
    if every == 0 || !n.is_multiple_of(every) {
        return;
    }
    SAMPLING.with(|busy| {
        if busy.replace(true) {
            return;
        }
        let trace = std::backtrace::Backtrace::force_capture().to_string();
        let frames: Vec<&str> = trace
            .lines()
            .filter(|l| l.contains("ringway::") || l.contains("glommio::") || l.contains(" at ./"))
            .take(12)
            .collect();
        eprintln!("-- allocation of {size} bytes\n{}", frames.join("\n"));
        busy.set(false);
    });
}

// SAFETY: delegates to the system allocator; only adds a relaxed counter increment.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        maybe_sample(ALLOCS.fetch_add(1, Ordering::Relaxed), layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Counter snapshots taken by the SIGUSR1 handler (at most 8).
static SNAPSHOTS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];
static TAKEN: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_usr1(_: libc::c_int) {
    // Async-signal-safe: atomics only.
    let i = TAKEN.fetch_add(1, Ordering::SeqCst);
    if i < SNAPSHOTS.len() {
        SNAPSHOTS[i].store(ALLOCS.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let mut seconds = 5u64;
    let mut bin_dir = String::from("target/release");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--seconds N")
            }
            "--bin-dir" => bin_dir = args.next().expect("--bin-dir DIR"),
            "--sample" => {
                let every = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--sample N");
                SAMPLE_EVERY.store(every, Ordering::Relaxed);
            }
            _ => panic!("unknown argument {a}"),
        }
    }
    // SAFETY: installs a handler that only touches atomics.
    unsafe { libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t) };
    let (backend_port, proxy_port) = (free_port(), free_port());
    let _backend = Kill(
        Command::new(format!("{bin_dir}/bench-backend"))
            .args(["--listen", &format!("127.0.0.1:{backend_port}")])
            .stdout(Stdio::null())
            .spawn()
            .expect("bench-backend (cargo build --release -p ringway-bench)"),
    );
    wait_port(backend_port);
    let dir = std::env::temp_dir().join(format!("ringway-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cfg = dir.join("ringway.toml");
    std::fs::write(
        &cfg,
        format!(
            "[runtime]\ncores = 1\npin = false\n[[listener]]\nname = \"m\"\naddress = \"127.0.0.1:{proxy_port}\"\n\
             [[backend]]\nname = \"app\"\nservers = [\"127.0.0.1:{backend_port}\"]\nkeepalive_per_server = 64\n\
             [[vhost]]\nname = \"v\"\ndomains = [\"*\"]\n[[vhost.websocket]]\nuri = \"/ws\"\nbackend = \"app\"\n\
             [[vhost.context]]\nuri = \"/api/\"\nhandler = \"proxy\"\nbackend = \"app\"\n"
        ),
    )
    .expect("config");
    let config = ringway::config::load(&cfg).expect("valid config");
    std::thread::spawn(move || ringway::runtime::run(config, cfg));
    wait_port(proxy_port);

    let pid = std::process::id();
    let signal = format!("kill -USR1 {pid}");
    let out = Command::new(format!("{bin_dir}/ringway-bench"))
        .args([
            "echo",
            "--url",
            &format!("ws://127.0.0.1:{proxy_port}/ws"),
            "--json",
        ])
        .args([
            "--duration",
            &format!("{seconds}s"),
            "--warmup",
            "1s",
            "--on-measure",
            &signal,
        ])
        .output()
        .expect("ringway-bench");
    let json = String::from_utf8_lossy(&out.stdout);
    let messages: u64 = field(&json, "messages").unwrap_or(0);
    let taken = TAKEN.load(Ordering::SeqCst);
    assert!(
        taken >= 2,
        "the load generator did not signal the measured interval ({json})"
    );
    let during = SNAPSHOTS[1].load(Ordering::SeqCst) - SNAPSHOTS[0].load(Ordering::SeqCst);
    println!(
        "echo: {messages} messages (64 conns x 64 B, {seconds} s): {during} allocations = {:.4} per message",
        during as f64 / messages.max(1) as f64
    );

    let before = ALLOCS.load(Ordering::SeqCst);
    let wrk = Command::new("wrk")
        .args([
            "-t1",
            "-c64",
            &format!("-d{seconds}s"),
            &format!("http://127.0.0.1:{proxy_port}/api/x"),
        ])
        .output();
    let after = ALLOCS.load(Ordering::SeqCst);
    match wrk {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            let requests: u64 = text
                .lines()
                .find_map(|l| {
                    l.trim()
                        .split_once(" requests in")
                        .and_then(|(n, _)| n.trim().parse().ok())
                })
                .unwrap_or(0);
            println!(
                "http: {requests} requests (wrk -c64 keep-alive): {} allocations = {:.4} per request (includes 64 connection set-ups)",
                after - before,
                (after - before) as f64 / requests.max(1) as f64
            );
        }
        Err(e) => println!("http: wrk not run ({e})"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A number field from the generator's one-line JSON.
fn field(json: &str, name: &str) -> Option<u64> {
    let start = json.find(&format!("\"{name}\":"))? + name.len() + 3;
    let rest = &json[start..];
    let end = rest.find([',', '}'])?;
    rest[..end].trim().parse::<f64>().ok().map(|v| v as u64)
}
