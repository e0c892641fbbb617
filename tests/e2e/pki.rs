//! Test PKIs for the TLS and OCSP tests, made with the `openssl` CLI (bounded commands), and
//! ringway TLS configs. The OCSP responders (an `openssl ocsp` process, an in-process one, a
//! counting relay) are in `ocsp_responders`; the TLS clients (`openssl s_client` and rustls,
//! also under tungstenite for wss://) are in `tls_clients`.

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::harness::WAIT;

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
