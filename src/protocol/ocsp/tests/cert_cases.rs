//! CertInfo, the request against OpenSSL, and one fetch from a real responder.

use super::super::{build_request, http_post, parse_http_response, verify, CertInfo, OcspError};
use super::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};

#[test]
fn aia_ocsp_url_is_extracted() {
    let pki = Pki::new();
    let info = CertInfo::new(&pki.leaf.der, &pki.ca.der).unwrap();
    assert_eq!(info.aia_ocsp_url.as_deref(), Some(AIA_URL));
    assert!(info.subject.contains("CN=leaf.test"), "{}", info.subject);
    assert_eq!(info.serial_hex(), "8F01");
    let other = CertInfo::new(&pki.other.der, &pki.ca.der).unwrap();
    assert_eq!(other.aia_ocsp_url, None);
    assert_eq!(other.serial_hex(), "0103");
}

#[test]
fn must_staple_is_detected() {
    let pki = Pki::new();
    let must = CertInfo::new(&pki.must_staple.der, &pki.ca.der).unwrap();
    assert!(must.must_staple);
    assert!(
        !CertInfo::new(&pki.leaf.der, &pki.ca.der)
            .unwrap()
            .must_staple
    );
    for (features, expected) in [(&[17u8][..], false), (&[17, 5][..], true), (&[][..], false)] {
        let cert = pki.ca.issue("feature.test", &[0x05], |p| {
            p.custom_extensions.push(tls_feature_extension(features));
        });
        let info = CertInfo::new(&cert.der, &pki.ca.der).unwrap();
        assert_eq!(info.must_staple, expected, "{features:?}");
    }
}

#[test]
fn wrong_issuer_is_rejected() {
    let pki = Pki::new();
    let err = CertInfo::new(&pki.leaf.der, &pki.other.der).unwrap_err();
    assert!(
        matches!(&err, OcspError::Certificate(m) if m.contains("not the leaf's issuer")),
        "{err}"
    );
    // Same name, other key: the leaf's signature gives it away.
    let err = CertInfo::new(&pki.leaf.der, &pki.rogue.der).unwrap_err();
    assert!(
        matches!(&err, OcspError::Certificate(m) if m.contains("not signed")),
        "{err}"
    );
    let err = CertInfo::new(b"garbage", &pki.ca.der).unwrap_err();
    assert!(matches!(err, OcspError::Certificate(_)), "{err}");
    let err = CertInfo::new(&pki.leaf.der, b"").unwrap_err();
    assert!(matches!(err, OcspError::Certificate(_)), "{err}");
}

#[test]
fn request_is_what_openssl_builds_and_parses() {
    let pki = Pki::new();
    let info = CertInfo::new(&pki.leaf.der, &pki.ca.der).unwrap();
    let ours = build_request(&info);
    assert_eq!(ours, info.request_der());
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ca.pem"), &pki.ca.pem).unwrap();
    std::fs::write(d.join("leaf.pem"), &pki.leaf.pem).unwrap();
    std::fs::write(d.join("ours.der"), &ours).unwrap();
    let text = openssl(d, &["ocsp", "-reqin", "ours.der", "-req_text"]);
    assert!(text.contains("Hash Algorithm: sha1"), "{text}");
    assert!(text.contains("Serial Number: 8F01"), "{text}");
    assert!(!text.contains("Nonce"), "{text}");
    let args = [
        "ocsp",
        "-issuer",
        "ca.pem",
        "-cert",
        "leaf.pem",
        "-no_nonce",
    ];
    openssl(d, &[&args[..], &["-reqout", "theirs.der"]].concat());
    assert_eq!(ours, std::fs::read(d.join("theirs.der")).unwrap());
}

/// An `openssl ocsp -port` responder, killed (by its own pid) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Writes `request` to host:port (retrying while the server starts), reads to close.
fn exchange(host: &str, port: u16, request: &[u8]) -> Vec<u8> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match TcpStream::connect((host, port)) {
            Ok(s) => break s,
            Err(e) if std::time::Instant::now() > deadline => panic!("connect: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).unwrap();
    buf
}

#[test]
fn fetch_from_real_responder_over_http() {
    let pki = Pki::new();
    let info = CertInfo::new(&pki.leaf.der, &pki.ca.der).unwrap();
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let index = format!(
        "V\t600101000000Z\t\t{}\tunknown\t/CN=x\n",
        info.serial_hex()
    );
    std::fs::write(d.join("index.txt"), index).unwrap();
    std::fs::write(d.join("ca.pem"), &pki.ca.pem).unwrap();
    std::fs::write(d.join("ca.key"), pki.ca.key.serialize_pem()).unwrap();
    let port = free_port().to_string();
    let child = Command::new("openssl")
        .args([
            "ocsp",
            "-index",
            "index.txt",
            "-port",
            &port,
            "-rsigner",
            "ca.pem",
        ])
        .args([
            "-rkey",
            "ca.key",
            "-CA",
            "ca.pem",
            "-ndays",
            "1",
            "-nrequest",
            "1",
        ])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the openssl CLI is needed for the OCSP tests");
    let _server = Server(child);
    let url = format!("http://127.0.0.1:{port}/some/path");
    let target = http_post(&url, &build_request(&info)).unwrap();
    let raw = exchange(&target.host, target.port, &target.request_bytes);
    let body = parse_http_response(&raw).unwrap();
    let (this, _) = response_times(&body);
    let staple = verify(&body, &info, this + MIN).unwrap();
    assert_eq!(staple.der, body);
}
