//! Resolving server names for the directory, off the serving cores: `hickory-resolver` driven
//! by a current-thread tokio runtime owned here (called from the control thread at start and
//! reload, from the `ringway-dns` thread afterwards, and by `ringway check`).
//!
//! `name:port` gives every A and AAAA address of the name; `srv://name` gives each SRV
//! record's target addresses with the record's port, weight and priority. The answer's TTL
//! (the shortest of the records used) comes back with it; the directory clamps it
//! (`policy::discovery::refresh_after`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;

use crate::config::types::Dns;
use crate::policy::upstream::Address;

/// How long one question may take (per attempt).
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// One address a name gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The host name the address belongs to (the SRV target for `srv://`).
    pub host: String,
    pub addr: SocketAddr,
    /// SRV weight (the entry's weight for `name:port`).
    pub weight: u32,
    /// SRV priority (0 for `name:port`).
    pub priority: u16,
}

pub struct Resolver {
    rt: tokio::runtime::Runtime,
    inner: TokioResolver,
}

impl Resolver {
    /// A resolver asking `[dns] servers`, or those of `/etc/resolv.conf` when there are none.
    pub fn new(dns: &Dns) -> Result<Resolver, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("dns: cannot start the resolver's runtime: {e}"))?;
        let inner = rt.block_on(async {
            let mut builder = if dns.servers.is_empty() {
                TokioResolver::builder_tokio().map_err(|e| format!("dns: /etc/resolv.conf: {e}"))?
            } else {
                let mut config = ResolverConfig::new();
                for &addr in &dns.servers {
                    config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
                    config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
                }
                TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
            };
            let opts: &mut ResolverOpts = builder.options_mut();
            opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
            opts.timeout = QUERY_TIMEOUT;
            opts.attempts = 2;
            Ok::<_, String>(builder.build())
        })?;
        Ok(Resolver { rt, inner })
    }

    /// Resolves a `name:port` or `srv://` address (with the entry's `weight`). `Ok` holds at
    /// least one address and the answer's TTL.
    pub fn resolve(
        &self,
        address: &Address,
        weight: u32,
    ) -> Result<(Vec<Found>, Duration), String> {
        // Every question goes to the server: the directory re-asks only when the TTL ran out.
        self.inner.clear_cache();
        let found = match address {
            Address::Name { host, port, .. } => self.rt.block_on(self.ips(host, *port, weight, 0)),
            Address::Srv(name) => self.rt.block_on(self.srv(name)),
            other => Err(format!("{other} is not a name")),
        }?;
        if found.0.is_empty() {
            return Err("no addresses".into());
        }
        Ok(found)
    }

    async fn ips(
        &self,
        host: &str,
        port: u16,
        weight: u32,
        priority: u16,
    ) -> Result<(Vec<Found>, Duration), String> {
        // A final dot: the name as written, never completed with a search domain.
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        let lookup = self
            .inner
            .lookup_ip(fqdn.as_str())
            .await
            .map_err(|e| e.to_string())?;
        let ttl = lookup
            .valid_until()
            .saturating_duration_since(Instant::now());
        let mut found: Vec<Found> = lookup
            .iter()
            .map(|ip| Found {
                host: host.trim_end_matches('.').to_string(),
                addr: SocketAddr::new(ip, port),
                weight,
                priority,
            })
            .collect();
        found.sort_by_key(|f| f.addr);
        found.dedup_by_key(|f| f.addr);
        Ok((found, ttl))
    }

    async fn srv(&self, name: &str) -> Result<(Vec<Found>, Duration), String> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let lookup = self
            .inner
            .srv_lookup(fqdn.as_str())
            .await
            .map_err(|e| e.to_string())?;
        let mut ttl = lookup
            .as_lookup()
            .valid_until()
            .saturating_duration_since(Instant::now());
        let mut found = Vec::new();
        let mut errors = Vec::new();
        for r in lookup.iter() {
            let target = r.target().to_utf8();
            let target = target.trim_end_matches('.').to_ascii_lowercase();
            let weight = u32::from(r.weight()).max(1);
            match self.ips(&target, r.port(), weight, r.priority()).await {
                Ok((ips, t)) => {
                    ttl = ttl.min(t);
                    found.extend(ips);
                }
                Err(e) => errors.push(format!("{target}: {e}")),
            }
        }
        if found.is_empty() && !errors.is_empty() {
            return Err(errors.join("; "));
        }
        Ok((found, ttl))
    }
}
