//! The backend directory: every backend's servers, their source (`static` or `dns`), admin
//! state (ready, drain, drained, maint) and weight; the process keeps one (`hub.directory`)
//! across reloads. It owns DNS discovery: names are resolved here (`control::dns`) at start,
//! at reload and on the `ringway-dns` thread when their TTL runs out; a failed resolution
//! keeps the last good set. Every change becomes a new `ServerSets` published to the cores
//! (a hub message each core applies; `published` for a core building a shard), and a server
//! that is drained, by the API or by leaving DNS, has its tunnels closed spread over time by
//! the cores (`Note::Drain`). The same thread watches draining servers until their last
//! tunnel is gone (`drained`; one that left DNS is then forgotten).
//!
//! Methods run only off the serving cores (the control thread, the control socket's thread,
//! the DNS thread); they may block briefly, asking every core for its counts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::config::types::Dns;
use crate::config::Config;
use crate::policy::discovery::{refresh_after, srv_in_use, SrvGroup};
use crate::policy::upstream::Address;
use crate::runtime::backend::servers::{BackendSet, Count, Note, Published, ServerSets};
use crate::runtime::control::dns::{Found, Resolver};

/// How often the DNS thread looks for names to resolve and drains that finished.
const TICK: Duration = Duration::from_millis(250);
/// A failed resolution is tried again after this (or `min_ttl`, if longer).
const RETRY_MIN: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    Ready,
    Drain,
    Maint,
}

#[derive(Debug, Default, Clone)]
pub struct ServerChange {
    pub state: Option<AdminState>,
    pub spread: Option<Duration>,
    pub weight: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    UnknownBackend,
    UnknownServer,
}

/// How the directory reaches the cores (made by the hub, which owns their mailboxes).
pub struct Links {
    pub notify: Box<dyn Fn(Note) + Send + Sync>,
    /// Every core's counts (waits for them, briefly).
    pub counts: Box<dyn Fn() -> Vec<Count> + Send + Sync>,
}

/// A server's state as the directory keeps it (`drained`: a drain whose tunnels are gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready,
    Drain,
    Drained,
    Maint,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Ready => "ready",
            State::Drain => "drain",
            State::Drained => "drained",
            State::Maint => "maint",
        }
    }
}

/// One `servers` entry of a backend.
#[derive(Clone)]
struct Entry {
    address: Address,
    weight: u32,
    /// A name's last good answer.
    found: Vec<Found>,
    /// When a name is asked again.
    next: Instant,
    /// `None`: never asked; `Some(true)`: the last question failed.
    failing: Option<bool>,
}

struct ServerRec {
    key: Arc<str>,
    address: Address,
    entry: usize,
    dns: bool,
    weight: u32,
    weight_set: Option<u32>,
    priority: u16,
    state: State,
    /// No longer in DNS: drained, then forgotten.
    gone: bool,
    up: Arc<AtomicBool>,
}

struct BackendRec {
    name: String,
    implicit: bool,
    checked: bool,
    drain_spread: Duration,
    entries: Vec<Entry>,
    servers: Vec<ServerRec>,
}

#[derive(Default)]
struct Inner {
    /// Bumped by every `configure`: answers asked for an older configuration are dropped.
    epoch: u64,
    dns: Dns,
    backends: Vec<BackendRec>,
    resolutions: BTreeMap<(String, &'static str), u64>,
}

pub struct Directory {
    inner: Mutex<Inner>,
    links: Links,
    published: ArcSwap<ServerSets>,
    metrics: ArcSwap<String>,
    resolver: Mutex<Option<(Dns, Arc<Resolver>)>>,
}

impl Directory {
    pub fn new(links: Links) -> Directory {
        Directory {
            inner: Mutex::new(Inner::default()),
            links,
            published: ArcSwap::from_pointee(ServerSets::default()),
            metrics: ArcSwap::from_pointee(String::new()),
            resolver: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server sets as last published (a core building a shard reads them).
    pub fn published(&self) -> Arc<ServerSets> {
        self.published.load_full()
    }

    /// `ringway_dns_resolutions_total` and `ringway_backend_servers`, as Prometheus text.
    pub fn metrics_text(&self) -> Arc<String> {
        self.metrics.load_full()
    }

    fn resolver(&self, dns: &Dns) -> Option<Arc<Resolver>> {
        let mut r = self.resolver.lock().unwrap_or_else(|e| e.into_inner());
        if r.as_ref().is_none_or(|(d, _)| d != dns) {
            match Resolver::new(dns) {
                Ok(new) => *r = Some((dns.clone(), Arc::new(new))),
                Err(e) => {
                    warn!(error = %e, "dns: no resolver; server names stay unresolved");
                    *r = None;
                }
            }
        }
        r.as_ref().map(|(_, r)| r.clone())
    }

    /// A configuration to serve (start, reload): its backends' servers, names resolved now
    /// unless the running configuration already had them; states and weights kept for the
    /// servers that remain (same backend and address). Publishes the result.
    pub fn configure(&self, config: &Config) {
        let resolver = self.resolver(&config.dns);
        // Names the running configuration has asked already (per backend).
        let mut known: Vec<(String, Entry)> = Vec::new();
        {
            let inner = self.lock();
            for b in &inner.backends {
                for e in &b.entries {
                    if e.address.is_name() && e.failing.is_some() {
                        known.push((b.name.clone(), e.clone()));
                    }
                }
            }
        }
        let now = Instant::now();
        let mut backends = Vec::new();
        let mut counted = Vec::new();
        for b in &config.backends {
            let mut entries = Vec::new();
            for s in &b.servers {
                let mut e = Entry {
                    address: s.address.clone(),
                    weight: s.weight,
                    found: Vec::new(),
                    next: now,
                    failing: None,
                };
                if s.address.is_name() {
                    let old = known
                        .iter()
                        .find(|(name, k)| *name == b.name && k.address == s.address);
                    match (old, &resolver) {
                        (Some((_, k)), _) => {
                            e.found = k.found.clone();
                            e.next = k.next;
                            e.failing = k.failing;
                        }
                        (None, Some(r)) => {
                            let result = r.resolve(&s.address, s.weight);
                            counted.push((b.name.clone(), result.is_ok()));
                            answer(&b.name, &mut e, result, &config.dns);
                        }
                        (None, None) => {}
                    }
                }
                entries.push(e);
            }
            backends.push(BackendRec {
                name: b.name.clone(),
                implicit: b.implicit,
                checked: b.health.is_some(),
                drain_spread: b.drain_spread,
                entries,
                servers: Vec::new(),
            });
        }
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.dns = config.dns.clone();
        for (name, ok) in counted {
            count(&mut inner, &name, ok);
        }
        let old = std::mem::take(&mut inner.backends);
        for mut b in backends {
            // Servers that remain keep their state, weight and health.
            if let Some(o) = old.iter().find(|o| o.name == b.name) {
                b.servers = o
                    .servers
                    .iter()
                    .filter(|s| !s.gone)
                    .map(|s| ServerRec {
                        key: s.key.clone(),
                        address: s.address.clone(),
                        entry: usize::MAX,
                        dns: s.dns,
                        weight: s.weight,
                        weight_set: s.weight_set,
                        priority: s.priority,
                        state: s.state,
                        gone: false,
                        up: s.up.clone(),
                    })
                    .collect();
            }
            let mut notes = Vec::new();
            rebuild(&mut b, &mut notes, false);
            inner.backends.push(b);
        }
        self.publish(&mut inner);
    }

    /// Starts the `ringway-dns` thread: names re-resolved when their TTL runs out, drains
    /// watched until their last tunnel is gone.
    pub fn start(self: &Arc<Self>) -> Result<(), String> {
        let me = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("ringway-dns".into())
            .spawn(move || {
                while let Some(d) = me.upgrade() {
                    d.refresh();
                    d.tick();
                    drop(d);
                    std::thread::sleep(TICK);
                }
            })
            .map(|_| ())
            .map_err(|e| format!("cannot start the dns thread: {e}"))
    }

    /// Asks again the names whose TTL ran out.
    fn refresh(&self) {
        let now = Instant::now();
        let (epoch, dns, due) = {
            let inner = self.lock();
            let mut due = Vec::new();
            for (bi, b) in inner.backends.iter().enumerate() {
                for (ei, e) in b.entries.iter().enumerate() {
                    if e.address.is_name() && e.next <= now {
                        due.push((bi, ei, e.address.clone(), e.weight));
                    }
                }
            }
            (inner.epoch, inner.dns.clone(), due)
        };
        if due.is_empty() {
            return;
        }
        let Some(resolver) = self.resolver(&dns) else {
            return;
        };
        let answers: Vec<_> = due
            .into_iter()
            .map(|(bi, ei, address, weight)| (bi, ei, resolver.resolve(&address, weight)))
            .collect();
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return;
        }
        let mut notes = Vec::new();
        let mut changed = false;
        for (bi, ei, result) in answers {
            let name = inner.backends[bi].name.clone();
            count(&mut inner, &name, result.is_ok());
            let b = &mut inner.backends[bi];
            let before = b.entries[ei].found.clone();
            answer(&name, &mut b.entries[ei], result, &dns);
            if b.entries[ei].found != before {
                rebuild(b, &mut notes, true);
                changed = true;
            }
        }
        if changed {
            self.publish(&mut inner);
        } else {
            self.render(&inner);
        }
        drop(inner);
        for n in notes {
            (self.links.notify)(n);
        }
    }

    /// Drains whose last tunnel is gone become `drained` (and servers that left DNS are
    /// forgotten); SRV priorities follow health; the metrics text is made again.
    fn tick(&self) {
        let draining = self
            .lock()
            .backends
            .iter()
            .any(|b| b.servers.iter().any(|s| s.state == State::Drain));
        let counts = if draining {
            (self.links.counts)()
        } else {
            Vec::new()
        };
        let mut inner = self.lock();
        let mut changed = false;
        for b in &mut inner.backends {
            for s in &mut b.servers {
                if s.state != State::Drain {
                    continue;
                }
                let (_, tunnels) = sum(&counts, &b.name, &s.key);
                if tunnels == 0 {
                    info!(backend = %b.name, server = %s.key, "server drained: its last tunnel is gone");
                    s.state = State::Drained;
                    changed = true;
                }
            }
            let before = b.servers.len();
            b.servers.retain(|s| !(s.gone && s.state == State::Drained));
            changed |= b.servers.len() != before;
        }
        if changed || self.usable_changed(&inner) {
            self.publish(&mut inner);
        } else {
            self.render(&inner);
        }
    }

    /// Whether health moved an SRV priority group since the last publication.
    fn usable_changed(&self, inner: &Inner) -> bool {
        let now = sets(inner);
        let was = self.published.load();
        now.backends.iter().zip(&was.backends).any(|(a, b)| {
            a.servers.len() != b.servers.len()
                || a.servers
                    .iter()
                    .zip(&b.servers)
                    .any(|(x, y)| x.usable != y.usable)
        })
    }

    fn publish(&self, inner: &mut Inner) {
        let sets = Arc::new(sets(inner));
        self.published.store(sets.clone());
        (self.links.notify)(Note::Servers(sets));
        self.render(inner);
    }

    fn render(&self, inner: &Inner) {
        use std::fmt::Write;
        let mut out = String::new();
        out.push_str("# HELP ringway_dns_resolutions_total Server name resolutions, by backend and result.\n");
        out.push_str("# TYPE ringway_dns_resolutions_total counter\n");
        for ((backend, result), n) in &inner.resolutions {
            let _ = writeln!(
                out,
                "ringway_dns_resolutions_total{{backend=\"{}\",result=\"{result}\"}} {n}",
                escape(backend)
            );
        }
        out.push_str("# HELP ringway_backend_servers Servers in each backend's pool, by state.\n");
        out.push_str("# TYPE ringway_backend_servers gauge\n");
        for b in &inner.backends {
            let mut n = [0u64; 4];
            for s in &b.servers {
                let i = match s.state {
                    State::Ready if b.checked && !s.up.load(Ordering::Relaxed) => 3,
                    State::Ready => 0,
                    State::Drain | State::Drained => 1,
                    State::Maint => 2,
                };
                n[i] += 1;
            }
            for (state, n) in ["ready", "drain", "maint", "down"].iter().zip(n) {
                let _ = writeln!(
                    out,
                    "ringway_backend_servers{{backend=\"{}\",state=\"{state}\"}} {n}",
                    escape(&b.name)
                );
            }
        }
        self.metrics.store(Arc::new(out));
    }

    /// The body of `GET /api/backends` (README, "Running behind a changing fleet").
    pub fn backends(&self) -> Value {
        let counts = (self.links.counts)();
        let inner = self.lock();
        let backends: Vec<Value> = inner
            .backends
            .iter()
            .map(|b| {
                let servers: Vec<Value> = b
                    .servers
                    .iter()
                    .map(|s| server_json(b, s, &counts))
                    .collect();
                json!({
                    "name": b.name,
                    "implicit": b.implicit,
                    "drain_spread": humantime::format_duration(b.drain_spread).to_string(),
                    "servers": servers,
                })
            })
            .collect();
        json!({ "backends": backends })
    }

    /// `POST /api/backends/{backend}/servers/{server}`: a new state (`drain` closes the
    /// server's tunnels spread over `spread`, default the backend's `drain_spread`) and/or a
    /// new weight. Answers the server's new entry.
    pub fn change(
        &self,
        backend: &str,
        server: &str,
        change: ServerChange,
    ) -> Result<Value, ChangeError> {
        let mut notes = Vec::new();
        {
            let mut inner = self.lock();
            let b = inner
                .backends
                .iter_mut()
                .find(|b| b.name == backend)
                .ok_or(ChangeError::UnknownBackend)?;
            let spread = change.spread.unwrap_or(b.drain_spread);
            let s = b
                .servers
                .iter_mut()
                .find(|s| &*s.key == server)
                .ok_or(ChangeError::UnknownServer)?;
            if let Some(w) = change.weight {
                s.weight_set = Some(w.clamp(1, 1000));
            }
            match change.state {
                Some(AdminState::Ready) => s.state = State::Ready,
                Some(AdminState::Maint) => s.state = State::Maint,
                Some(AdminState::Drain) => {
                    if !matches!(s.state, State::Drain | State::Drained) {
                        s.state = State::Drain;
                    }
                    notes.push(Note::Drain {
                        backend: b.name.clone(),
                        server: s.key.clone(),
                        spread,
                    });
                }
                None => {}
            }
            info!(
                backend,
                server,
                state = s.state.as_str(),
                weight = s.weight_set.unwrap_or(s.weight),
                "server changed"
            );
            self.publish(&mut inner);
        }
        for n in notes {
            (self.links.notify)(n);
        }
        let counts = (self.links.counts)();
        let inner = self.lock();
        let b = inner
            .backends
            .iter()
            .find(|b| b.name == backend)
            .ok_or(ChangeError::UnknownBackend)?;
        let s = b
            .servers
            .iter()
            .find(|s| &*s.key == server)
            .ok_or(ChangeError::UnknownServer)?;
        Ok(server_json(b, s, &counts))
    }
}

/// `ringway check`: each server name that does not resolve now, with its entry's position
/// and why.
pub fn unresolved(config: &Config) -> Vec<((usize, usize), String, String)> {
    let names: Vec<_> = config
        .backends
        .iter()
        .flat_map(|b| b.servers.iter())
        .filter(|s| s.address.is_name())
        .collect();
    if names.is_empty() {
        return Vec::new();
    }
    let resolver = match Resolver::new(&config.dns) {
        Ok(r) => r,
        Err(e) => {
            return names
                .iter()
                .map(|s| (s.pos, s.address.to_string(), e.clone()))
                .collect()
        }
    };
    names
        .iter()
        .filter_map(|s| {
            let e = resolver.resolve(&s.address, s.weight).err()?;
            Some((s.pos, s.address.to_string(), e))
        })
        .collect()
}

/// Records a resolution's outcome in its entry; a failure keeps the last good set. Logs once
/// per change of state.
fn answer(backend: &str, e: &mut Entry, result: Result<(Vec<Found>, Duration), String>, dns: &Dns) {
    let now = Instant::now();
    match result {
        Ok((found, ttl)) => {
            if e.failing == Some(true) {
                info!(backend, name = %e.address, addresses = found.len(), "dns: the name resolves again");
            } else if e.failing.is_none() {
                info!(backend, name = %e.address, addresses = found.len(), "dns: name resolved");
            }
            e.found = found;
            e.failing = Some(false);
            e.next = now + refresh_after(ttl, dns.min_ttl, dns.max_ttl);
        }
        Err(error) => {
            if e.failing != Some(true) {
                warn!(backend, name = %e.address, %error, kept = e.found.len(), "dns: resolution failed; keeping the last good set");
            }
            e.failing = Some(true);
            e.next = now + dns.min_ttl.max(RETRY_MIN);
        }
    }
}

fn count(inner: &mut Inner, backend: &str, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    *inner
        .resolutions
        .entry((backend.to_string(), result))
        .or_default() += 1;
}

/// The servers a backend's entries give now, reconciled with the ones it had: those that
/// remain keep their state; new ones are ready; with `drain_gone`, those that left are
/// drained with the backend's `drain_spread` (into `notes`), else forgotten.
fn rebuild(b: &mut BackendRec, notes: &mut Vec<Note>, drain_gone: bool) {
    let mut now: Vec<(Arc<str>, Address, usize, bool, u32, u16)> = Vec::new();
    for (i, e) in b.entries.iter().enumerate() {
        match &e.address {
            Address::Name { tls, .. } => {
                for f in &e.found {
                    let address = if *tls {
                        Address::Tls(f.addr)
                    } else {
                        Address::Tcp(f.addr)
                    };
                    let key = format!("{}:{} ({})", f.host, f.addr.port(), f.addr);
                    now.push((key.into(), address, i, true, e.weight, 0));
                }
            }
            Address::Srv(_) => {
                for f in &e.found {
                    let key = format!("{}:{} ({})", f.host, f.addr.port(), f.addr);
                    let a = Address::Tcp(f.addr);
                    now.push((key.into(), a, i, true, f.weight, f.priority));
                }
            }
            literal => {
                let key = literal.to_string();
                now.push((key.into(), literal.clone(), i, false, e.weight, 0));
            }
        }
    }
    now.dedup_by(|a, b| a.0 == b.0);
    let mut servers: Vec<ServerRec> = Vec::with_capacity(now.len());
    for (key, address, entry, dns, weight, priority) in now {
        if servers.iter().any(|s| s.key == key) {
            continue;
        }
        let old = b.servers.iter().position(|s| s.key == key);
        let rec = match old.map(|i| b.servers.swap_remove(i)) {
            Some(mut s) => {
                if s.gone {
                    // Back in DNS: it takes connections again.
                    s.gone = false;
                    s.state = State::Ready;
                }
                ServerRec {
                    address,
                    entry,
                    dns,
                    weight,
                    priority,
                    ..s
                }
            }
            None => ServerRec {
                key,
                address,
                entry,
                dns,
                weight,
                weight_set: None,
                priority,
                state: State::Ready,
                gone: false,
                up: Arc::new(AtomicBool::new(true)),
            },
        };
        servers.push(rec);
    }
    if drain_gone {
        for mut s in std::mem::take(&mut b.servers) {
            if !s.gone {
                info!(backend = %b.name, server = %s.key, spread = ?b.drain_spread, "dns: server left; draining it");
                s.gone = true;
                if s.state != State::Drained {
                    s.state = State::Drain;
                    notes.push(Note::Drain {
                        backend: b.name.clone(),
                        server: s.key.clone(),
                        spread: b.drain_spread,
                    });
                }
            }
            servers.push(s);
        }
    }
    b.servers = servers;
}

/// What every core is told: per backend, each server with whether it takes connections.
fn sets(inner: &Inner) -> ServerSets {
    let backends = inner
        .backends
        .iter()
        .map(|b| {
            // Per SRV entry, the priority in use (the lowest with a server up).
            let in_use: Vec<Option<u16>> = (0..b.entries.len())
                .map(|i| {
                    let groups: Vec<SrvGroup> = b
                        .servers
                        .iter()
                        .filter(|s| s.entry == i && !s.gone)
                        .map(|s| SrvGroup {
                            priority: s.priority,
                            up: s.state == State::Ready && s.up.load(Ordering::Relaxed),
                        })
                        .collect();
                    srv_in_use(&groups)
                })
                .collect();
            let servers = b
                .servers
                .iter()
                .map(|s| {
                    let srv = b
                        .entries
                        .get(s.entry)
                        .is_some_and(|e| matches!(e.address, Address::Srv(_)));
                    let priority_ok =
                        !srv || in_use.get(s.entry).copied().flatten() == Some(s.priority);
                    Published {
                        key: s.key.clone(),
                        address: s.address.clone(),
                        weight: s.weight_set.unwrap_or(s.weight),
                        usable: s.state == State::Ready && !s.gone && priority_ok,
                        up: s.up.clone(),
                    }
                })
                .collect();
            BackendSet {
                name: b.name.clone(),
                servers,
            }
        })
        .collect();
    ServerSets { backends }
}

fn sum(counts: &[Count], backend: &str, server: &str) -> (u32, u32) {
    counts
        .iter()
        .filter(|c| c.backend == backend && &*c.server == server)
        .fold((0, 0), |(a, t), c| (a + c.active, t + c.tunnels))
}

fn server_json(b: &BackendRec, s: &ServerRec, counts: &[Count]) -> Value {
    let (active, tunnels) = sum(counts, &b.name, &s.key);
    let health = if !b.checked {
        "unchecked"
    } else if s.up.load(Ordering::Relaxed) {
        "up"
    } else {
        "down"
    };
    let mut v = json!({
        "address": &*s.key,
        "source": if s.dns { "dns" } else { "static" },
        "state": s.state.as_str(),
        "weight": s.weight_set.unwrap_or(s.weight),
        "health": health,
        "active": active,
        "tunnels": tunnels,
    });
    if let (true, Some(e)) = (s.dns, b.entries.get(s.entry)) {
        v["name"] = json!(e.address.to_string());
    }
    v
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory() -> (Directory, Arc<Mutex<Vec<Note>>>) {
        let notes: Arc<Mutex<Vec<Note>>> = Arc::default();
        let seen = notes.clone();
        let d = Directory::new(Links {
            notify: Box::new(move |n| seen.lock().unwrap().push(n)),
            counts: Box::new(Vec::new),
        });
        (d, notes)
    }

    fn config(servers: &str) -> Config {
        let text = format!(
            "[[listener]]\nname = \"main\"\naddress = \"127.0.0.1:8080\"\n[[vhost]]\nname = \"site\"\ndomains = [\"*\"]\n[[backend]]\nname = \"b\"\nservers = [{servers}]\ndrain_spread = \"7s\"\n"
        );
        crate::config::load_str(&text, &std::env::temp_dir()).unwrap()
    }

    fn entry<'a>(v: &'a Value, server: &str) -> &'a Value {
        v["backends"][0]["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["address"] == server)
            .unwrap()
    }

    #[test]
    fn states_and_weights_change_publish_and_survive_a_reload() {
        let (d, notes) = directory();
        d.configure(&config("\"127.0.0.1:1\", \"127.0.0.1:2\""));
        let v = d.backends();
        let s = entry(&v, "127.0.0.1:1");
        assert_eq!(
            (&s["source"], &s["state"], &s["weight"], &s["health"]),
            (
                &json!("static"),
                &json!("ready"),
                &json!(1),
                &json!("unchecked")
            )
        );
        let change = |state, weight| ServerChange {
            state,
            spread: None,
            weight,
        };
        let e = d
            .change("b", "127.0.0.1:1", change(Some(AdminState::Drain), Some(3)))
            .unwrap();
        assert_eq!((&e["state"], &e["weight"]), (&json!("drain"), &json!(3)));
        // The cores heard the new set (server 1 out of balancing) and the drain with the
        // backend's drain_spread.
        let heard = notes.lock().unwrap().clone();
        let Some(Note::Servers(sets)) = heard.iter().rev().find(|n| matches!(n, Note::Servers(_)))
        else {
            panic!("no server set published: {heard:?}")
        };
        let usable: Vec<(String, bool, u32)> = sets.backends[0]
            .servers
            .iter()
            .map(|p| (p.key.to_string(), p.usable, p.weight))
            .collect();
        assert_eq!(
            usable,
            [
                ("127.0.0.1:1".into(), false, 3),
                ("127.0.0.1:2".into(), true, 1)
            ]
        );
        assert!(heard
            .iter()
            .any(|n| matches!(n, Note::Drain { server, spread, .. }
            if &**server == "127.0.0.1:1" && *spread == Duration::from_secs(7))));
        d.change("b", "127.0.0.1:2", change(Some(AdminState::Maint), None))
            .unwrap();
        // No tunnel is open: the drain is done at the next look.
        d.tick();
        assert_eq!(entry(&d.backends(), "127.0.0.1:1")["state"], "drained");
        // A reload keeps states and weights for the servers that remain; a new one is ready.
        d.configure(&config("\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\""));
        let v = d.backends();
        assert_eq!(entry(&v, "127.0.0.1:1")["state"], "drained");
        assert_eq!(entry(&v, "127.0.0.1:1")["weight"], 3);
        assert_eq!(entry(&v, "127.0.0.1:2")["state"], "maint");
        assert_eq!(entry(&v, "127.0.0.1:3")["state"], "ready");
        d.change("b", "127.0.0.1:1", change(Some(AdminState::Ready), None))
            .unwrap();
        assert_eq!(entry(&d.backends(), "127.0.0.1:1")["state"], "ready");
        assert_eq!(
            d.change("x", "127.0.0.1:1", ServerChange::default()),
            Err(ChangeError::UnknownBackend)
        );
        assert_eq!(
            d.change("b", "127.0.0.1:9", ServerChange::default()),
            Err(ChangeError::UnknownServer)
        );
        let m = d.metrics_text();
        assert!(
            m.contains("ringway_backend_servers{backend=\"b\",state=\"ready\"} 2"),
            "{m}"
        );
        assert!(
            m.contains("ringway_backend_servers{backend=\"b\",state=\"maint\"} 1"),
            "{m}"
        );
    }
}
