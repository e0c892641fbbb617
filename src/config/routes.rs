//! The routing tables one configuration compiles to: every vhost with its WebSocket entries
//! and contexts sorted most specific first, and one host table per listener. Built once per
//! core per configuration (start, reload); read on the data path without allocating.

use super::types::{Config, ContextRoute, VHost, WebSocketRoute};
use crate::policy::route::HostTable;

/// Everything routing needs, compiled from a `Config`.
#[derive(Debug)]
pub struct Routes {
    pub vhosts: Vec<VHost>,
    /// Indexed like `Config::listeners`.
    pub hosts_by_listener: Vec<HostTable>,
}

/// What a request path resolves to inside a vhost.
#[derive(Debug, Clone, Copy)]
pub struct PathRoute<'r> {
    /// The WebSocket entry whose `uri` matches, if any.
    pub websocket: Option<&'r WebSocketRoute>,
    /// The context whose `uri` matches, if any (None → static file).
    pub context: Option<&'r ContextRoute>,
}

impl Routes {
    pub fn compile(config: &Config) -> Routes {
        let mut vhosts = config.vhosts.clone();
        for v in &mut vhosts {
            // Most specific first; stable sort keeps config order among equals (regexes).
            v.websockets
                .sort_by_key(|w| std::cmp::Reverse(w.uri.specificity()));
            v.contexts
                .sort_by_key(|c| std::cmp::Reverse(c.uri.specificity()));
        }
        let hosts_by_listener = config
            .listeners
            .iter()
            .map(|l| {
                let mut t = HostTable::default();
                for (i, v) in vhosts.iter().enumerate() {
                    if !v.listeners.is_empty() && !v.listeners.iter().any(|n| n == &l.name) {
                        continue;
                    }
                    for d in &v.domains {
                        t.insert(d, i);
                    }
                }
                t.finish();
                t
            })
            .collect();
        Routes {
            vhosts,
            hosts_by_listener,
        }
    }

    pub fn vhost(&self, listener: usize, host: Option<&[u8]>) -> Option<&VHost> {
        self.vhost_at(listener, host).map(|(_, v)| v)
    }

    /// The vhost for `host` on `listener`, with its index in `vhosts`.
    pub fn vhost_at(&self, listener: usize, host: Option<&[u8]>) -> Option<(usize, &VHost)> {
        let i = self.hosts_by_listener.get(listener)?.lookup(host)?;
        self.vhosts.get(i).map(|v| (i, v))
    }
}

impl VHost {
    pub fn route(&self, path: &str) -> PathRoute<'_> {
        PathRoute {
            websocket: self.websockets.iter().find(|w| w.uri.matches(path)),
            context: self.contexts.iter().find(|c| c.uri.matches(path)),
        }
    }
}
