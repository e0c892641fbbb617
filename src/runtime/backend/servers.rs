//! The server sets the control plane publishes to every core (`ServerSets`): per backend, each
//! server with its stable identity (`key`: the literal address, or `name:port (address)` for a
//! server found by DNS), its resolved address, weight, whether it takes new connections (admin
//! state `ready`, SRV priority in use) and its active-health flag. The directory
//! (`control::directory`) makes a new one on every change; each core reconciles its pools with
//! it (`pools::Backends::apply`), keeping per-server state for the servers that remain.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::policy::upstream::Address;

/// Every backend's servers, by backend name.
#[derive(Debug, Default)]
pub struct ServerSets {
    pub backends: Vec<BackendSet>,
}

#[derive(Debug)]
pub struct BackendSet {
    pub name: String,
    pub servers: Vec<Published>,
}

#[derive(Debug, Clone)]
pub struct Published {
    /// The server's identity within its backend, as metrics, logs and `/api/backends` name it.
    pub key: Arc<str>,
    /// Where to connect: `Tcp`, `Tls` or `Unix`, never a name.
    pub address: Address,
    pub weight: u32,
    /// Takes new connections, upgrades and requests.
    pub usable: bool,
    /// Active health (true when unchecked), written by the health-checking core.
    pub up: Arc<AtomicBool>,
}

impl Published {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}

impl ServerSets {
    pub fn backend(&self, name: &str) -> Option<&BackendSet> {
        self.backends.iter().find(|b| b.name == name)
    }
}

/// What the directory tells every core.
#[derive(Debug, Clone)]
pub enum Note {
    /// The new server sets: reconcile the pools with them.
    Servers(Arc<ServerSets>),
    /// Close this server's open tunnels (Close 1012 to the client, 1001 to the backend), spread
    /// evenly over `spread` in random order.
    Drain {
        backend: String,
        server: Arc<str>,
        spread: std::time::Duration,
    },
}

/// One core's figures for one server.
#[derive(Debug, Clone)]
pub struct Count {
    pub backend: String,
    pub server: Arc<str>,
    /// Leases held now (requests in flight, tunnels).
    pub active: u32,
    /// Open WebSocket tunnels.
    pub tunnels: u32,
}
