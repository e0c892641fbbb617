//! Test PKIs (rcgen) and a real OCSP responder (`openssl ocsp`, no network).
//!
//! Responses are produced by OpenSSL from the requests this module builds, so
//! every verification test is also an interoperability test. The clock is fake:
//! each test derives its `now` from the thisUpdate OpenSSL wrote.

mod cert_cases;
mod verify_cases;

use der::Decode;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};
use tempfile::TempDir;

pub(super) const MIN: Duration = Duration::from_secs(60);
pub(super) const DAY: Duration = Duration::from_secs(86_400);
pub(super) const AIA_URL: &str = "http://127.0.0.1:8888/ocsp";

/// A certificate with its key.
pub(super) struct Issued {
    pub der: Vec<u8>,
    pub pem: String,
    pub key: KeyPair,
    params: CertificateParams,
}

impl Issued {
    /// Issues a certificate signed by `self`; `edit` adjusts the parameters.
    pub fn issue(
        &self,
        cn: &str,
        serial: &[u8],
        edit: impl FnOnce(&mut CertificateParams),
    ) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params = params(cn, serial);
        edit(&mut params);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Issued {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key,
            params,
        }
    }
}

fn params(cn: &str, serial: &[u8]) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Ringway Test");
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.serial_number = Some(SerialNumber::from_slice(serial));
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2060, 1, 1);
    params
}

/// A self-signed CA named `cn`, with `key` or a fresh P-256 key.
pub(super) fn ca_with_key(cn: &str, key: KeyPair) -> Issued {
    let mut params = params(cn, &[0x01]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    Issued {
        der: cert.der().to_vec(),
        pem: cert.pem(),
        key,
        params,
    }
}

pub(super) fn ca(cn: &str) -> Issued {
    ca_with_key(cn, KeyPair::generate().unwrap())
}

/// The DER of an AuthorityInfoAccess extension value with one OCSP URI.
pub(super) fn aia_extension(url: &str) -> CustomExtension {
    use der::asn1::{Ia5String, ObjectIdentifier};
    use der::Encode;
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax};
    let aia = AuthorityInfoAccessSyntax(vec![
        AccessDescription {
            access_method: ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.2"),
            access_location: GeneralName::UniformResourceIdentifier(
                Ia5String::new("http://127.0.0.1/ca.crt").unwrap(),
            ),
        },
        AccessDescription {
            access_method: ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1"),
            access_location: GeneralName::UniformResourceIdentifier(Ia5String::new(url).unwrap()),
        },
    ]);
    CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], aia.to_der().unwrap())
}

/// A TLS Feature extension (RFC 7633) listing `features`.
pub(super) fn tls_feature_extension(features: &[u8]) -> CustomExtension {
    let mut content = vec![0x30, (features.len() * 3) as u8];
    for f in features {
        content.extend([0x02, 0x01, *f]);
    }
    CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 24], content)
}

/// The test PKI: a CA, leaves, delegated responders and a rogue CA that has the
/// same name as the real one.
pub(super) struct Pki {
    pub ca: Issued,
    /// Leaf with an AIA OCSP URL; its serial has the high bit set (0x00 pad).
    pub leaf: Issued,
    /// Leaf with the must-staple TLS Feature extension.
    pub must_staple: Issued,
    /// Another leaf of the same CA.
    pub other: Issued,
    /// Responder cert issued by the CA with id-kp-OCSPSigning.
    pub delegate: Issued,
    /// Responder cert issued by the CA without any EKU extension.
    pub delegate_no_eku: Issued,
    /// Responder cert issued by the CA whose EKU is serverAuth only.
    pub delegate_wrong_eku: Issued,
    /// Responder cert issued by the CA with the EKU, expired in 2021.
    pub delegate_expired: Issued,
    /// Self-signed CA with the same subject as `ca` but another key.
    pub rogue: Issued,
    /// Responder cert with the EKU issued by the rogue CA.
    pub rogue_delegate: Issued,
}

pub(super) const CA_NAME: &str = "Ringway Test CA";

impl Pki {
    pub fn new() -> Pki {
        Pki::with_ca(ca(CA_NAME))
    }

    pub fn with_ca(ca: Issued) -> Pki {
        let leaf = ca.issue("leaf.test", &[0x8f, 0x01], |p| {
            p.custom_extensions.push(aia_extension(AIA_URL));
        });
        let must_staple = ca.issue("must.test", &[0x01, 0x02], |p| {
            p.custom_extensions.push(tls_feature_extension(&[5]));
        });
        let other = ca.issue("other.test", &[0x01, 0x03], |_| {});
        let ocsp_eku = |p: &mut CertificateParams| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
        };
        let delegate = ca.issue("OCSP responder", &[0x02, 0x01], ocsp_eku);
        let delegate_no_eku = ca.issue("OCSP responder no EKU", &[0x02, 0x05], |_| {});
        let delegate_wrong_eku = ca.issue("OCSP responder wrong EKU", &[0x02, 0x02], |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        });
        let delegate_expired = ca.issue("OCSP responder expired", &[0x02, 0x03], |p| {
            ocsp_eku(p);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        });
        let rogue = self::ca(CA_NAME);
        let rogue_delegate = rogue.issue("Rogue OCSP responder", &[0x02, 0x04], ocsp_eku);
        Pki {
            ca,
            leaf,
            must_staple,
            other,
            delegate,
            delegate_no_eku,
            delegate_wrong_eku,
            delegate_expired,
            rogue,
            rogue_delegate,
        }
    }
}

/// Runs `openssl` in `dir`, panicking with its output when it fails.
pub(super) fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is needed for the OCSP tests");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl {args:?} failed: {text}");
    text
}

/// One line of an OpenSSL CA database (index.txt).
pub(super) enum Entry<'a> {
    Valid(&'a str),
    /// Serial, revocation time as YYMMDDHHMMSSZ, reason.
    Revoked(&'a str, &'a str, &'a str),
}

fn index_text(entries: &[Entry<'_>]) -> String {
    let line = |status: &str, revoked: &str, serial: &str| {
        format!("{status}\t600101000000Z\t{revoked}\t{serial}\tunknown\t/CN={serial}\n")
    };
    entries
        .iter()
        .map(|e| match e {
            Entry::Valid(serial) => line("V", "", serial),
            Entry::Revoked(serial, at, reason) => line("R", &format!("{at},{reason}"), serial),
        })
        .collect()
}

/// The real responder: `openssl ocsp -reqin` answers `request` with a response
/// signed by `signer` for the issuer `ca` from `index`. `extra` adds options
/// (`-ndays 1` is added unless `extra` sets `-ndays`/`-nmin` or has
/// [`NO_NEXT_UPDATE`]).
pub(super) fn respond(
    request: &[u8],
    index: &[Entry<'_>],
    ca: &Issued,
    signer: &Issued,
    extra: &[&str],
) -> Vec<u8> {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    std::fs::write(d.join("index.txt"), index_text(index)).unwrap();
    std::fs::write(d.join("ca.pem"), &ca.pem).unwrap();
    std::fs::write(d.join("signer.pem"), &signer.pem).unwrap();
    std::fs::write(d.join("signer.key"), signer.key.serialize_pem()).unwrap();
    std::fs::write(d.join("req.der"), request).unwrap();
    let mut args = vec![
        "ocsp",
        "-index",
        "index.txt",
        "-CA",
        "ca.pem",
        "-rsigner",
        "signer.pem",
        "-rkey",
        "signer.key",
        "-reqin",
        "req.der",
        "-respout",
        "resp.der",
    ];
    let no_next = extra.contains(&NO_NEXT_UPDATE);
    let validity_set = extra.iter().any(|a| *a == "-ndays" || *a == "-nmin");
    args.extend(extra.iter().filter(|a| **a != NO_NEXT_UPDATE));
    if !no_next && !validity_set {
        args.extend(["-ndays", "1"]);
    }
    openssl(d, &args);
    std::fs::read(d.join("resp.der")).unwrap()
}

/// Marker for [`respond`]: produce a response without nextUpdate.
pub(super) const NO_NEXT_UPDATE: &str = "(no nextUpdate)";

/// thisUpdate and nextUpdate of the first SingleResponse (for the fake clock).
pub(super) fn response_times(resp: &[u8]) -> (SystemTime, Option<SystemTime>) {
    let r = x509_ocsp::OcspResponse::from_der(resp).unwrap();
    let bytes = r.response_bytes.unwrap();
    let basic = x509_ocsp::BasicOcspResponse::from_der(bytes.response.as_bytes()).unwrap();
    let single = &basic.tbs_response_data.responses[0];
    (
        single.this_update.0.to_system_time(),
        single.next_update.map(|t| t.0.to_system_time()),
    )
}
