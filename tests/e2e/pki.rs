//! Helpers for the TLS and OCSP tests: test PKIs made with the `openssl` CLI, `openssl ocsp`
//! responder processes (guarded), a small in-process OCSP responder that serves fixed or freshly
//! crafted responses and counts requests, a counting TCP relay, ringway TLS configs, and two real
//! TLS clients: `openssl s_client` and rustls (also under tungstenite for wss://).

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use der::asn1::{BitString, ObjectIdentifier};
use der::{Decode, Encode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::SigningKey;
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
    StreamOwned, SupportedProtocolVersion,
};
use tungstenite::{Message, WebSocket};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse,
    ResponderId, ResponseData, SingleResponse, Version,
};

use crate::harness::{find, free_port, parse_status, Head, Response, WAIT};

// ---------------------------------------------------------------------------------------------
// Bounded commands

pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` (stdin closed) and waits at most `timeout`; a hung command is killed and fails
/// the test.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: String::from_utf8_lossy(&t_out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
    }
}

/// `openssl ARGS` in `dir`; panics with its output unless it exits 0.
pub fn openssl(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("openssl");
    cmd.args(args).current_dir(dir);
    let out = run_bounded(cmd, WAIT);
    assert!(
        out.status.success(),
        "openssl {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        out.stdout,
        out.stderr
    );
    out
}

// ---------------------------------------------------------------------------------------------
// PKI

const REQ_CNF: &str = "[req]\ndistinguished_name = dn\n[dn]\n[v3_ca]\n\
basicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
subjectKeyIdentifier = hash\n";

/// A test CA (EC P-256) in `dir`, plus the certificates it issues. Files are named after
/// their stem: `STEM.pem`, `STEM.key`, `STEM.chain.pem` (leaf + CA).
pub struct Pki {
    pub dir: PathBuf,
    /// Stem of the CA files (`ca` → `ca.pem`, `ca.key`).
    pub stem: String,
}

/// A certificate issued by a `Pki` (or self-signed), with its key.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub dir: PathBuf,
    pub stem: String,
    pub serial: u32,
    /// Subject CN.
    pub cn: String,
}

impl Leaf {
    /// File names relative to the PKI dir.
    pub fn cert_file(&self) -> String {
        format!("{}.pem", self.stem)
    }
    pub fn key_file(&self) -> String {
        format!("{}.key", self.stem)
    }
    pub fn chain_file(&self) -> String {
        format!("{}.chain.pem", self.stem)
    }
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(self.cert_file())
    }
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(self.key_file())
    }
    pub fn chain_path(&self) -> PathBuf {
        self.dir.join(self.chain_file())
    }
    /// The serial as `openssl ocsp` prints it and its index file stores it.
    pub fn serial_hex(&self) -> String {
        format!("{:04X}", self.serial)
    }
}

/// What goes into a leaf certificate.
#[derive(Clone, Debug, Default)]
pub struct LeafOpts {
    /// DNS SANs; the first is also the CN.
    pub dns: Vec<String>,
    /// authorityInfoAccess OCSP URL.
    pub aia_ocsp: Option<String>,
    /// TLS feature status_request (OCSP must-staple).
    pub must_staple: bool,
    /// Extended key usage (default `serverAuth`).
    pub eku: Option<String>,
}

impl LeafOpts {
    pub fn dns(names: &[&str]) -> LeafOpts {
        LeafOpts {
            dns: names.iter().map(|s| s.to_string()).collect(),
            ..LeafOpts::default()
        }
    }
}

/// Revocation state of a leaf in an `openssl ocsp` index file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexStatus {
    Valid,
    Revoked,
}

impl Pki {
    /// A new CA `STEM.pem` / `STEM.key` in `dir` with subject CN `cn`.
    pub fn new_named(dir: &Path, stem: &str, cn: &str) -> Pki {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("req.cnf"), REQ_CNF).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-config",
                "req.cnf",
                "-extensions",
                "v3_ca",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{stem}.key"),
                "-out",
                &format!("{stem}.pem"),
                "-days",
                "3",
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        Pki {
            dir: dir.to_path_buf(),
            stem: stem.to_string(),
        }
    }

    /// The usual test CA: `ca.pem` / `ca.key` in `dir`.
    pub fn new(dir: &Path) -> Pki {
        Pki::new_named(dir, "ca", "Ringway Test CA")
    }

    pub fn ca_file(&self) -> String {
        format!("{}.pem", self.stem)
    }
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join(self.ca_file())
    }

    /// The CA itself as a signer (its cert and key).
    pub fn ca_signer(&self) -> Leaf {
        Leaf {
            dir: self.dir.clone(),
            stem: self.stem.clone(),
            serial: 0,
            cn: String::new(),
        }
    }

    /// A certificate signed by this CA. `serial` must be in 0x1000..=0x7fff (four hex digits,
    /// positive), the form `openssl ocsp` looks up in its index.
    pub fn leaf(&self, stem: &str, serial: u32, opts: &LeafOpts) -> Leaf {
        assert!((0x1000..=0x7fff).contains(&serial), "serial {serial:#x}");
        let cn = opts
            .dns
            .first()
            .cloned()
            .unwrap_or_else(|| stem.to_string());
        let mut ext = String::from(
            "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
             authorityKeyIdentifier = keyid\nsubjectKeyIdentifier = hash\n",
        );
        writeln!(
            ext,
            "extendedKeyUsage = {}",
            opts.eku.as_deref().unwrap_or("serverAuth")
        )
        .unwrap();
        if !opts.dns.is_empty() {
            let sans: Vec<String> = opts.dns.iter().map(|d| format!("DNS:{d}")).collect();
            writeln!(ext, "subjectAltName = {}", sans.join(",")).unwrap();
        }
        if let Some(url) = &opts.aia_ocsp {
            writeln!(ext, "authorityInfoAccess = OCSP;URI:{url}").unwrap();
        }
        if opts.must_staple {
            ext.push_str("tlsfeature = status_request\n");
        }
        fs::write(self.dir.join(format!("{stem}.ext")), ext).unwrap();
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-config",
                "req.cnf",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{stem}.key"),
                "-out",
                &format!("{stem}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{stem}.csr"),
                "-CA",
                &self.ca_file(),
                "-CAkey",
                &format!("{}.key", self.stem),
                "-set_serial",
                &format!("{serial:#x}"),
                "-days",
                "2",
                "-extfile",
                &format!("{stem}.ext"),
                "-out",
                &format!("{stem}.pem"),
            ],
        );
        let mut chain = fs::read(self.dir.join(format!("{stem}.pem"))).unwrap();
        chain.extend(fs::read(self.ca_path()).unwrap());
        fs::write(self.dir.join(format!("{stem}.chain.pem")), chain).unwrap();
        Leaf {
            dir: self.dir.clone(),
            stem: stem.to_string(),
            serial,
            cn,
        }
    }

    /// A delegated OCSP responder certificate issued by this CA (EKU OCSPSigning).
    pub fn ocsp_signer(&self, stem: &str, serial: u32) -> Leaf {
        self.leaf(
            stem,
            serial,
            &LeafOpts {
                dns: vec![format!("{stem}.ocsp.test")],
                eku: Some("OCSPSigning".into()),
                ..LeafOpts::default()
            },
        )
    }

    /// Writes an `openssl ocsp` index file `name` listing `entries`; returns its path.
    pub fn index(&self, name: &str, entries: &[(&Leaf, IndexStatus)]) -> PathBuf {
        let mut text = String::new();
        for (leaf, status) in entries {
            let (flag, revoked_at) = match status {
                IndexStatus::Valid => ("V", ""),
                IndexStatus::Revoked => ("R", "250101000000Z"),
            };
            writeln!(
                text,
                "{flag}\t391231235959Z\t{revoked_at}\t{}\tunknown\t/CN={}",
                leaf.serial_hex(),
                leaf.cn
            )
            .unwrap();
        }
        let path = self.dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    /// A DER OCSP response made by `openssl ocsp` (as a responder, from a request file) for
    /// `leaf`, looked up in `index` and signed by `signer`, valid for a day.
    pub fn openssl_response(&self, index: &Path, signer: &Leaf, leaf: &Leaf) -> Vec<u8> {
        let req = format!("{}.req.der", leaf.stem);
        let resp = format!("{}.by-{}.resp.der", leaf.stem, signer.stem);
        openssl(
            &self.dir,
            &[
                "ocsp",
                "-issuer",
                &self.ca_file(),
                "-cert",
                &leaf.cert_file(),
                "-no_nonce",
                "-reqout",
                &req,
            ],
        );
        openssl(
            &self.dir,
            &[
                "ocsp",
                "-index",
                index.to_str().unwrap(),
                "-CA",
                &self.ca_file(),
                "-rsigner",
                &signer.cert_file(),
                "-rkey",
                &signer.key_file(),
                "-reqin",
                &req,
                "-respout",
                &resp,
                "-ndays",
                "1",
            ],
        );
        fs::read(self.dir.join(resp)).unwrap()
    }
}

/// A self-signed certificate and key in `dir` that has nothing to do with any test CA (a
/// rogue OCSP signer).
pub fn self_signed(dir: &Path, stem: &str) -> Leaf {
    fs::write(
        dir.join(format!("{stem}.ext.cnf")),
        "[req]\ndistinguished_name = dn\n[dn]\n[v3]\nbasicConstraints = critical,CA:FALSE\n\
         keyUsage = critical,digitalSignature\nextendedKeyUsage = OCSPSigning\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-config",
            &format!("{stem}.ext.cnf"),
            "-extensions",
            "v3",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{stem}.key"),
            "-out",
            &format!("{stem}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={stem}"),
        ],
    );
    Leaf {
        dir: dir.to_path_buf(),
        stem: stem.to_string(),
        serial: 0,
        cn: stem.to_string(),
    }
}

pub fn read_cert_der(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path)
        .unwrap_or_else(|e| panic!("read certificate {path:?}: {e:?}"))
        .as_ref()
        .to_vec()
}

// ---------------------------------------------------------------------------------------------
// `openssl ocsp` responder process

/// `openssl ocsp -index ... -port P` in its own process group, killed (by pid) on drop.
pub struct OpensslResponder {
    child: Child,
    pub port: u16,
}

impl OpensslResponder {
    /// Starts a responder for `pki`'s CA on `port` (responses signed by `signer`, valid for a
    /// day) and waits until it listens.
    pub fn start(pki: &Pki, index: &Path, signer: &Leaf, port: u16) -> OpensslResponder {
        let log = pki.dir.join(format!("ocsp-responder-{port}.log"));
        let mut cmd = Command::new("openssl");
        cmd.args(["ocsp", "-index"])
            .arg(index)
            .args(["-port", &port.to_string(), "-CA"])
            .arg(pki.ca_path())
            .arg("-rsigner")
            .arg(signer.cert_path())
            .arg("-rkey")
            .arg(signer.key_path())
            .args(["-ndays", "1"])
            .current_dir(&pki.dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(pki.dir.join(format!("{port}.err"))).unwrap());
        let child = cmd.spawn().expect("spawn openssl ocsp");
        let mut r = OpensslResponder { child, port };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = r.child.try_wait().unwrap() {
                panic!(
                    "openssl ocsp on port {port} exited at start ({status}): {}",
                    fs::read_to_string(pki.dir.join(format!("{port}.err"))).unwrap_or_default()
                );
            }
            // Readiness from /proc, not by connecting: `openssl ocsp` (3.0) hangs on a
            // connection that closes without a request and exits after a malformed one.
            // The listener must be this child's: another test's server may hold the port
            // (taken after free_port() released it), and then openssl's bind fails.
            if listening_by(port, r.child.id()) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "openssl ocsp not listening on 127.0.0.1:{port} within {WAIT:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The same on a fresh port.
    pub fn start_any(pki: &Pki, index: &Path, signer: &Leaf) -> OpensslResponder {
        OpensslResponder::start(pki, index, signer, free_port())
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Whether process `pid` holds a socket listening on TCP `port` (its inode, from /proc/net/tcp*,
/// among the process's open files).
pub fn listening_by(port: u16, pid: u32) -> bool {
    let needle = format!(":{port:04X}");
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|f| {
            fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    (cols.len() > 9 && cols[1].ends_with(&needle) && cols[3] == "0A")
                        .then(|| format!("socket:[{}]", cols[9]))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path())
            .is_ok_and(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
    })
}

impl Drop for OpensslResponder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Counting relay

/// A TCP relay on 127.0.0.1 in front of `127.0.0.1:upstream` that counts connections, so a test
/// can tell that ringway asked a responder whose answer it then (rightly) ignored.
pub struct Relay {
    pub port: u16,
    count: Arc<AtomicUsize>,
}

impl Relay {
    pub fn start(upstream: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || relay_connection(client, upstream));
            }
        });
        Relay { port, count }
    }

    pub fn connections(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn relay_connection(client: TcpStream, upstream: u16) {
    let Ok(server) =
        TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], upstream)), WAIT)
    else {
        return;
    };
    for s in [&client, &server] {
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    }
    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let up = thread::spawn(move || {
        let _ = io::copy(&mut c2, &mut s2);
        let _ = s2.shutdown(std::net::Shutdown::Write);
    });
    let (mut s3, mut c3) = (server, client);
    let _ = io::copy(&mut s3, &mut c3);
    let _ = c3.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}

// ---------------------------------------------------------------------------------------------
// In-process OCSP responder

/// Who signs crafted responses: a certificate (the CA or a delegated responder) and its key.
#[derive(Clone)]
pub struct CraftSigner {
    pub cert: Arc<Certificate>,
    key: Arc<dyn SigningKey>,
    /// Put the signer's certificate in the response (delegated responders).
    pub include_cert: bool,
}

impl CraftSigner {
    pub fn load(signer: &Leaf, include_cert: bool) -> CraftSigner {
        let cert = Arc::new(Certificate::from_der(&read_cert_der(&signer.cert_path())).unwrap());
        let key = PrivateKeyDer::from_pem_file(signer.key_path()).unwrap();
        let key = rustls::crypto::ring::sign::any_ecdsa_type(&key).unwrap();
        CraftSigner {
            cert,
            key,
            include_cert,
        }
    }
}

/// What a crafted response says and when it is valid (relative to the moment it is made).
#[derive(Clone)]
pub struct Craft {
    pub signer: CraftSigner,
    pub status: CertStatus,
    /// thisUpdate = now + this (seconds, may be negative).
    pub this_update: i64,
    /// nextUpdate = now + this (seconds); None leaves nextUpdate out.
    pub next_update: Option<i64>,
}

/// What the in-process responder answers.
#[derive(Clone)]
pub enum Answer {
    /// These DER bytes, whatever the request.
    Fixed(Vec<u8>),
    /// A response made for the request's CertID.
    Crafted(Craft),
    /// `503 Service Unavailable`.
    Unavailable,
    /// These bytes as the whole answer, HTTP head included (garbage, a 10 MiB body, ...).
    Raw(Vec<u8>),
    /// Nothing for this long, then close.
    Silent(Duration),
}

/// An HTTP OCSP responder on 127.0.0.1, one thread per connection. It counts requests (and
/// how many got a 200).
pub struct MiniResponder {
    pub port: u16,
    answer: Arc<Mutex<Answer>>,
    requests: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
}

impl MiniResponder {
    pub fn start(answer: Answer) -> MiniResponder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = Arc::new(Mutex::new(answer));
        let requests = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let (a, r, s) = (answer.clone(), requests.clone(), served.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (a, r, s) = (a.clone(), r.clone(), s.clone());
                thread::spawn(move || mini_connection(conn, a, r, s));
            }
        });
        MiniResponder {
            port,
            answer,
            requests,
            served,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    /// Complete requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Requests answered with a 200 and an OCSP response.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

fn mini_connection(
    mut s: TcpStream,
    answer: Arc<Mutex<Answer>>,
    requests: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
) {
    let _ = s.set_read_timeout(Some(WAIT));
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end;
        }
        match s.read(&mut tmp) {
            Ok(n) if n > 0 => buf.extend_from_slice(&tmp[..n]),
            _ => return,
        }
    };
    let head = Head::parse(&String::from_utf8_lossy(&buf[..end]));
    let len: usize = head
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[end + 4..].to_vec();
    while body.len() < len {
        match s.read(&mut tmp) {
            Ok(n) if n > 0 => body.extend_from_slice(&tmp[..n]),
            _ => return,
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let answer = answer.lock().unwrap().clone();
    let der = match answer {
        Answer::Raw(bytes) => {
            let _ = s.write_all(&bytes);
            return;
        }
        Answer::Silent(d) => {
            thread::sleep(d);
            return;
        }
        Answer::Fixed(der) => Some(der),
        Answer::Crafted(craft) => match OcspRequest::from_der(&body) {
            Ok(req) if !req.tbs_request.request_list.is_empty() => Some(craft_response(
                req.tbs_request.request_list[0].req_cert.clone(),
                &craft,
            )),
            _ => {
                let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                return;
            }
        },
        Answer::Unavailable => None,
    };
    match der {
        Some(der) => {
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: application/ocsp-response\r\n\
                 Content-Length: {}\r\n\r\n",
                der.len()
            );
            let mut out = head.into_bytes();
            out.extend_from_slice(&der);
            if s.write_all(&out).is_ok() {
                served.fetch_add(1, Ordering::SeqCst);
            }
        }
        None => {
            let _ = s.write_all(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        }
    }
}

fn offset(secs: i64) -> SystemTime {
    let now = SystemTime::now();
    if secs >= 0 {
        now + Duration::from_secs(secs as u64)
    } else {
        now - Duration::from_secs(secs.unsigned_abs())
    }
}

fn gtime(t: SystemTime) -> OcspGeneralizedTime {
    OcspGeneralizedTime::try_from(t).unwrap()
}

/// ecdsa-with-SHA256
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// A complete DER OCSPResponse (successful, basic) for `cert_id`, signed per `craft`.
pub fn craft_response(cert_id: CertId, craft: &Craft) -> Vec<u8> {
    let tbs = ResponseData {
        version: Version::V1,
        responder_id: ResponderId::ByName(craft.signer.cert.tbs_certificate.subject.clone()),
        produced_at: gtime(SystemTime::now()),
        responses: vec![SingleResponse {
            cert_id,
            cert_status: craft.status,
            this_update: gtime(offset(craft.this_update)),
            next_update: craft.next_update.map(|s| gtime(offset(s))),
            single_extensions: None,
        }],
        response_extensions: None,
    };
    let tbs_der = tbs.to_der().unwrap();
    let signature = craft
        .signer
        .key
        .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
        .expect("a P-256 signing key")
        .sign(&tbs_der)
        .unwrap();
    let basic = BasicOcspResponse {
        tbs_response_data: tbs,
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA256,
            parameters: None,
        },
        signature: BitString::from_bytes(&signature).unwrap(),
        certs: craft
            .signer
            .include_cert
            .then(|| vec![(*craft.signer.cert).clone()]),
    };
    OcspResponse::successful(basic).unwrap().to_der().unwrap()
}

/// Decodes a stapled response: (serial of its first SingleResponse, status good?, thisUpdate).
pub fn parse_staple(der: &[u8]) -> Result<(Vec<u8>, bool, SystemTime), String> {
    let resp = OcspResponse::from_der(der).map_err(|e| format!("OCSPResponse: {e}"))?;
    let bytes = resp
        .response_bytes
        .ok_or_else(|| format!("no responseBytes (status {:?})", resp.response_status))?;
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes())
        .map_err(|e| format!("BasicOCSPResponse: {e}"))?;
    let single = basic
        .tbs_response_data
        .responses
        .first()
        .ok_or("no SingleResponse")?;
    Ok((
        single.cert_id.serial_number.as_bytes().to_vec(),
        matches!(single.cert_status, CertStatus::Good(_)),
        single.this_update.0.to_system_time(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Ringway TLS configs

/// `[runtime]`, `[timeouts]` and one TLS listener "tls" on `@PORT@`; tests append vhosts.
pub fn tls_base(cores: usize) -> String {
    format!(
        "[runtime]\ncores = {cores}\npin = false\n\n[timeouts]\nheader = \"60s\"\n\
         keepalive = \"60s\"\n\n[[listener]]\nname = \"tls\"\naddress = \"127.0.0.1:@PORT@\"\n\
         tls = true\n"
    )
}

/// A `[[vhost]]` with `[vhost.tls]` (cert and key as given: relative to the config file or
/// absolute), built up and rendered with `toml()`.
pub struct VhostToml {
    name: String,
    domains: Vec<String>,
    cert: String,
    key: String,
    top: String,
    ocsp: Option<String>,
    extra: String,
}

pub fn vhost(name: &str, domains: &[&str], cert: &str, key: &str) -> VhostToml {
    VhostToml {
        name: name.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        cert: cert.into(),
        key: key.into(),
        top: String::new(),
        ocsp: None,
        extra: String::new(),
    }
}

impl VhostToml {
    /// A line for the `[[vhost]]` table itself (e.g. `doc_root = "www-a"`).
    pub fn top(mut self, line: &str) -> Self {
        self.top.push_str(line);
        self.top.push('\n');
        self
    }

    /// `[vhost.tls.ocsp]` with `enabled = true` and these lines (without the table header).
    pub fn ocsp(mut self, lines: &str) -> Self {
        self.ocsp = Some(lines.to_string());
        self
    }

    /// A `[[vhost.websocket]]` entry.
    pub fn websocket(mut self, uri: &str, address: &str) -> Self {
        self.extra.push_str(&format!(
            "\n[[vhost.websocket]]\nuri = {uri:?}\naddress = {address:?}\n"
        ));
        self
    }

    /// A `[[vhost.context]]` entry with `handler`.
    pub fn context(mut self, uri: &str, handler: &str) -> Self {
        self.extra.push_str(&format!(
            "\n[[vhost.context]]\nuri = {uri:?}\nhandler = {handler:?}\n"
        ));
        self
    }

    /// A `[[vhost.context]]` proxying `uri` to the backend named `backend`.
    pub fn context_proxy(mut self, uri: &str, backend: &str) -> Self {
        self.extra.push_str(&format!(
            "\n[[vhost.context]]\nuri = {uri:?}\nhandler = \"proxy\"\nbackend = {backend:?}\n"
        ));
        self
    }

    pub fn toml(&self) -> String {
        let domains: Vec<String> = self.domains.iter().map(|d| format!("{d:?}")).collect();
        let mut s = format!(
            "\n[[vhost]]\nname = {:?}\ndomains = [{}]\n{}\n[vhost.tls]\ncert = {:?}\nkey = {:?}\n",
            self.name,
            domains.join(", "),
            self.top,
            self.cert,
            self.key
        );
        if let Some(ocsp) = &self.ocsp {
            s.push_str("\n[vhost.tls.ocsp]\nenabled = true\n");
            s.push_str(ocsp);
            if !ocsp.ends_with('\n') {
                s.push('\n');
            }
        }
        s.push_str(&self.extra);
        s
    }
}

/// `[vhost.tls.ocsp]` lines: `responder` (when given) and short retry back-off.
pub fn ocsp_lines(responder: Option<&str>, retry_min: &str, retry_max: &str) -> String {
    let mut s = String::new();
    if let Some(url) = responder {
        s.push_str(&format!("responder = {url:?}\n"));
    }
    s.push_str(&format!(
        "retry_min = {retry_min:?}\nretry_max = {retry_max:?}\n"
    ));
    s
}

pub fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

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
