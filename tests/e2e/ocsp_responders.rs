//! OCSP responders for the OCSP tests: `openssl ocsp` processes (guarded), a small in-process
//! responder that serves fixed or freshly crafted responses and counts requests, a counting TCP
//! relay, and the DER crafting and parsing of OCSP responses.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use der::asn1::{BitString, ObjectIdentifier};
use der::{Decode, Encode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::SigningKey;
use rustls::SignatureScheme;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse,
    ResponderId, ResponseData, SingleResponse, Version,
};

use crate::harness::{find, free_port, Head, WAIT};
use crate::pki::{read_cert_der, Leaf, Pki};

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
