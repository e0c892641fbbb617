//! Backend pools behind the HTTP proxy: balancing (weighted round robin, least_conn, ip_hash),
//! failover when a server dies, and active and passive health checks.

use std::thread;
use std::time::Duration;

use crate::harness::*;
use crate::http_backends::*;
use crate::http_proxy::{by, counts, get, ok_by, pool_config, srv, start, HOST};

/// A weighted `servers` entry.
fn weighted(addr: &str, weight: u32) -> String {
    format!("{{ address = \"{addr}\", weight = {weight} }}")
}

// ---------------------------------------------------------------------------------------------
// Balancing

#[test]
fn weighted_round_robin_exact_distribution() {
    let a = HttpBackend::named("a");
    let b = HttpBackend::named("b");
    let rw = start(pool_config(
        1,
        &[],
        &[weighted(&a.config_addr, 1), weighted(&b.config_addr, 3)],
        "",
    ));
    let picks: Vec<String> = (0..40)
        .map(|i| ok_by(&get(&rw, "/rr"), &format!("request {i}")))
        .collect();
    let c = counts(&picks);
    assert_eq!(
        (c.get("a").copied(), c.get("b").copied()),
        (Some(10), Some(30)),
        "weights 1:3 over 40 requests; picks {picks:?}"
    );
    // Smooth: each aligned group of 4 picks holds exactly one "a".
    for (i, window) in picks.chunks(4).enumerate() {
        let n = window.iter().filter(|p| *p == "a").count();
        assert_eq!(
            n,
            1,
            "picks {} to {}: {window:?} (all: {picks:?})",
            i * 4,
            i * 4 + 3
        );
    }
    assert_eq!(a.served_count(), 10);
    assert_eq!(b.served_count(), 30);
}

#[test]
fn least_conn_prefers_the_idle_server() {
    let a = HttpBackend::named("a");
    let b = HttpBackend::named("b");
    let rw = start(pool_config(
        1,
        &[],
        &[srv(&a.config_addr), srv(&b.config_addr)],
        "balance = \"least_conn\"",
    ));
    // Hold one request open on whichever server gets it.
    let mut slow = rw.conn();
    slow.send(Req::get("/slow", HOST).bytes());
    let has_slow = |x: &HttpBackend| x.served().iter().any(|r| r.path() == "/slow");
    assert!(
        wait_until(WAIT, || has_slow(&a) || has_slow(&b)),
        "the /slow request reached no backend"
    );
    let (busy, idle) = if has_slow(&a) { (&a, &b) } else { (&b, &a) };
    for i in 0..10 {
        let who = ok_by(&get(&rw, "/fast"), &format!("request {i}"));
        assert_eq!(
            who,
            idle.name(),
            "request {i} went to {who}, which has a request in flight"
        );
    }
    assert_eq!(
        busy.served_count(),
        1,
        "only the slow request on the busy server"
    );
    busy.release();
    let r = slow.response();
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(by(&r), busy.name());
    // Both idle again: ties are spread, both servers get requests.
    let picks: Vec<String> = (0..10)
        .map(|i| ok_by(&get(&rw, "/fast"), &format!("tie request {i}")))
        .collect();
    let c = counts(&picks);
    assert!(
        c.len() == 2,
        "ties must spread over both servers: {picks:?}"
    );
}

#[test]
fn ip_hash_is_sticky_and_rehashes_when_the_server_dies() {
    let servers = [
        HttpBackend::named("a"),
        HttpBackend::named("b"),
        HttpBackend::named("c"),
    ];
    let addrs: Vec<String> = servers.iter().map(|s| srv(&s.config_addr)).collect();
    let rw = start(pool_config(2, &[], &addrs, "balance = \"ip_hash\""));
    let picks: Vec<String> = (0..30)
        .map(|i| ok_by(&get(&rw, "/sticky"), &format!("request {i}")))
        .collect();
    let c = counts(&picks);
    assert_eq!(c.len(), 1, "one client IP must stick to one server: {c:?}");
    let first = picks[0].clone();
    let dead = servers.iter().find(|s| s.name() == first).unwrap();
    dead.stop();
    let picks: Vec<String> = (0..30)
        .map(|i| {
            ok_by(
                &get(&rw, "/sticky"),
                &format!("request {i} after {first} died"),
            )
        })
        .collect();
    let c = counts(&picks);
    assert_eq!(
        c.len(),
        1,
        "after {first} died the client must stick to one other server: {c:?}"
    );
    assert_ne!(
        picks[0], first,
        "requests still answered by the dead server?"
    );
    assert_eq!(dead.served_count(), 30);
}

#[test]
fn failover_when_a_server_is_killed_mid_run() {
    let a = HttpBackend::named("a");
    let b = HttpBackend::named("b");
    let rw = start(pool_config(
        2,
        &[],
        &[srv(&a.config_addr), srv(&b.config_addr)],
        "",
    ));
    let mut bad = Vec::new();
    let mut after_kill = Vec::new();
    // Half the requests on fresh connections, half on one keep-alive connection.
    let mut keep = rw.conn();
    for i in 0..200 {
        if i == 50 {
            a.stop();
        }
        let r = if i % 2 == 0 {
            get(&rw, "/loop")
        } else {
            keep.send(Req::get("/loop", HOST).bytes());
            keep.response()
        };
        if r.status / 100 != 2 {
            bad.push(format!("request {i}: {}", r.head.first_line));
        }
        if i >= 50 {
            after_kill.push(by(&r));
        }
        thread::sleep(Duration::from_millis(8));
    }
    assert!(bad.is_empty(), "non-2xx responses during failover: {bad:?}");
    assert!(a.served_count() > 0, "a got nothing before it was killed");
    let c = counts(&after_kill);
    assert_eq!(
        c.get("b").copied(),
        Some(150),
        "after the kill every request must be answered by b: {c:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Health

const HEALTH: &str = r#"health = { interval = "100ms", timeout = "500ms", rise = 2, fall = 2, http_path = "/healthz" }"#;

/// Waits until `b` answered `n` more probes with `healthy` after `from` probes.
fn wait_probes(b: &HttpBackend, from: usize, healthy: bool, n: usize) {
    let ok = wait_until(WAIT, || {
        b.probes()
            .iter()
            .skip(from)
            .filter(|p| **p == healthy)
            .count()
            >= n
    });
    assert!(
        ok,
        "backend {}: {n} probes answered {} never came (probes: {:?})",
        b.name(),
        if healthy { "200" } else { "500" },
        b.probes()
    );
}

#[test]
fn active_health_check_takes_a_server_out_and_back_in() {
    let a = HttpBackend::named("a");
    let b = HttpBackend::named("b");
    let rw = start(pool_config(
        1,
        &[],
        &[srv(&a.config_addr), srv(&b.config_addr)],
        HEALTH,
    ));
    wait_probes(&a, 0, true, 1);
    let probe = a
        .requests()
        .into_iter()
        .find(|r| r.path() == "/healthz")
        .unwrap();
    assert_eq!(probe.method, "GET", "health probe: {}", probe.raw_head);

    let picks: Vec<String> = (0..10)
        .map(|i| ok_by(&get(&rw, "/"), &format!("{i}")))
        .collect();
    assert_eq!(
        counts(&picks).len(),
        2,
        "both servers up at first: {picks:?}"
    );

    // a turns unhealthy: after `fall` failed probes (and one more interval) it gets nothing.
    a.set_healthy(false);
    let from = a.probes().len();
    wait_probes(&a, from, false, 3);
    let before = a.served_count();
    let picks: Vec<String> = (0..20)
        .map(|i| ok_by(&get(&rw, "/"), &format!("{i}")))
        .collect();
    assert_eq!(
        counts(&picks).get("b").copied(),
        Some(20),
        "a failed its health checks but still got requests: {picks:?}"
    );
    assert_eq!(a.served_count(), before);

    // Healthy again: after `rise` good probes it takes requests again.
    a.set_healthy(true);
    let from = a.probes().len();
    wait_probes(&a, from, true, 3);
    let picks: Vec<String> = (0..20)
        .map(|i| ok_by(&get(&rw, "/"), &format!("{i}")))
        .collect();
    let got_a = counts(&picks).get("a").copied().unwrap_or(0);
    assert!(
        got_a >= 5,
        "a is healthy again but got {got_a} of 20: {picks:?}"
    );
}

#[test]
fn all_servers_failing_health_checks_gives_503() {
    let a = HttpBackend::named("a");
    let b = HttpBackend::named("b");
    a.set_healthy(false);
    b.set_healthy(false);
    let rw = start(pool_config(
        1,
        &[],
        &[srv(&a.config_addr), srv(&b.config_addr)],
        HEALTH,
    ));
    wait_probes(&a, 0, false, 3);
    wait_probes(&b, 0, false, 3);
    let r = get(&rw, "/");
    assert_eq!(r.status, 503, "all servers down by health checks: {r}");
    assert_eq!(a.served_count() + b.served_count(), 0);
    // One comes back: requests go to it.
    b.set_healthy(true);
    let from = b.probes().len();
    wait_probes(&b, from, true, 3);
    let r = get(&rw, "/");
    assert_eq!(ok_by(&r, "after b recovered"), "b");
}

#[test]
fn all_servers_refused_gives_502_then_503_once_max_fails_is_reached() {
    // Ports nobody listens on: every connect is refused.
    let (p1, p2) = (free_port(), free_port());
    let rw = start(pool_config(
        1,
        &[],
        &[
            srv(&format!("127.0.0.1:{p1}")),
            srv(&format!("127.0.0.1:{p2}")),
        ],
        "max_fails = 1\nfail_timeout = \"30s\"",
    ));
    let r = get(&rw, "/");
    assert_eq!(r.status, 502, "every connect refused: {r}");
    let r = get(&rw, "/");
    assert_eq!(
        r.status, 503,
        "both servers taken out by max_fails = 1: {r}"
    );
    let log = rw.log();
    assert!(log.contains("taken out"), "log:\n{log}");
}
