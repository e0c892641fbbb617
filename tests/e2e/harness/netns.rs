//! A small data centre on one machine: network namespaces joined by one Linux bridge, with
//! addresses from the benchmarking range 198.18.0.0/15. Owns creating the namespaces, deleting
//! them (and ending whatever still runs in them) when the `Lab` is dropped, also on a panic,
//! clearing what a crashed run left behind, and putting a thread or a child process into one.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `ip ARGS`, panicking with its stderr when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run `ip` (Debian: iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces whose names start with `prefix`.
fn existing(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run `ip netns list` (Debian: iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Ends every process in namespace `ns` (not this one), then deletes the namespace.
fn remove(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        let me = std::process::id();
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<u32>() {
                if pid != me {
                    // SAFETY: kill on a pid that `ip` found in a namespace this test made.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
            }
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "delete", ns])
        .stderr(Stdio::null())
        .status();
}

/// Fails with a clear message unless this process may make network namespaces.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test builds network namespaces with `ip netns` and must run as root (CI does)"
    );
    let ok = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "`ip netns` does not work here (Debian: iproute2)");
}

/// Namespaces `PREFIX<pid>-NAME` on one bridge (`br0` in namespace `PREFIX<pid>-sw`), subnet
/// 198.18.0.0/24 (each lab has its own bridge, so two runs at once do not meet). Dropping it
/// ends their processes and deletes them all.
pub struct Lab {
    prefix: String,
    made: Vec<String>,
}

impl Lab {
    pub fn new(prefix: &str) -> Lab {
        require_root();
        // A run that crashed may have left namespaces (and processes in them): those whose
        // pid is gone (or is this process's) are removed; a run going on now is left alone.
        let me = std::process::id();
        for ns in existing(prefix) {
            let pid: Option<u32> = ns[prefix.len()..]
                .split('-')
                .next()
                .and_then(|p| p.parse().ok());
            let running = pid.is_some_and(|p| p != me && Path::new(&format!("/proc/{p}")).exists());
            if !running {
                remove(&ns);
            }
        }
        let mut lab = Lab {
            prefix: format!("{prefix}{me}"),
            made: Vec::new(),
        };
        let sw = lab.ns("sw");
        ip(&["netns", "add", &sw]);
        lab.made.push(sw.clone());
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        lab
    }

    /// The full name of node `name`'s namespace.
    pub fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// A namespace for node `name` with `eth0` = `addr`/24 on the bridge, and `lo` up.
    pub fn node(&mut self, name: &str, addr: &str) -> String {
        let ns = self.ns(name);
        let sw = self.ns("sw");
        ip(&["netns", "add", &ns]);
        self.made.push(ns.clone());
        let port = format!("p-{name}");
        assert!(port.len() <= 15, "interface name {port} too long");
        ip(&[
            "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port, "netns",
            &sw,
        ]);
        ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        // Room for many short connections from one address.
        let _ = Command::new("ip")
            .args(["netns", "exec", &ns, "sysctl", "-q", "-w"])
            .arg("net.ipv4.ip_local_port_range=1024 65000")
            .status();
        ns
    }

    /// A command that runs in namespace `ns` (entered between fork and exec).
    pub fn command(&self, ns: &str, program: &str) -> Command {
        let fd = open_ns(ns);
        let mut cmd = Command::new(program);
        // SAFETY: setns is async-signal-safe; the descriptor lives in the closure until exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        cmd
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            remove(ns);
        }
    }
}

fn open_ns(ns: &str) -> File {
    File::open(format!("/run/netns/{ns}")).unwrap_or_else(|e| panic!("open namespace {ns}: {e}"))
}

/// Moves the calling thread into namespace `ns`: sockets it makes from now on live there.
pub fn enter(ns: &str) {
    let fd = open_ns(ns);
    // SAFETY: setns on a namespace descriptor we hold; it affects this thread only.
    let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}
