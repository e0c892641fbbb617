//! Two real TLS clients for the TLS and OCSP tests: `openssl s_client` (what it says about the
//! stapled OCSP response) and rustls, recording what the server presented, also under
//! tungstenite for wss://.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use der::asn1::ObjectIdentifier;
use der::Decode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
    StreamOwned, SupportedProtocolVersion,
};
use tungstenite::{Message, WebSocket};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

use crate::harness::{find, parse_status, Head, Response, WAIT};
use crate::pki::run_bounded;

// ---------------------------------------------------------------------------------------------
// openssl s_client

pub struct SClient {
    pub status: ExitStatus,
    pub out: String,
    pub err: String,
}

/// What `s_client -status` says about the stapled OCSP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staple {
    /// "OCSP response: no response sent"
    None,
    /// A successful response with "Cert Status: good"; its This Update line.
    Good { this_update: String, serial: String },
    /// Anything else (the text, for the failure message).
    Other(String),
}

/// `openssl s_client -connect 127.0.0.1:PORT [-servername SNI | -noservername] -status EXTRA`
/// with stdin closed (it handshakes, prints, and quits).
pub fn s_client(port: u16, sni: Option<&str>, extra: &[&str]) -> SClient {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")]);
    match sni {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    cmd.arg("-status").args(extra);
    let out = run_bounded(cmd, WAIT);
    SClient {
        status: out.status,
        out: out.stdout,
        err: out.stderr,
    }
}

impl SClient {
    pub fn text(&self) -> String {
        format!(
            "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.out, self.err
        )
    }

    /// Whether the handshake completed (a session with a cipher was printed).
    pub fn handshake_ok(&self) -> bool {
        self.out.contains("New, TLSv1") && !self.out.contains("Cipher is (NONE)")
    }

    pub fn staple(&self) -> Staple {
        if self.out.contains("OCSP response: no response sent") {
            return Staple::None;
        }
        let Some(start) = self.out.find("OCSP Response Data:") else {
            return Staple::Other(self.text());
        };
        let block = &self.out[start..];
        let block = &block[..block.find("======").unwrap_or(block.len())];
        let line = |key: &str| {
            block
                .lines()
                .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string()))
                .unwrap_or_default()
        };
        if block.contains("OCSP Response Status: successful") && line("Cert Status:") == "good" {
            Staple::Good {
                this_update: line("This Update:"),
                serial: line("Serial Number:"),
            }
        } else {
            Staple::Other(block.to_string())
        }
    }

    /// The negotiated protocol ("TLSv1.2", "TLSv1.3") from the "New, TLSv1.3, Cipher is ..."
    /// line (the SSL-Session block is not always printed for TLS 1.3: s_client may quit
    /// before the session tickets arrive).
    pub fn protocol(&self) -> Option<String> {
        self.out.lines().find_map(|l| {
            let rest = l.trim().strip_prefix("New, ")?;
            let (version, _) = rest.split_once(',')?;
            Some(version.trim().to_string())
        })
    }
}

/// Runs s_client until its staple satisfies `want` (or `timeout` passes); returns the last run.
pub fn s_client_until(
    port: u16,
    sni: Option<&str>,
    timeout: Duration,
    want: impl Fn(&Staple) -> bool,
) -> (bool, SClient) {
    let deadline = Instant::now() + timeout;
    loop {
        let r = s_client(port, sni, &[]);
        if want(&r.staple()) {
            return (true, r);
        }
        if Instant::now() >= deadline {
            return (false, r);
        }
        thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// rustls client

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;
pub type Wss = WebSocket<TlsStream>;

/// What the server presented in a handshake.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Leaf first.
    pub certs: Vec<Vec<u8>>,
    /// The stapled OCSP response (empty: none).
    pub ocsp: Vec<u8>,
}

impl Seen {
    /// Subject of the leaf, e.g. "CN=a.example".
    pub fn leaf_subject(&self) -> String {
        Certificate::from_der(&self.certs[0])
            .unwrap()
            .tbs_certificate
            .subject
            .to_string()
    }

    /// DNS SANs of the leaf.
    pub fn leaf_dns(&self) -> Vec<String> {
        let cert = Certificate::from_der(&self.certs[0]).unwrap();
        let mut out = Vec::new();
        for ext in cert.tbs_certificate.extensions.iter().flatten() {
            if ext.extn_id == const_oid_san() {
                let san = SubjectAltName::from_der(ext.extn_value.as_bytes()).unwrap();
                for name in san.0 {
                    if let GeneralName::DnsName(d) = name {
                        out.push(d.to_string());
                    }
                }
            }
        }
        out
    }
}

fn const_oid_san() -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap("2.5.29.17")
}

/// How the rustls client connects.
#[derive(Clone)]
pub struct TlsOpts {
    /// Root CA to verify against; None accepts any certificate (to look at what is served).
    pub ca: Option<PathBuf>,
    /// Send SNI (rustls never sends it for IP addresses).
    pub sni: bool,
    pub versions: &'static [&'static SupportedProtocolVersion],
}

impl TlsOpts {
    pub fn verify(ca: &Path) -> TlsOpts {
        TlsOpts {
            ca: Some(ca.to_path_buf()),
            sni: true,
            versions: rustls::ALL_VERSIONS,
        }
    }
    pub fn inspect() -> TlsOpts {
        TlsOpts {
            ca: None,
            sni: true,
            versions: rustls::ALL_VERSIONS,
        }
    }
}

#[derive(Debug)]
struct Recorder {
    inner: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    seen: Arc<Mutex<Seen>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Seen {
            certs: std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.as_ref().to_vec())
                .collect(),
            ocsp: ocsp_response.to_vec(),
        };
        match &self.inner {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls client config (ALPN http/1.1) that records what the server presents.
pub fn client_config(opts: &TlsOpts) -> (Arc<ClientConfig>, Arc<Mutex<Seen>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = opts.ca.as_ref().map(|ca| {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap()
    });
    let seen = Arc::new(Mutex::new(Seen::default()));
    let verifier = Arc::new(Recorder {
        inner,
        provider: provider.clone(),
        seen: seen.clone(),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(opts.versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.enable_sni = opts.sni;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (Arc::new(config), seen)
}

/// Connects to 127.0.0.1:`port` and completes a TLS handshake for `name`. The error is the
/// handshake's io::Error (a rustls::Error inside for TLS failures).
pub fn tls_connect(port: u16, name: &str, opts: &TlsOpts) -> Result<(TlsStream, Seen), io::Error> {
    let (config, seen) = client_config(opts);
    let mut sock = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), WAIT)?;
    sock.set_read_timeout(Some(WAIT))?;
    sock.set_write_timeout(Some(WAIT))?;
    sock.set_nodelay(true)?;
    let server_name = ServerName::try_from(name.to_string()).expect("server name");
    let mut conn = ClientConnection::new(config, server_name).map_err(io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    let seen = seen.lock().unwrap().clone();
    Ok((StreamOwned::new(conn, sock), seen))
}

/// `tls_connect` that must succeed.
pub fn tls(port: u16, name: &str, opts: &TlsOpts) -> (TlsStream, Seen) {
    tls_connect(port, name, opts)
        .unwrap_or_else(|e| panic!("TLS handshake with 127.0.0.1:{port} as {name:?}: {e}"))
}

/// The rustls error inside a handshake's io::Error, if any.
pub fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
}

/// Sends `raw` over `s` and reads one response (Content-Length or chunked-less bodies only).
pub fn https_request(s: &mut TlsStream, raw: &[u8]) -> Result<Response, String> {
    s.write_all(raw).map_err(|e| format!("write: {e}"))?;
    s.flush().map_err(|e| format!("flush: {e}"))?;
    let deadline = Instant::now() + WAIT;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16384];
    let mut read_more = |buf: &mut Vec<u8>| -> Result<bool, String> {
        if Instant::now() >= deadline {
            return Err(format!("timed out; got {:?}", String::from_utf8_lossy(buf)));
        }
        match s.read(&mut tmp) {
            Ok(0) => Ok(false),
            Ok(n) => {
                buf.extend_from_slice(&tmp[..n]);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(format!("read: {e}; got {:?}", String::from_utf8_lossy(buf))),
        }
    };
    let end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end;
        }
        if !read_more(&mut buf)? {
            return Err(format!(
                "closed before a response head; got {:?}",
                String::from_utf8_lossy(&buf)
            ));
        }
    };
    let head = Head::parse(&String::from_utf8_lossy(&buf[..end]));
    let status = parse_status(&head.first_line).ok_or(format!("bad status line {head:?}"))?;
    let len: usize = head
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[end + 4..].to_vec();
    while body.len() < len {
        if !read_more(&mut body)? {
            return Err(format!("closed after {} of {len} body bytes", body.len()));
        }
    }
    body.truncate(len);
    Ok(Response { status, head, body })
}

/// A GET for `path` with `Host: host` over a fresh verified TLS connection with SNI `host`.
pub fn https_get(port: u16, host: &str, path: &str, opts: &TlsOpts) -> Response {
    let (mut s, _) = tls(port, host, opts);
    let raw = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    https_request(&mut s, raw.as_bytes()).unwrap_or_else(|e| panic!("GET {path} over TLS: {e}"))
}

/// A wss:// WebSocket through ringway: TLS handshake for `host`, then the upgrade for `path`.
pub fn wss_connect(port: u16, host: &str, path: &str, opts: &TlsOpts) -> (Wss, Seen) {
    let (stream, seen) = tls(port, host, opts);
    match tungstenite::client(format!("wss://{host}{path}"), stream) {
        Ok((ws, _resp)) => (ws, seen),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => panic!(
            "wss handshake refused: {} body {:?}",
            resp.status(),
            resp.body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        ),
        Err(e) => panic!("wss handshake failed: {e}"),
    }
}

/// Next data message (ping/pong skipped).
pub fn wss_next(ws: &mut Wss) -> Message {
    loop {
        match ws.read() {
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
            Ok(m) => return m,
            Err(e) => panic!("wss read failed: {e}"),
        }
    }
}

/// Sends a text and a binary message of `n` bytes each and expects both back intact.
pub fn wss_echo(ws: &mut Wss, n: usize) {
    let text = crate::harness::text_payload(n);
    ws.send(Message::text(text.clone())).unwrap();
    match wss_next(ws) {
        Message::Text(t) => assert!(t.as_str() == text, "text echo of {n} bytes differs"),
        other => panic!("expected a text echo of {n} bytes, got {other:?}"),
    }
    let bin = crate::harness::binary_payload(n);
    ws.send(Message::binary(bin.clone())).unwrap();
    match wss_next(ws) {
        Message::Binary(b) => assert!(b[..] == bin[..], "binary echo of {n} bytes differs"),
        other => panic!("expected a binary echo of {n} bytes, got {other:?}"),
    }
}

/// Client-initiated close; the server's Close must come back.
pub fn wss_close(ws: &mut Wss) {
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => return,
            // A peer that closes TCP without close_notify after the Close frame.
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return,
            Err(e) => panic!("wss close handshake did not complete: {e}"),
        }
    }
}

/// A handshake the server is expected to refuse.
pub struct Refusal {
    /// The client's handshake error.
    pub error: io::Error,
    /// The server closed the TCP connection (EOF or reset) within WAIT after the failure.
    pub closed: bool,
}

/// Handshakes as `name`; `Err` (with the session's protocol) if the handshake succeeded.
pub fn refused_handshake(port: u16, name: &str, opts: &TlsOpts) -> Result<Refusal, String> {
    let (config, _) = client_config(opts);
    let mut sock = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), WAIT)
        .expect("connect to ringway");
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    let mut conn = ClientConnection::new(config, server_name).unwrap();
    let error = loop {
        if !conn.is_handshaking() {
            return Err(format!(
                "handshake as {name:?} succeeded ({:?})",
                conn.protocol_version()
            ));
        }
        if let Err(e) = conn.complete_io(&mut sock) {
            break e;
        }
    };
    let deadline = Instant::now() + WAIT;
    let mut tmp = [0u8; 4096];
    let closed = loop {
        if Instant::now() >= deadline {
            break false;
        }
        match sock.read(&mut tmp) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break false
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break true,
        }
    };
    Ok(Refusal { error, closed })
}

/// The first flight of a TLS client (a ClientHello record) for `name`.
pub fn client_hello(name: &str) -> Vec<u8> {
    let (config, _) = client_config(&TlsOpts::inspect());
    let mut conn =
        ClientConnection::new(config, ServerName::try_from(name.to_string()).unwrap()).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}
