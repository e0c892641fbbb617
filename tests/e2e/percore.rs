//! Per-core tuning (`[[runtime.core]]`: `cpu`, `listeners`, `ring_entries`, `read_buffer`):
//! which core accepts on which listener (per-core metrics), the CPU each core's threads may run
//! on (/proc/PID/task/*/status), each core's io_uring size (/proc/PID/fdinfo), tunnels through a
//! small read buffer, the start-up lines, the dashboard's JSON, `ringway check`'s errors and a
//! reload that changes them.

use std::fs;
use std::path::Path;

use tungstenite::Message;

use crate::backend::EchoBackend;
use crate::harness::*;
use crate::operations::{get, scrape, sum};

/// The CPUs this test process may run on (as Ringway's children inherit them).
fn allowed_cpus() -> Vec<usize> {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

/// Two cores: core 0 accepts on "main" only (pinned to `cpu0`, 4 KiB reads), core 1 on
/// "admin" only (pinned to `cpu1`, 256-entry rings, 64 KiB reads, 300 connections).
fn two_core_config(cpu0: usize, cpu1: usize, echo: &str, extra: &str) -> String {
    let head = format!(
        r#"[runtime]
cores = 2
pin = false

[[runtime.core]]
id = 0
cpu = {cpu0}
listeners = ["main"]
read_buffer = "4KiB"

[[runtime.core]]
id = 1
cpu = {cpu1}
listeners = ["admin"]
ring_entries = 256
read_buffer = "64KiB"
max_connections = 300

[timeouts]
header = "60s"
keepalive = "60s"

[[listener]]
name = "main"
address = "127.0.0.1:@PORT@"

[[listener]]
name = "admin"
address = "127.0.0.1:@PORT1@"

[admin]
listener = "admin"
"#
    );
    format!("{}{extra}", ws_site(&head, echo))
}

/// Connections `core` accepted on `listener`, from a metrics scrape.
fn accepted_on(m: &[(String, f64)], core: &str, listener: &str) -> f64 {
    sum(
        m,
        "ringway_connections_total",
        &[
            &format!("core=\"{core}\""),
            &format!("listener=\"{listener}\""),
        ],
    )
}

/// The CPUs each `ringway-core-N` thread may run on: (N, Cpus_allowed_list), one per thread.
fn core_threads(pid: u32) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let comm = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let Some(rest) = comm.trim().strip_prefix("ringway-core-") else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let status = fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap_or_default()
            .trim()
            .to_string();
        out.push((digits.parse().unwrap(), allowed));
    }
    out
}

/// The submission-queue sizes of the process's io_uring instances (fdinfo's `SqMask` + 1).
fn ring_sizes(pid: u32) -> Vec<usize> {
    let mut out = Vec::new();
    for fd in fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let info = fs::read_to_string(fd.path()).unwrap_or_default();
        if let Some(mask) = info.lines().find_map(|l| l.strip_prefix("SqMask:")) {
            let mask = mask.trim().trim_start_matches("0x");
            out.push(usize::from_str_radix(mask, 16).unwrap() + 1);
        }
    }
    out.sort();
    out
}

#[test]
fn the_admin_listener_on_one_core_pinned_cores_and_their_settings_shown() {
    let cpus = allowed_cpus();
    // The last allowed CPU for core 0 and the first for core 1: crossed over against the
    // default pinning (core i on the i-th CPU) whenever there are two.
    let (cpu0, cpu1) = (cpus[cpus.len() - 1], cpus[0]);
    let echo = EchoBackend::tcp_v4();
    let rw = Ringway::builder(two_core_config(cpu0, cpu1, &echo.config_addr, ""))
        .dir(site())
        .start();
    let (main, admin) = (rw.port(), rw.port_n(1));

    // The start-up lines: each core's own settings and only its listeners.
    let log = rw.log();
    let line0 = format!(
        "core=0 cpu={cpu0} listeners=main@127.0.0.1:{main} ring_entries=128 read_buffer=4KiB \
         max_connections=50000"
    );
    let line1 = format!(
        "core=1 cpu={cpu1} listeners=admin@127.0.0.1:{admin} ring_entries=256 \
         read_buffer=64KiB max_connections=300"
    );
    assert!(log.contains(&line0), "{line0}\nnot in\n{log}");
    assert!(log.contains(&line1), "{line1}\nnot in\n{log}");

    // Accepts: every connection to "main" lands on core 0, every one to "admin" on core 1.
    for _ in 0..20 {
        assert_eq!(get(main, "/index.html").status, 200);
    }
    for _ in 0..5 {
        assert_eq!(get(admin, "/metrics").status, 200);
    }
    // A tunnel through core 0's 4 KiB read buffer moves a 200 KiB message whole, both ways.
    let (mut ws, _) = ws_connect(main, rw.ws_url("/chat/bulk").as_str());
    let big: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    for _ in 0..3 {
        ws.send(Message::binary(big.clone())).unwrap();
        assert_eq!(ws_next(&mut ws), Message::binary(big.clone()));
    }
    ws_close(&mut ws);
    let m = scrape(admin);
    let accepted = |core: &str, listener: &str| accepted_on(&m, core, listener);
    assert_eq!(accepted("0", "main"), 21.0, "{m:?}");
    assert_eq!(accepted("1", "main"), 0.0, "{m:?}");
    assert_eq!(accepted("0", "admin"), 0.0, "{m:?}");
    assert_eq!(accepted("1", "admin"), 6.0, "{m:?}");
    // The tunnel's bytes went through core 0.
    assert!(
        sum(
            &m,
            "ringway_bytes_total",
            &["core=\"0\"", "direction=\"in\""]
        ) > 600e3
    );

    // Pinning: every thread of core N may run only on its CPU.
    let threads = core_threads(rw.pid());
    assert!(threads.iter().any(|(n, _)| *n == 0), "{threads:?}");
    assert!(threads.iter().any(|(n, _)| *n == 1), "{threads:?}");
    for (n, allowed) in &threads {
        let want = if *n == 0 { cpu0 } else { cpu1 };
        assert_eq!(allowed, &want.to_string(), "core {n}: {threads:?}");
    }

    // Ring sizes: core 1's rings have 256 entries, core 0's the default 128 (the same number
    // of rings each).
    let sizes = ring_sizes(rw.pid());
    let (small, large) = (
        sizes.iter().filter(|&&s| s == 128).count(),
        sizes.iter().filter(|&&s| s == 256).count(),
    );
    assert!(small > 0 && small == large, "{sizes:?}");

    // The dashboard's JSON carries each core's settings.
    let url = format!("ws://127.0.0.1:{admin}/live");
    let (mut live, _) = ws_connect(admin, url.as_str());
    let text = ws_next(&mut live).into_text().unwrap().to_string();
    ws_close(&mut live);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cores = v["cores"].as_array().unwrap();
    assert_eq!(cores.len(), 2, "{text}");
    let settings = |i: usize| cores.iter().find(|c| c["core"] == i).unwrap()["settings"].clone();
    assert_eq!(
        settings(0),
        serde_json::json!({"cpu": cpu0, "listeners": ["main"], "ring_entries": 128,
            "read_buffer": 4096, "max_connections": 50000}),
        "{text}"
    );
    assert_eq!(
        settings(1),
        serde_json::json!({"cpu": cpu1, "listeners": ["admin"], "ring_entries": 256,
            "read_buffer": 65536, "max_connections": 300}),
        "{text}"
    );

    // The dashboard page shows them in its cores table (headless Chromium runs its script).
    let profile = temp_dir();
    let dom = chromium_dump_dom(profile.path(), &format!("http://127.0.0.1:{admin}/"), &[]);
    let row = |core: usize| {
        let at = dom
            .find(&format!("data-core=\"{core}\""))
            .unwrap_or_else(|| panic!("no row for core {core}:\n{dom}"));
        let end = dom[at..].find("</tr>").unwrap() + at;
        dom[at..end].to_string()
    };
    let (row0, row1) = (row(0), row(1));
    for cell in [
        format!("c-cpu\">{cpu0}<"),
        "c-listeners\">main<".to_string(),
        "c-ring\">128<".to_string(),
        "c-readbuf\">4KiB<".to_string(),
        "c-maxconns\">50000<".to_string(),
    ] {
        assert!(row0.contains(&cell), "{cell} not in {row0}");
    }
    for cell in [
        format!("c-cpu\">{cpu1}<"),
        "c-listeners\">admin<".to_string(),
        "c-ring\">256<".to_string(),
        "c-readbuf\">64KiB<".to_string(),
        "c-maxconns\">300<".to_string(),
    ] {
        assert!(row1.contains(&cell), "{cell} not in {row1}");
    }
}

#[test]
fn without_entries_every_core_accepts_everywhere_on_its_default_cpu() {
    let cpus = allowed_cpus();
    let config = base_config(2).replace("pin = false", "pin = true")
        + "[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\ndoc_root = \"www\"\n";
    let rw = Ringway::builder(config).dir(site()).start();
    let log = rw.log();
    for id in 0..2 {
        let line = format!(
            "core={id} cpu={} listeners=main@127.0.0.1:{} ring_entries=128 read_buffer=256KiB \
             max_connections=50000",
            cpus[id % cpus.len()],
            rw.port()
        );
        assert!(log.contains(&line), "{line}\nnot in\n{log}");
    }
}

fn check(dir: &Path, text: &str) -> (Option<i32>, String, String) {
    fs::create_dir_all(dir.join("www")).unwrap();
    let file = dir.join("ringway.toml");
    fs::write(&file, text).unwrap();
    let file = file.to_str().unwrap().to_string();
    let (status, _stdout, stderr) = run_cli(&["check", "--config", &file]);
    (status.code(), file, stderr)
}

/// 1-based line and column of the first `token` in `text`.
fn locate(text: &str, token: &str) -> (usize, usize) {
    let at = text.find(token).unwrap();
    let line = text[..at].matches('\n').count() + 1;
    let col = at - text[..at].rfind('\n').map_or(0, |nl| nl + 1) + 1;
    (line, col)
}

#[test]
fn check_refuses_a_cpu_outside_the_affinity_and_a_listener_no_core_accepts_on() {
    let dir = temp_dir();
    let cpus = allowed_cpus();
    assert!(!cpus.contains(&99), "this machine may use CPU 99: {cpus:?}");
    let good = two_core_config(cpus[0], cpus[0], "127.0.0.1:9", "")
        .replace("@PORT1@", "18002")
        .replace("@PORT@", "18001");
    // Core 1's `cpu = 99`, reported at its value.
    let core1 = good.find("id = 1").unwrap();
    let text = format!(
        "{}{}",
        &good[..core1],
        good[core1..].replacen(&format!("cpu = {}", cpus[0]), "cpu = 99", 1)
    );
    let (code, file, stderr) = check(dir.path(), &text);
    assert_eq!(code, Some(1), "{stderr}");
    let (line, col) = locate(&text, "99\n");
    let want = format!("{file}:{line}:{col}: cpu 99 is outside this process's CPU affinity");
    assert!(stderr.contains(&want), "{want}\nnot in\n{stderr}");

    // No core accepts on "admin": reported at the listener's name.
    let text = good.replace("listeners = [\"admin\"]", "listeners = [\"main\"]");
    let (code, file, stderr) = check(dir.path(), &text);
    assert_eq!(code, Some(1), "{stderr}");
    let (line, col) = locate(&text, "\"admin\"\naddress");
    let want = format!("{file}:{line}:{col}: listener \"admin\": no core accepts on it");
    assert!(stderr.contains(&want), "{want}\nnot in\n{stderr}");

    // An unknown listener name, and a ring size that is not a power of two.
    let text = good
        .replace(
            "listeners = [\"admin\"]",
            "listeners = [\"admin\", \"nope\"]",
        )
        .replace("ring_entries = 256", "ring_entries = 300");
    let (code, file, stderr) = check(dir.path(), &text);
    assert_eq!(code, Some(1), "{stderr}");
    let (line, col) = locate(&text, "\"nope\"");
    let want = format!("{file}:{line}:{col}: unknown listener \"nope\"");
    assert!(stderr.contains(&want), "{want}\nnot in\n{stderr}");
    let (line, col) = locate(&text, "300\n");
    let want = format!(
        "{file}:{line}:{col}: \"ring_entries\" must be a power of two between 16 and 32768, \
         found 300"
    );
    assert!(stderr.contains(&want), "{want}\nnot in\n{stderr}");

    // The good config passes.
    let (code, _, stderr) = check(dir.path(), &good);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_reload_keeps_the_per_core_settings_and_refuses_an_unaccepted_listener() {
    let cpus = allowed_cpus();
    let echo = EchoBackend::tcp_v4();
    let template = two_core_config(cpus[0], cpus[0], &echo.config_addr, "");
    let rw = Ringway::builder(template.clone()).dir(site()).start();
    let (main, admin) = (rw.port(), rw.port_n(1));

    // A changed read buffer: logged as needing a restart; the reload itself goes through.
    rw.rewrite_config(&template.replace("read_buffer = \"64KiB\"", "read_buffer = \"8KiB\""));
    rw.signal(libc::SIGHUP);
    assert!(
        rw.wait_log("configuration reloaded generation=2", 1, WAIT),
        "{}",
        rw.log()
    );
    assert!(
        rw.log()
            .contains("[[runtime.core]] changed: that needs a restart"),
        "{}",
        rw.log()
    );
    // Still: "main" on core 0 only.
    assert_eq!(get(main, "/index.html").status, 200);
    let m = scrape(admin);
    assert_eq!(
        sum(
            &m,
            "ringway_connections_total",
            &["core=\"1\"", "listener=\"main\""]
        ),
        0.0
    );

    // A new listener that only the new (not yet applied) core lists: refused, as no running
    // core would accept on it.
    let extra = "\n[[listener]]\nname = \"extra\"\naddress = \"127.0.0.1:@PORT2@\"\n";
    let added = template.replace(
        "listeners = [\"admin\"]",
        "listeners = [\"admin\", \"extra\"]",
    ) + extra;
    let port2 = free_port();
    fs::write(
        rw.config_path(),
        rw.render(&added).replace("@PORT2@", &port2.to_string()),
    )
    .unwrap();
    rw.signal(libc::SIGHUP);
    assert!(
        rw.wait_log("no core accepts on listener \"extra\"", 1, WAIT),
        "{}",
        rw.log()
    );
    assert_eq!(sum(&scrape(admin), "ringway_config_generation", &[]), 2.0);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port2)).is_err());
}

#[test]
fn an_upgrade_hands_each_core_only_its_listeners() {
    let cpus = allowed_cpus();
    let echo = EchoBackend::tcp_v4();
    let config = two_core_config(cpus[0], cpus[0], &echo.config_addr, "")
        .replace("pin = false\n", "pin = false\npid_file = \"ringway.pid\"\n");
    let mut rw = Ringway::builder(config).dir(site()).start();
    let (main, admin) = (rw.port(), rw.port_n(1));
    let pid_file = rw.dir_path().join("ringway.pid");
    let old_pid = rw.pid().to_string();
    assert!(wait_until(WAIT, || fs::read_to_string(&pid_file)
        .is_ok_and(|p| p.trim() == old_pid)));
    let (status, out, err) = run_cli(&["upgrade", "--config", rw.config_path().to_str().unwrap()]);
    assert!(status.success(), "{out}{err}");
    let exit = rw
        .wait_exit(std::time::Duration::from_secs(30))
        .expect("old process exits");
    assert!(exit.success(), "{exit}");
    let new_pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(new_pid.to_string(), old_pid);
    // One socket per core that accepts on a listener: "main" (core 0) and "admin" (core 1).
    let log = rw.log();
    assert!(
        log.contains("took over the parent's listening sockets sockets=2"),
        "{log}"
    );
    assert!(!log.contains("inherited socket not needed"), "{log}");
    for _ in 0..10 {
        assert_eq!(get(main, "/index.html").status, 200);
    }
    let m = scrape(admin);
    // SAFETY: the new Ringway (our grandchild) is stopped by its pid.
    unsafe { libc::kill(new_pid, libc::SIGKILL) };
    let accepted = |core: &str, listener: &str| accepted_on(&m, core, listener);
    assert_eq!(accepted("0", "main"), 10.0, "{m:?}");
    assert_eq!(accepted("1", "main") + accepted("0", "admin"), 0.0, "{m:?}");
    assert_eq!(accepted("1", "admin"), 1.0, "{m:?}");
}
