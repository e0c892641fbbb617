//! The OCSPRequest (RFC 6960 §4.1) and the CertID it carries.

use super::error::OcspError;
use der::asn1::{Null, ObjectIdentifier, OctetString};
use der::Encode;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_ocsp::{CertId, OcspRequest, Request, TbsRequest, Version};

/// id-sha1 (1.3.14.3.2.26), the CertID hash algorithm.
pub(crate) const OID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");

/// What identifies a certificate to a responder: SHA-1 hashes of its issuer's name and key,
/// and its serial number.
pub(crate) struct CertKey<'a> {
    pub issuer_name_hash: &'a [u8; 20],
    pub issuer_key_hash: &'a [u8; 20],
    pub serial: &'a SerialNumber,
}

fn cert_id(info: &CertKey<'_>) -> Result<CertId, der::Error> {
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

/// Encodes the request; called once by `CertInfo::new`.
pub(crate) fn encode_request(info: &CertKey<'_>) -> Result<Vec<u8>, OcspError> {
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
