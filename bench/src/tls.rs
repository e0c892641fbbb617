//! TLS client set-up for `wss://` targets: rustls with the ring provider, TLS 1.3 only, the
//! server certificate verified against a given CA file, and no session resumption (every
//! connection pays a full handshake) unless `--resume` asks for it.

use std::path::Path;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// A client config that trusts only the certificates in `ca_file` (PEM, one or more).
/// `resume`: keep sessions (tickets) and offer them on the next connection.
pub fn client_config(ca_file: &Path, resume: bool) -> Result<Arc<ClientConfig>, String> {
    let what = |e: &dyn std::fmt::Display| format!("{}: {e}", ca_file.display());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| what(&e))? {
        let cert = cert.map_err(|e| what(&e))?;
        roots.add(cert).map_err(|e| what(&e))?;
    }
    if roots.is_empty() {
        return Err(what(&"no certificate found"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Without `resume`, no session cache and no tickets: churn measures full handshakes.
    // With it, rustls's in-memory store (tickets are single-use in TLS 1.3; the server sends
    // more with each handshake).
    config.resumption = if resume {
        Resumption::in_memory_sessions(1024)
    } else {
        Resumption::disabled()
    };
    // What browsers offer for wss://.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name to verify the certificate against: a DNS name (also sent as SNI) or an IP address
/// (matched against IP SANs; no SNI is sent).
pub fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_string()).map_err(|e| format!("server name {name:?}: {e}"))
}

/// What a finished handshake negotiated, e.g. `TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519`.
pub fn describe(c: &ClientConnection) -> String {
    let version = c
        .protocol_version()
        .map_or("?".to_string(), |v| format!("{v:?}"));
    let suite = c
        .negotiated_cipher_suite()
        .map_or("?".to_string(), |s| format!("{:?}", s.suite()));
    let group = c
        .negotiated_key_exchange_group()
        .map_or("?".to_string(), |g| format!("{:?}", g.name()));
    format!("{version} {suite} {group}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(matches!(
            server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("localhost").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(server_name("not a name!").is_err());
    }

    #[test]
    fn missing_or_empty_ca_file() {
        let dir = std::env::temp_dir().join(format!("ringway-bench-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(client_config(&empty, false)
            .unwrap_err()
            .contains("no certificate"));
        assert!(client_config(&dir.join("missing.pem"), false).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
