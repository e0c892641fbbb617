//! Production hardening (issue 20 §1, §2, §5, §6): a start that cannot work fails with one
//! clear line (io_uring blocked by seccomp, a second instance on the same address), the
//! descriptor limit, `ringway check` accepting exactly what a start accepts, dropping root to
//! `[runtime] user`, the systemd unit, and the shipped examples.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

use crate::harness::*;

/// `[[listener]] main` on `port` and a `*` vhost serving `www`, with `extra` appended.
fn plain(port: u16, extra: &str) -> String {
    format!(
        "[runtime]\ncores = 1\npin = false\n\n[[listener]]\nname = \"main\"\n\
         address = \"127.0.0.1:{port}\"\n\n[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\n\
         doc_root = \"www\"\n{extra}"
    )
}

/// A started process with its stderr in a file.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn log(&self) -> String {
        strip_ansi(&fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Waits for "ringway ready" (`Ok`) or an exit (`Err(status)`).
    fn ready(&mut self) -> Result<(), ExitStatus> {
        let mut exited = None;
        let ok = wait_until(WAIT * 2, || {
            if let Ok(Some(s)) = self.child.try_wait() {
                exited = Some(s);
                return true;
            }
            self.log().contains("ringway ready")
        });
        assert!(ok, "neither ready nor exited:\n{}", self.log());
        match exited {
            Some(s) => Err(s),
            None => Ok(()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `ringway --config CONFIG` with stderr to `dir/NAME.log`; `pre` runs in the child
/// before exec.
fn spawn(
    dir: &Path,
    config: &Path,
    name: &str,
    pre: impl FnMut() -> io::Result<()> + Send + Sync + 'static,
) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let mut cmd = Command::new(bin());
    cmd.arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap());
    // SAFETY: `pre` makes only async-signal-safe calls (prctl, setrlimit).
    unsafe {
        cmd.pre_exec(pre);
    }
    Proc {
        child: cmd.spawn().expect("spawn ringway"),
        log,
    }
}

fn no_pre() -> io::Result<()> {
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// §1: start-up that fails clearly

/// A seccomp filter that makes `io_uring_setup` (425) fail with EPERM and allows the rest,
/// as Docker's and Kubernetes' default profiles do.
fn deny_io_uring_setup() -> io::Result<()> {
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let filter = [
        f(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        f(JEQ_K, 0, 3, ARCH), // another ABI: allow
        f(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        f(JEQ_K, 0, 1, 425),  // io_uring_setup
        f(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        f(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: plain prctl calls; `prog` points at `filter`, alive for the call.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[test]
fn io_uring_blocked_by_seccomp_is_one_line_and_exit_1() {
    let dir = site();
    let config = write_file(dir.path(), "ringway.toml", plain(free_port(), ""));
    let mut p = spawn(dir.path(), &config, "start", deny_io_uring_setup);
    let status = p
        .ready()
        .expect_err("ringway must not start without io_uring");
    let log = p.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert_eq!(
        log.trim_end(),
        "io_uring is not available (io_uring_setup: EPERM): a seccomp profile or \
         kernel.io_uring_disabled blocks it; see README \"Containers\"",
        "want exactly one line, no panic, no backtrace"
    );
    // `check` needs no io_uring: it still works under the same filter.
    let mut cmd = Command::new(bin());
    cmd.args(["check", "--config"])
        .arg(&config)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    // SAFETY: as in `spawn`.
    let out = unsafe { cmd.pre_exec(deny_io_uring_setup) }
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_second_instance_on_the_same_address_fails_and_leaves_the_pid_file() {
    let dir = site();
    let config = base_config(1).replace(
        "pin = false\n",
        "pin = false\npid_file = \"@DIR@/ringway.pid\"\n",
    ) + "\n[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n";
    let rw = Ringway::builder(config).dir(dir).start();
    let pid_file = rw.dir_path().join("ringway.pid");
    assert!(wait_until(WAIT, || fs::read_to_string(&pid_file)
        .is_ok_and(|t| t.trim() == rw.pid().to_string())));
    let config_path = rw.config_path();
    let (status, _, stderr) = run_cli(&["--config", config_path.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    let addr = format!("127.0.0.1:{}", rw.port());
    assert!(
        stderr.contains("address already in use") && stderr.contains(&addr),
        "want `address already in use` naming {addr}:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        fs::read_to_string(&pid_file).unwrap().trim(),
        rw.pid().to_string(),
        "the pid file still names the first instance"
    );
    // The first one still serves, alone.
    let resp = request(
        rw.port(),
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 200);

    // `reload` refuses a pid file that names something else (and signals nothing).
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    fs::write(&pid_file, format!("{}\n", sleeper.id())).unwrap();
    let (status, _, stderr) = run_cli(&["reload", "--config", config_path.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not a ringway"), "{stderr}");
    thread::sleep(Duration::from_millis(200));
    assert!(
        sleeper.try_wait().unwrap().is_none(),
        "the process named by the pid file was signalled"
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let (status, _, stderr) = run_cli(&["upgrade", "--config", config_path.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no process") || stderr.contains("is not a ringway"),
        "{stderr}"
    );
    // With the right pid, reload works.
    fs::write(&pid_file, format!("{}\n", rw.pid())).unwrap();
    let (status, stdout, stderr) = run_cli(&["reload", "--config", config_path.to_str().unwrap()]);
    assert!(status.success(), "{stdout}{stderr}");
    assert!(
        rw.wait_log("configuration reloaded", 1, WAIT),
        "{}",
        rw.log()
    );
}

fn limits_of(pid: u32) -> (u64, u64) {
    let text = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

#[test]
fn nofile_soft_limit_is_raised_to_hard_and_a_short_limit_warned_once() {
    let nofile = |soft: u64, hard: u64| {
        move || {
            let l = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            // SAFETY: setrlimit reads one rlimit.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) } == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        }
    };
    let dir = site();
    // 2 cores × 1000 × 2 = 4000 descriptors wanted; the hard limit is 3000.
    let config = write_file(
        dir.path(),
        "short.toml",
        plain(free_port(), "").replace("cores = 1", "cores = 2\nmax_connections = 1000"),
    );
    let mut p = spawn(dir.path(), &config, "short", nofile(256, 3000));
    p.ready().unwrap_or_else(|s| panic!("{s}: {}", p.log()));
    assert_eq!(limits_of(p.child.id()), (3000, 3000), "soft raised to hard");
    let log = p.log();
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("RLIMIT_NOFILE"))
        .collect();
    assert_eq!(warned.len(), 1, "{log}");
    assert!(
        warned[0].contains("WARN") && warned[0].contains("3000") && warned[0].contains("4000"),
        "{log}"
    );
    drop(p);
    // Enough descriptors: no warning.
    let config = write_file(
        dir.path(),
        "enough.toml",
        plain(free_port(), "").replace("cores = 1", "cores = 1\nmax_connections = 100"),
    );
    let mut p = spawn(dir.path(), &config, "enough", nofile(256, 3000));
    p.ready().unwrap_or_else(|s| panic!("{s}: {}", p.log()));
    assert_eq!(limits_of(p.child.id()), (3000, 3000));
    assert!(!p.log().contains("RLIMIT_NOFILE"), "{}", p.log());
}

// ---------------------------------------------------------------------------------------------
// §2: `check` accepts exactly what start accepts

/// A self-signed certificate for `localhost` and its key, as PEM.
fn cert_and_key() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Files the corpus configs name: a good cert and key, another key, garbage, a users file.
fn corpus_dir() -> tempfile::TempDir {
    let dir = site();
    let (cert, key) = cert_and_key();
    let (_, other_key) = cert_and_key();
    write_file(dir.path(), "tls/site.pem", cert);
    write_file(dir.path(), "tls/site.key", key);
    write_file(dir.path(), "tls/other.key", other_key);
    write_file(dir.path(), "tls/garbage.pem", "this is not PEM\n");
    write_file(dir.path(), "users", "alice:secret\n");
    write_file(dir.path(), "users-bad", "no colon on this line\n");
    write_file(dir.path(), "a-file", "x");
    fs::create_dir_all(dir.path().join("logdir-is-a-dir")).unwrap();
    dir
}

/// (name, extra config appended to `plain`, what `check` must say).
fn corpus() -> Vec<(&'static str, String, &'static str)> {
    let tls = |cert: &str, key: &str| {
        format!("[vhost.tls]\ncert = \"tls/{cert}\"\nkey = \"tls/{key}\"\n")
    };
    let second = |domains: &str| {
        format!("\n[[vhost]]\nname = \"other\"\ndomains = [{domains}]\ndoc_root = \"www\"\n")
    };
    vec![
        (
            "a key that does not match its certificate",
            tls("site.pem", "other.key"),
            "does not match",
        ),
        (
            "a certificate file that is not PEM",
            tls("garbage.pem", "site.key"),
            "garbage.pem",
        ),
        (
            "a key file that is not PEM",
            tls("site.pem", "garbage.pem"),
            "garbage.pem",
        ),
        (
            "OCSP stapling without an issuer",
            format!(
                "{}[vhost.tls.ocsp]\nenabled = true\n",
                tls("site.pem", "site.key")
            ),
            "issuer",
        ),
        (
            "a backend CA file with no certificate",
            "[[vhost.context]]\nuri = \"/api/\"\nhandler = \"proxy\"\nbackend = \"api\"\n\n\
             [[backend]]\nname = \"api\"\nservers = [\"tls://127.0.0.1:9\"]\n\
             tls = { ca_file = \"tls/garbage.pem\" }\n"
                .to_string(),
            "garbage.pem",
        ),
        ("a missing doc_root", String::new(), "does not exist"),
        (
            "a doc_root that is a file",
            String::new(),
            "is not a directory",
        ),
        (
            "an access log in a missing directory",
            "\n[log]\naccess = \"no-such-dir/access.log\"\n".to_string(),
            "does not exist",
        ),
        (
            "an access log that is a directory",
            "\n[log]\naccess = \"logdir-is-a-dir\"\n".to_string(),
            "logdir-is-a-dir",
        ),
        (
            "a malformed users_file",
            "[[vhost.context]]\nuri = \"/\"\nhandler = \"connect\"\nallow = [\"*:443\"]\n\
             auth = { users_file = \"users-bad\" }\n"
                .to_string(),
            "users-bad",
        ),
        ("two * vhosts", second("\"*\""), "already served by vhost"),
        (
            "one domain in two vhosts",
            second("\"example.com\"")
                + &second("\"EXAMPLE.com\"").replace("\"other\"", "\"third\""),
            "already served by vhost \"other\"",
        ),
        (
            "a bad regex",
            "[[vhost.context]]\nuri = \"exp:^/room/[0-9+$\"\nhandler = \"echo\"\n".to_string(),
            "unclosed character class",
        ),
        (
            "an unknown user",
            String::new(),
            "no user \"no-such-user-ringway\"",
        ),
    ]
}

/// What `start` does with a config: exit status, or 0 once it serves (then it is stopped).
fn start_outcome(dir: &Path, config: &Path, name: &str) -> (i32, String) {
    let mut p = spawn(dir, config, name, no_pre);
    match p.ready() {
        Ok(()) => (0, p.log()),
        Err(status) => (status.code().unwrap_or(-1), p.log()),
    }
}

#[test]
fn check_exits_1_if_and_only_if_start_exits_1() {
    let dir = corpus_dir();
    let mut cases = corpus();
    for (name, extra, want) in cases.drain(..) {
        let mut text = plain(free_port(), &extra);
        match name {
            "a missing doc_root" => {
                text = text.replace("doc_root = \"www\"", "doc_root = \"nope\"")
            }
            "a doc_root that is a file" => {
                text = text.replace("doc_root = \"www\"", "doc_root = \"a-file\"")
            }
            "an unknown user" => {
                text = text.replace(
                    "pin = false",
                    "pin = false\nuser = \"no-such-user-ringway\"",
                )
            }
            _ => {}
        }
        let config = write_file(dir.path(), "broken.toml", &text);
        let (status, _, stderr) = run_cli(&["check", "--config", config.to_str().unwrap()]);
        let (start, log) = start_outcome(dir.path(), &config, "broken");
        assert_eq!(
            (status.code(), start),
            (Some(1), 1),
            "{name}: check and start must both refuse it\nconfig:\n{text}\ncheck:\n{stderr}\nstart:\n{log}"
        );
        assert!(
            stderr.contains(want),
            "{name}: check must say {want:?}:\n{stderr}"
        );
        assert!(!log.contains("panicked"), "{name}: {log}");
    }
    // And good ones both accept: TLS with a matching key, a users file, a log file, a
    // shadowed route (a warning, not an error).
    let good = [
        (
            "tls",
            "[vhost.tls]\ncert = \"tls/site.pem\"\nkey = \"tls/site.key\"\n".to_string(),
        ),
        (
            "connect",
            "[[vhost.context]]\nuri = \"/\"\nhandler = \"connect\"\nallow = [\"*:443\"]\n\
             auth = { users_file = \"users\" }\n[log]\naccess = \"access.log\"\n"
                .to_string(),
        ),
        (
            "shadowed",
            "[[vhost.context]]\nuri = \"/a/\"\nhandler = \"echo\"\n\
             [[vhost.context]]\nuri = \"/a/\"\nhandler = \"static\"\n"
                .to_string(),
        ),
    ];
    for (name, extra) in good {
        let text = plain(free_port(), &extra);
        let config = write_file(dir.path(), "good.toml", &text);
        let (status, stdout, stderr) = run_cli(&["check", "--config", config.to_str().unwrap()]);
        let (start, log) = start_outcome(dir.path(), &config, "good");
        assert_eq!(
            (status.code(), start),
            (Some(0), 0),
            "{name}: both must accept it\n{text}\ncheck:\n{stdout}{stderr}\nstart:\n{log}"
        );
    }
    // `check` made no access log (it checks the directory only).
    let _ = fs::remove_file(dir.path().join("access.log"));
    let text = plain(free_port(), "[log]\naccess = \"fresh.log\"\n");
    let config = write_file(dir.path(), "fresh.toml", &text);
    let (status, _, stderr) = run_cli(&["check", "--config", config.to_str().unwrap()]);
    assert!(status.success(), "{stderr}");
    assert!(
        !dir.path().join("fresh.log").exists(),
        "check created the log"
    );
}

#[test]
fn check_warns_about_routes_that_can_never_match_and_exits_0() {
    let dir = site();
    let text = plain(
        free_port(),
        "[[vhost.context]]\nuri = \"/\"\nhandler = \"static\"\n\
         [[vhost.context]]\nuri = \"exp:^/room/[0-9]+$\"\nhandler = \"echo\"\n\
         [[vhost.context]]\nuri = \"/api/\"\nhandler = \"echo\"\n\
         [[vhost.context]]\nuri = \"/api/\"\nhandler = \"static\"\n\
         [[vhost.websocket]]\nuri = \"/chat\"\naddress = \"127.0.0.1:9\"\n\
         [[vhost.websocket]]\nuri = \"/chat\"\naddress = \"127.0.0.1:10\"\n",
    );
    let config = write_file(dir.path(), "ringway.toml", &text);
    let file = config.to_str().unwrap();
    let (status, stdout, stderr) = run_cli(&["check", "--config", file]);
    assert!(status.success(), "{stdout}{stderr}");
    let warnings: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        warnings,
        [
            format!("{file}:17:7: warning: this [[vhost.context]] can never match: the [[vhost.context]] at line 14 (uri \"/\") matches every path, and regexes are tried after every prefix"),
            format!("{file}:23:7: warning: this [[vhost.context]] can never match: the [[vhost.context]] at line 20 has the same uri \"/api/\" and wins"),
            format!("{file}:29:7: warning: this [[vhost.websocket]] can never match: the [[vhost.websocket]] at line 26 has the same uri \"/chat\" and wins"),
        ],
        "{stderr}"
    );
    // A bad regex: the regex parser's own words and where, not "error parsing pattern 0".
    let bad = text.replace("[0-9]+$", "(?P<n>[0-9]+$");
    fs::write(&config, bad).unwrap();
    let (status, _, stderr) = run_cli(&["check", "--config", file]);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains(&format!(
            "{file}:17:7: invalid regex \"^/room/(?P<n>[0-9]+$\": unclosed group (at character 8: \"(\")"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("pattern 0"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// §5: least privilege

fn status_field(pid: u32, key: &str) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn runtime_user_drops_root_before_serving() {
    // SAFETY: a plain getter.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED runtime_user_drops_root_before_serving: needs root to drop it");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = site();
    // tempfile's 0700 would keep `nobody` out of the doc_root and the config.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let config = base_config(2).replace("pin = false", "pin = false\nuser = \"nobody\"")
        + "\n[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n";
    let rw = Ringway::builder(config).dir(dir).start();
    let pid = rw.pid();
    let nobody = run_id(&["-u", "nobody"]);
    let group = run_id(&["-g", "nobody"]);
    assert_eq!(
        status_field(pid, "Uid:"),
        [nobody.as_str(); 4].join(" "),
        "{}",
        rw.log()
    );
    assert_eq!(status_field(pid, "Gid:"), [group.as_str(); 4].join(" "));
    assert_eq!(status_field(pid, "Groups:"), group);
    for cap in ["CapEff:", "CapPrm:", "CapAmb:"] {
        assert_eq!(status_field(pid, cap), "0000000000000000", "{cap}");
    }
    // Every thread, not only the main one.
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let text = fs::read_to_string(task.join("status")).unwrap_or_default();
        let uid = text.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
        assert!(
            uid.split_whitespace().skip(1).all(|u| u == nobody),
            "{}: {uid}",
            task.display()
        );
    }
    let resp = request(
        rw.port(),
        "GET /index.html HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 200, "{}", rw.log());
    // A reload reads the files as that user.
    rw.signal(libc::SIGHUP);
    assert!(
        rw.wait_log("configuration reloaded", 1, WAIT),
        "{}",
        rw.log()
    );
}

fn run_id(args: &[&str]) -> String {
    let out = Command::new("id").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ringway.service");
    let text = fs::read_to_string(&unit).unwrap();
    for want in [
        "User=ringway",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "LimitNOFILE=",
    ] {
        assert!(text.contains(want), "the unit must set {want}");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED systemd-analyze verify: systemd-analyze is not installed");
        return;
    }
    // The unit names /usr/bin/ringway (where the package puts it); verify a copy that names
    // this build instead (verify checks that ExecStart= is executable). The man page is the
    // package's, so that check is left out.
    let dir = temp_dir();
    let copy = dir.path().join("ringway.service");
    fs::write(&copy, text.replace("/usr/bin/ringway", bin())).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        !stderr.contains("ringway.service:"),
        "warnings about the unit: {stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// §6: examples

/// Each `examples/*.toml` passes `ringway check` (in a copy of the folder, with the test
/// certificates and keys they name made there).
#[test]
fn every_example_passes_check() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let dir = temp_dir();
    let mut n = 0;
    copy_tree(&src, dir.path());
    let (cert, key) = cert_and_key();
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            for (k, content) in [("cert = \"", &cert), ("key = \"", &key)] {
                if let Some(rest) = line.strip_prefix(k) {
                    let rel = rest.split('"').next().unwrap();
                    write_file(dir.path(), rel, content);
                }
            }
        }
        let (status, stdout, stderr) = run_cli(&["check", "--config", path.to_str().unwrap()]);
        assert!(
            status.success() && stdout.contains(": ok"),
            "{}: {stdout}{stderr}",
            path.display()
        );
        assert!(!stderr.contains("warning"), "{}: {stderr}", path.display());
        n += 1;
    }
    assert!(n >= 4, "want at least four examples, found {n}");
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// §1: the container profile

/// Every system call Ringway makes through start, static and admin requests, a WebSocket echo,
/// a reload, a log reopen and a drain is allowed by `config/seccomp.json` (traced by strace).
#[test]
fn seccomp_profile_allows_every_system_call_ringway_makes() {
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/seccomp.json");
    let text = fs::read_to_string(&profile).unwrap();
    assert!(
        text.contains("\"defaultAction\": \"SCMP_ACT_ERRNO\""),
        "deny by default"
    );
    let allowed: Vec<String> = text
        .split("\"names\": [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap()
        .split(',')
        .map(|n| n.trim().trim_matches('"').to_string())
        .collect();
    for need in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
        assert!(allowed.iter().any(|a| a == need), "{need} must be allowed");
    }
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("SKIPPED the trace part: strace is not installed");
        return;
    }
    let dir = site();
    let port = free_port();
    let admin = free_port();
    let config = write_file(
        dir.path(),
        "ringway.toml",
        plain(
            port,
            "[[vhost.context]]\nuri = \"/echo\"\nhandler = \"echo\"\n\
             [[vhost.context]]\nuri = \"/\"\nhandler = \"static\"\n",
        )
        .replace("cores = 1", "cores = 2")
        .replace(
            "[[vhost]]",
            &format!(
                "[[listener]]\nname = \"admin\"\naddress = \"127.0.0.1:{admin}\"\n\
                 [admin]\nlistener = \"admin\"\n[log]\naccess = \"access.log\"\n\n[[vhost]]\n\
                 listeners = [\"main\"]"
            ),
        ),
    );
    let trace = dir.path().join("trace.txt");
    let log = dir.path().join("strace.log");
    let mut child = Command::new("strace")
        .args(["-f", "-qq", "-c", "-o"])
        .arg(&trace)
        .arg(bin())
        .arg("--config")
        .arg(&config)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read_log = || fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(WAIT * 3, || read_log().contains("ringway ready")),
        "{}",
        read_log()
    );
    let resp = request(
        port,
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    let resp = request(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    let (mut ws, _) =
        tungstenite::connect(format!("ws://127.0.0.1:{port}/echo")).expect("echo upgrade");
    ws.send(tungstenite::Message::text("hello")).unwrap();
    assert_eq!(ws.read().unwrap().into_text().unwrap().as_str(), "hello");
    drop(ws);
    // The traced process is strace's child.
    let pid = wait_pid_of_child(child.id());
    // SAFETY: signals to the Ringway process this test started.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    assert!(wait_until(WAIT, || read_log().contains("configuration reloaded")));
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    assert!(wait_until(WAIT, || read_log().contains("reopening")));
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut exited = false;
    assert!(wait_until(WAIT * 2, || {
        exited = child.try_wait().unwrap().is_some();
        exited
    }));
    let summary = fs::read_to_string(&trace).unwrap();
    let made: Vec<&str> = summary
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().last())
        .filter(|n| *n != "total" && !n.starts_with('-'))
        .collect();
    assert!(made.contains(&"io_uring_enter"), "{summary}");
    let missing: Vec<&&str> = made
        .iter()
        .filter(|n| !allowed.iter().any(|a| a == *n))
        .collect();
    assert!(
        missing.is_empty(),
        "config/seccomp.json does not allow {missing:?}"
    );
}

/// The pid of `parent`'s first child (strace's tracee).
fn wait_pid_of_child(parent: u32) -> i32 {
    let mut pid = 0;
    assert!(wait_until(WAIT, || {
        let children = fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .unwrap_or_default();
        pid = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        pid != 0
    }));
    pid
}
