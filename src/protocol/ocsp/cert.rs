//! What OCSP needs to know about a certificate and its issuer.

use super::error::OcspError;
use super::request::{encode_request, CertKey};
use super::sig::{verify_by_cert, RawSigned};
use der::asn1::{Int, ObjectIdentifier};
use der::{Decode, Encode};
use sha1::{Digest, Sha1};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::AuthorityInfoAccessSyntax;
use x509_cert::serial_number::SerialNumber;
use x509_cert::Certificate;

/// id-pe-authorityInfoAccess (1.3.6.1.5.5.7.1.1).
const OID_AIA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.1");
/// id-ad-ocsp (1.3.6.1.5.5.7.48.1).
const OID_AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
/// id-pe-tlsfeature (1.3.6.1.5.5.7.1.24), RFC 7633.
const OID_TLS_FEATURE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.24");
/// TLS extension number of `status_request`.
const STATUS_REQUEST: u8 = 5;

/// A certificate to staple for, with its issuer. Built once from DER.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// SHA-1 of the issuer's subject Name DER (CertID.issuerNameHash).
    pub(crate) issuer_name_hash: [u8; 20],
    /// SHA-1 of the issuer's subjectPublicKey bits (CertID.issuerKeyHash).
    pub(crate) issuer_key_hash: [u8; 20],
    /// The leaf serial (CertID.serialNumber), kept as encoded in the leaf.
    pub(crate) serial: SerialNumber,
    /// The issuer certificate: trust anchor for responses.
    pub(crate) issuer_der: Vec<u8>,
    /// The DER OCSPRequest for this certificate.
    pub(crate) request_der: Vec<u8>,
    /// The first OCSP responder URL of the leaf's Authority Information Access.
    pub aia_ocsp_url: Option<String>,
    /// The leaf has the TLS Feature extension with `status_request` (must-staple).
    pub must_staple: bool,
    /// The leaf's subject, RFC 4514 style, for logs.
    pub subject: String,
}

fn cert_err(msg: impl Into<String>) -> OcspError {
    OcspError::Certificate(msg.into())
}

impl CertInfo {
    /// Reads the leaf and its direct issuer (both DER). Fails when either does not
    /// parse, or when the leaf is not issued (named and signed) by `issuer_der`.
    pub fn new(leaf_der: &[u8], issuer_der: &[u8]) -> Result<CertInfo, OcspError> {
        let leaf = Certificate::from_der(leaf_der).map_err(|e| cert_err(format!("leaf: {e}")))?;
        let issuer =
            Certificate::from_der(issuer_der).map_err(|e| cert_err(format!("issuer: {e}")))?;
        let issuer_name = issuer.tbs_certificate.subject.to_der();
        let leaf_issuer = leaf.tbs_certificate.issuer.to_der();
        let issuer_name = issuer_name.map_err(|e| cert_err(e.to_string()))?;
        if leaf_issuer.map_err(|e| cert_err(e.to_string()))? != issuer_name {
            return Err(cert_err(format!(
                "issuer certificate {} is not the leaf's issuer {}",
                issuer.tbs_certificate.subject, leaf.tbs_certificate.issuer
            )));
        }
        check_leaf_signature(leaf_der, issuer_der)?;
        let spki = &issuer.tbs_certificate.subject_public_key_info;
        let mut info = CertInfo {
            issuer_name_hash: Sha1::digest(&issuer_name).into(),
            issuer_key_hash: Sha1::digest(spki.subject_public_key.raw_bytes()).into(),
            serial: leaf.tbs_certificate.serial_number.clone(),
            issuer_der: issuer_der.to_vec(),
            request_der: Vec::new(),
            aia_ocsp_url: aia_ocsp_url(&leaf)?,
            must_staple: must_staple(&leaf)?,
            subject: leaf.tbs_certificate.subject.to_string(),
        };
        info.request_der = encode_request(&CertKey {
            issuer_name_hash: &info.issuer_name_hash,
            issuer_key_hash: &info.issuer_key_hash,
            serial: &info.serial,
        })?;
        Ok(info)
    }

    /// The leaf serial number as uppercase hex without leading zero bytes (as in
    /// an OpenSSL index.txt), for logs.
    pub fn serial_hex(&self) -> String {
        let bytes = self.serial.as_bytes();
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        let hex: String = bytes[start..].iter().map(|b| format!("{b:02X}")).collect();
        if hex.is_empty() {
            "00".to_owned()
        } else {
            hex
        }
    }

    /// The issuer certificate (DER) responses are verified against.
    pub fn issuer_der(&self) -> &[u8] {
        &self.issuer_der
    }
}

fn check_leaf_signature(leaf_der: &[u8], issuer_der: &[u8]) -> Result<(), OcspError> {
    let raw = RawSigned::parse(leaf_der).map_err(|e| cert_err(format!("leaf: {e}")))?;
    let data = raw.signed_data().map_err(cert_err)?;
    verify_by_cert(issuer_der, &data)
        .map_err(|e| cert_err(format!("leaf is not signed by the issuer certificate: {e}")))
}

/// The leaf's extension value with `oid`, if present.
fn extension<'c>(cert: &'c Certificate, oid: &ObjectIdentifier) -> Option<&'c [u8]> {
    let exts = cert.tbs_certificate.extensions.as_deref()?;
    exts.iter()
        .find(|e| e.extn_id == *oid)
        .map(|e| e.extn_value.as_bytes())
}

/// The first id-ad-ocsp URI of the Authority Information Access extension.
fn aia_ocsp_url(cert: &Certificate) -> Result<Option<String>, OcspError> {
    let Some(value) = extension(cert, &OID_AIA) else {
        return Ok(None);
    };
    let aia = AuthorityInfoAccessSyntax::from_der(value)
        .map_err(|e| cert_err(format!("authorityInfoAccess: {e}")))?;
    Ok(aia.0.iter().find_map(|ad| match &ad.access_location {
        GeneralName::UniformResourceIdentifier(uri) if ad.access_method == OID_AD_OCSP => {
            Some(uri.as_str().to_owned())
        }
        _ => None,
    }))
}

/// Whether the TLS Feature extension lists `status_request`.
fn must_staple(cert: &Certificate) -> Result<bool, OcspError> {
    let Some(value) = extension(cert, &OID_TLS_FEATURE) else {
        return Ok(false);
    };
    let features =
        Vec::<Int>::from_der(value).map_err(|e| cert_err(format!("TLS feature: {e}")))?;
    Ok(features.iter().any(|f| f.as_bytes() == [STATUS_REQUEST]))
}

/// The DER OCSPRequest for `info`'s certificate: one CertID (SHA-1), unsigned, no
/// nonce, so that responders may answer from their cache.
pub fn build_request(info: &CertInfo) -> Vec<u8> {
    info.request_der.clone()
}

impl CertInfo {
    /// The DER OCSPRequest, borrowed (the same bytes as [`build_request`]).
    pub fn request_der(&self) -> &[u8] {
        &self.request_der
    }
}

/// The certificate's notAfter in unix seconds (`ringway_certificate_expiry_timestamp_seconds`);
/// `None` when the DER does not parse.
pub fn not_after_unix(der: &[u8]) -> Option<u64> {
    let cert = Certificate::from_der(der).ok()?;
    Some(
        cert.tbs_certificate
            .validity
            .not_after
            .to_unix_duration()
            .as_secs(),
    )
}
