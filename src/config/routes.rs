//! The routing tables one configuration compiles to: every vhost with its WebSocket entries
//! and contexts sorted most specific first, and one host table per listener. Built once per
//! core per configuration (start, reload); read on the data path without allocating.
//!
//! Also per core: each route's `Style` (the header rules and error pages its answers wear,
//! vhost's first, shared by `Rc` so a request takes one without an atomic), and the per-IP
//! token buckets of `requests_per_ip` (they start full again at a reload).

use std::cell::RefCell;
use std::rc::Rc;

use super::types::{Config, ContextRoute, ErrorPage, HeaderRules, VHost, WebSocketRoute};
use crate::policy::limits::PerIp;
use crate::policy::route::HostTable;

/// How Ringway's answers on a route look: response header rules (the vhost's, then the
/// route's) and the vhost's error pages.
#[derive(Debug, Default)]
pub struct Style {
    pub response: Vec<HeaderRules>,
    pub pages: Rc<Vec<ErrorPage>>,
}

impl Style {
    pub fn page(&self, status: u16) -> Option<&[u8]> {
        self.pages
            .iter()
            .find(|p| p.status == status)
            .map(|p| p.body.as_slice())
    }
}

/// Everything routing needs, compiled from a `Config`.
#[derive(Debug)]
pub struct Routes {
    pub vhosts: Vec<VHost>,
    /// Indexed like `Config::listeners`.
    pub hosts_by_listener: Vec<HostTable>,
    /// Indexed by the `style` of vhosts and routes.
    pub styles: Vec<Rc<Style>>,
    /// Indexed by a context's `limiter`: its `requests_per_ip` buckets on this core.
    pub limiters: Vec<RefCell<PerIp>>,
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
        let mut styles = Vec::new();
        let mut limiters = Vec::new();
        for v in &mut vhosts {
            // Most specific first; stable sort keeps config order among equals (regexes).
            v.websockets
                .sort_by_key(|w| std::cmp::Reverse(w.uri.specificity()));
            v.contexts
                .sort_by_key(|c| std::cmp::Reverse(c.uri.specificity()));
            // Held by the styles from here on.
            let pages = Rc::new(std::mem::take(&mut v.error_pages));
            let vhost_rules = v.response_headers.clone();
            let mut style = |route: Option<&HeaderRules>| {
                let rules = [Some(&vhost_rules), route].into_iter().flatten();
                let response: Vec<HeaderRules> = rules.filter(|r| !r.is_empty()).cloned().collect();
                if response.is_empty() && pages.is_empty() {
                    return None;
                }
                styles.push(Rc::new(Style {
                    response,
                    pages: pages.clone(),
                }));
                Some(styles.len() - 1)
            };
            v.style = style(None);
            for w in &mut v.websockets {
                w.rules.style = style(Some(&w.rules.response_headers));
            }
            for c in &mut v.contexts {
                c.rules.style = style(Some(&c.rules.response_headers));
                if let Some(rate) = c.rules.requests_per_ip {
                    limiters.push(RefCell::new(PerIp::new(None, Some(rate))));
                    c.rules.limiter = Some(limiters.len() - 1);
                }
            }
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
            styles,
            limiters,
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
