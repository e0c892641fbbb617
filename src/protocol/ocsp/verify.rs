//! Verification of an OCSPResponse for one certificate (RFC 6960 §3.2, §4.2).

use super::cert::CertInfo;
use super::error::{OcspError, ResponseStatus};
use super::sig::{check_delegate, verify_by_cert, RawSigned, SignedData};
use der::asn1::ObjectIdentifier;
use der::Decode;
use std::time::{Duration, SystemTime};
use x509_ocsp::{CertId, CertStatus, OcspResponse, OcspResponseStatus, ResponseData};

/// Clock skew allowed for a response's thisUpdate being in the future.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// Validity assumed for a response that has no nextUpdate, counted from thisUpdate.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(60 * 60);

/// id-pkix-ocsp-basic (1.3.6.1.5.5.7.48.1.1).
const OID_OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");

/// A verified OCSP response, ready to staple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staple {
    /// The complete DER OCSPResponse, as received: what the TLS layer sends.
    pub der: Vec<u8>,
    /// thisUpdate of the certificate's SingleResponse.
    pub this_update: SystemTime,
    /// nextUpdate of the certificate's SingleResponse, when the responder set one.
    pub next_update: Option<SystemTime>,
}

impl Staple {
    /// The moment the staple stops being servable: nextUpdate, or
    /// thisUpdate + [`DEFAULT_VALIDITY`] when the response has no nextUpdate.
    pub fn expires_at(&self) -> SystemTime {
        self.next_update
            .unwrap_or_else(|| self.this_update + DEFAULT_VALIDITY)
    }
}

fn malformed(e: impl ToString) -> OcspError {
    OcspError::Malformed(e.to_string())
}

/// Verifies `resp_der` (a DER OCSPResponse) for `info`'s certificate at `now`.
/// See the module documentation for the rules; any failure means: do not staple.
pub fn verify(resp_der: &[u8], info: &CertInfo, now: SystemTime) -> Result<Staple, OcspError> {
    let response = OcspResponse::from_der(resp_der).map_err(malformed)?;
    let basic = basic_response_bytes(&response)?;
    let raw = RawSigned::parse(basic).map_err(OcspError::Malformed)?;
    let signed = raw.signed_data().map_err(OcspError::Malformed)?;
    let data = ResponseData::from_der(&signed.tbs).map_err(malformed)?;
    check_signer(&raw, &signed, info, now)?;
    let single = data
        .responses
        .iter()
        .find(|s| cert_id_matches(&s.cert_id, info))
        .ok_or(OcspError::NoMatchingCertId)?;
    check_status(&single.cert_status)?;
    let staple = Staple {
        der: resp_der.to_vec(),
        this_update: single.this_update.0.to_system_time(),
        next_update: single.next_update.map(|t| t.0.to_system_time()),
    };
    if staple.next_update.is_some_and(|n| n < staple.this_update) {
        return Err(malformed("nextUpdate is before thisUpdate"));
    }
    check_window(&staple, now)?;
    Ok(staple)
}

/// The BasicOCSPResponse DER inside a successful response.
fn basic_response_bytes(response: &OcspResponse) -> Result<&[u8], OcspError> {
    let status = match response.response_status {
        OcspResponseStatus::Successful => None,
        OcspResponseStatus::MalformedRequest => Some(ResponseStatus::MalformedRequest),
        OcspResponseStatus::InternalError => Some(ResponseStatus::InternalError),
        OcspResponseStatus::TryLater => Some(ResponseStatus::TryLater),
        OcspResponseStatus::SigRequired => Some(ResponseStatus::SigRequired),
        OcspResponseStatus::Unauthorized => Some(ResponseStatus::Unauthorized),
    };
    if let Some(status) = status {
        return Err(OcspError::NotSuccessful(status));
    }
    let bytes = response
        .response_bytes
        .as_ref()
        .ok_or_else(|| malformed("successful response without responseBytes"))?;
    if bytes.response_type != OID_OCSP_BASIC {
        return Err(OcspError::NotBasic(bytes.response_type.to_string()));
    }
    Ok(bytes.response.as_bytes())
}

/// Accepts a signature by the issuer's key, or by a certificate carried in the
/// response that the issuer authorized (see [`check_delegate`]).
fn check_signer(
    raw: &RawSigned<'_>,
    signed: &SignedData<'_>,
    info: &CertInfo,
    now: SystemTime,
) -> Result<(), OcspError> {
    let issuer_err = match verify_by_cert(&info.issuer_der, signed) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let certs = raw.cert_ders().map_err(OcspError::Malformed)?;
    for cert in &certs {
        if verify_by_cert(cert, signed).is_ok() {
            return check_delegate(cert, &info.issuer_der, now)
                .map_err(OcspError::UnauthorizedSigner);
        }
    }
    Err(OcspError::BadSignature(format!(
        "not made by the issuer's key ({issuer_err}) nor by any of the {} certificate(s) \
         in the response",
        certs.len()
    )))
}

/// Whether a response CertID names `info`'s certificate (SHA-1 CertIDs only).
fn cert_id_matches(id: &CertId, info: &CertInfo) -> bool {
    id.hash_algorithm.oid == super::request::OID_SHA1
        && id.issuer_name_hash.as_bytes() == info.issuer_name_hash
        && id.issuer_key_hash.as_bytes() == info.issuer_key_hash
        && id.serial_number == info.serial
}

fn check_status(status: &CertStatus) -> Result<(), OcspError> {
    match status {
        CertStatus::Good(_) => Ok(()),
        CertStatus::Revoked(info) => Err(OcspError::Revoked {
            revocation_time: info.revocation_time.0.to_system_time(),
            reason: info.revocation_reason.map(|r| format!("{r:?}")),
        }),
        CertStatus::Unknown(_) => Err(OcspError::UnknownStatus),
    }
}

fn check_window(staple: &Staple, now: SystemTime) -> Result<(), OcspError> {
    if staple.this_update > now + CLOCK_SKEW {
        return Err(OcspError::NotYetValid {
            this_update: staple.this_update,
        });
    }
    let expired_at = staple.expires_at();
    if now >= expired_at {
        return Err(OcspError::Expired { expired_at });
    }
    Ok(())
}
