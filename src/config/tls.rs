//! TLS termination: certificates, and the SNI resolver that picks one per handshake.
//!
//! Each `[vhost.tls]` certificate lives in a `CertSlot`: an `ArcSwap<CertifiedKey>` that the
//! OCSP core replaces when it has a new staple (or must drop an expired one). Serving cores
//! only `load` it during a handshake: lock-free, never blocking.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::ring;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::types::Config;
use crate::policy::route::HostTable;

/// One vhost's certificate and its current staple.
#[derive(Debug)]
pub struct CertSlot {
    pub vhost: String,
    /// The key as served now; `ocsp` holds the staple, if any.
    pub current: ArcSwap<CertifiedKey>,
    /// nextUpdate (unix seconds) of the staple served now; 0 when none is.
    pub expiry_s: AtomicU64,
    /// OCSP fetches that gave a good staple, and those that failed.
    pub fetch_ok: AtomicU64,
    pub fetch_error: AtomicU64,
    /// Replaced by a config reload: the OCSP core stops refreshing it.
    pub retired: AtomicBool,
}

impl CertSlot {
    /// DER of the leaf certificate.
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.current.load().cert[0].clone()
    }

    /// DER of the leaf's issuer from the chain, if the chain has one.
    pub fn chain_issuer(&self) -> Option<CertificateDer<'static>> {
        self.current.load().cert.get(1).cloned()
    }

    /// Serves `staple` (DER OCSPResponse) from now on; `None` stops stapling.
    pub fn set_staple(&self, staple: Option<Vec<u8>>) {
        if staple.is_none() {
            self.expiry_s.store(0, Ordering::Relaxed);
        }
        let now = self.current.load_full();
        let mut next = CertifiedKey::new(now.cert.clone(), now.key.clone());
        next.ocsp = staple;
        self.current.store(Arc::new(next));
    }

    pub fn staple(&self) -> Option<Vec<u8>> {
        self.current.load().ocsp.clone()
    }
}

/// Loads a PEM chain (leaf first) and a PEM private key.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate found", cert.display()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let signing = ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match()
        .map_err(|e| format!("{} does not match {}: {e}", key.display(), cert.display()))?;
    Ok(ck)
}

/// Loads every vhost's certificate; indexed like `Config::vhosts` (`None` for plain vhosts).
pub fn load_slots(config: &Config) -> Result<Vec<Option<Arc<CertSlot>>>, String> {
    config
        .vhosts
        .iter()
        .map(|v| {
            v.tls
                .as_ref()
                .map(|t| {
                    let ck = load_certified_key(&t.cert, &t.key)?;
                    Ok(Arc::new(CertSlot {
                        vhost: v.name.clone(),
                        current: ArcSwap::from_pointee(ck),
                        expiry_s: AtomicU64::new(0),
                        fetch_ok: AtomicU64::new(0),
                        fetch_error: AtomicU64::new(0),
                        retired: AtomicBool::new(false),
                    }))
                })
                .transpose()
        })
        .collect()
}

/// Chooses the certificate by SNI with the vhost rules (exact, wildcard, `*`); no SNI → `*`.
#[derive(Debug)]
struct SniResolver {
    hosts: HostTable,
    slots: Vec<Option<Arc<CertSlot>>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let vhost = self.hosts.lookup(hello.server_name().map(str::as_bytes))?;
        let slot = self.slots.get(vhost)?.as_ref()?;
        Some(slot.current.load_full())
    }
}

/// TLS 1.3 tickets sent after each handshake, full or resumed.
pub const TLS13_TICKETS_PER_HANDSHAKE: usize = 1;

/// A server config for one TLS listener on one core, resuming sessions with the process's
/// shared tickets and session cache.
pub fn server_config(
    hosts: HostTable,
    slots: Vec<Option<Arc<CertSlot>>>,
    alpn: &[String],
    resumption: &crate::config::tickets::Resumption,
) -> Result<Arc<ServerConfig>, String> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { hosts, slots }));
    // The listener's `alpn` (default h2, then http/1.1); a client that offers none of them
    // is refused by rustls (no_application_protocol), one that offers no ALPN gets HTTP/1.1.
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    config.ticketer = resumption.ticketer.clone();
    config.session_storage = resumption.sessions.clone();
    // One TLS 1.3 ticket per handshake (rustls sends 2 by default; nginx/OpenSSL send 1 on a
    // resumed handshake): a client that resumes spends one and receives one, so it never runs
    // out, and each handshake saves an AEAD seal, a nonce from the kernel and the record.
    config.send_tls13_tickets = TLS13_TICKETS_PER_HANDSHAKE;
    Ok(Arc::new(config))
}

/// How to reach a `tls://` backend: its verifier config and the name to verify.
#[derive(Clone)]
pub struct Connector {
    pub config: Arc<rustls::ClientConfig>,
    /// `server_name`, or the server's IP (verified against IP SANs, no SNI sent).
    pub name: Option<rustls_pki_types::ServerName<'static>>,
}

/// A client config trusting only the certificates in `ca_file` (PEM). Built per core.
pub fn connector(tls: &crate::config::types::BackendTls) -> Result<Connector, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&tls.ca_file)
        .map_err(|e| format!("{}: {e}", tls.ca_file.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", tls.ca_file.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", tls.ca_file.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "{}: no certificate found (a CA file holds PEM certificates)",
            tls.ca_file.display()
        ));
    }
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = match &tls.server_name {
        Some(n) => Some(
            rustls_pki_types::ServerName::try_from(n.clone())
                .map_err(|e| format!("server_name {n:?}: {e}"))?,
        ),
        None => None,
    };
    Ok(Connector {
        config: Arc::new(config),
        name,
    })
}

/// The first certificate of a PEM file (an OCSP `ca_file`).
pub fn first_cert(path: &Path) -> Result<CertificateDer<'static>, String> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .next()
        .ok_or_else(|| format!("{}: no certificate found", path.display()))?
        .map_err(|e| format!("{}: {e}", path.display()))
}
