//! DNS probes for tests that run a real DNS server (dnsmasq): whether it answers yet.

use std::net::UdpSocket;
use std::time::Duration;

/// Whether something answers a DNS question (for `ready.test`) on `ip`:`port`. The query goes
/// from an ephemeral port on the same address family, from the calling thread's namespace.
pub fn dns_answers(ip: &str, port: u16) -> bool {
    let local = if ip.contains(':') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let Ok(s) = UdpSocket::bind(local) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    // id 0x1234, RD, one question: ready.test A IN.
    let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["ready", "test"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    if s.send_to(&q, (ip, port)).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    matches!(s.recv(&mut buf), Ok(n) if n >= 12 && buf[0] == 0x12 && buf[1] == 0x34)
}
