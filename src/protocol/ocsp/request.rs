//! The OCSPRequest (RFC 6960 §4.1) and the CertID it carries.

use super::{CertInfo, OcspError};
use der::asn1::{Null, ObjectIdentifier, OctetString};
use der::Encode;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_ocsp::{CertId, OcspRequest, Request, TbsRequest, Version};

/// id-sha1 (1.3.14.3.2.26), the CertID hash algorithm.
pub(crate) const OID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");

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

fn cert_id(info: &CertInfo) -> Result<CertId, der::Error> {
    Ok(CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: OID_SHA1,
            parameters: Some(Null.into()),
        },
        issuer_name_hash: OctetString::new(info.issuer_name_hash.to_vec())?,
        issuer_key_hash: OctetString::new(info.issuer_key_hash.to_vec())?,
        serial_number: info.serial.clone(),
    })
}

/// Encodes the request; called once by [`CertInfo::new`].
pub(crate) fn encode_request(info: &CertInfo) -> Result<Vec<u8>, OcspError> {
    let encode = || -> Result<Vec<u8>, der::Error> {
        OcspRequest {
            tbs_request: TbsRequest {
                version: Version::V1,
                requestor_name: None,
                request_list: vec![Request {
                    req_cert: cert_id(info)?,
                    single_request_extensions: None,
                }],
                request_extensions: None,
            },
            optional_signature: None,
        }
        .to_der()
    };
    encode().map_err(|e| OcspError::Certificate(format!("cannot encode OCSP request: {e}")))
}
