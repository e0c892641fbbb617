//! Errors of the OCSP logic, with operator-readable messages.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A non-successful `OCSPResponseStatus` (RFC 6960 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseStatus {
    /// `malformedRequest` (1).
    MalformedRequest,
    /// `internalError` (2).
    InternalError,
    /// `tryLater` (3).
    TryLater,
    /// `sigRequired` (5).
    SigRequired,
    /// `unauthorized` (6): the responder does not serve this issuer.
    Unauthorized,
}

impl fmt::Display for ResponseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::MalformedRequest => "malformedRequest",
            Self::InternalError => "internalError",
            Self::TryLater => "tryLater",
            Self::SigRequired => "sigRequired",
            Self::Unauthorized => "unauthorized",
        };
        f.write_str(s)
    }
}

/// Why a certificate, a URL, an HTTP exchange or an OCSP response was rejected.
/// Nothing that produced an error may be stapled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OcspError {
    /// The leaf or issuer certificate cannot be used (unparsable, issuer mismatch).
    Certificate(String),
    /// The responder URL is unusable (not `http://`, bad host or port, ...).
    Url(String),
    /// The HTTP exchange failed (non-200 status, truncated body, ...).
    Http(String),
    /// The OCSP response is not valid DER of the expected structure.
    Malformed(String),
    /// The responder answered with a non-successful response status.
    NotSuccessful(ResponseStatus),
    /// The response type is not id-pkix-ocsp-basic; holds the type's OID.
    NotBasic(String),
    /// No SingleResponse is about this certificate.
    NoMatchingCertId,
    /// The responder says the certificate is revoked.
    Revoked {
        /// When the certificate was revoked.
        revocation_time: SystemTime,
        /// The CRL reason, when the responder gave one.
        reason: Option<String>,
    },
    /// The responder does not know the certificate.
    UnknownStatus,
    /// thisUpdate is more than the allowed clock skew in the future.
    NotYetValid {
        /// The response's thisUpdate.
        this_update: SystemTime,
    },
    /// The response is past its nextUpdate (or thisUpdate + default validity).
    Expired {
        /// The moment the response stopped being valid.
        expired_at: SystemTime,
    },
    /// No acceptable key verifies the response signature.
    BadSignature(String),
    /// The response is signed by a certificate that may not sign for this issuer.
    UnauthorizedSigner(String),
}

impl OcspError {
    /// True when the responder said the certificate is revoked.
    pub fn is_revoked(&self) -> bool {
        matches!(self, Self::Revoked { .. })
    }
}

/// `t` as an RFC 3339 UTC date for messages (Unix seconds when out of range).
fn fmt_time(t: SystemTime) -> String {
    match der::DateTime::from_system_time(t) {
        Ok(d) => d.to_string(),
        Err(_) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => format!("unix time {}", d.as_secs()),
            Err(e) => format!("unix time -{}", e.duration().as_secs()),
        },
    }
}

impl fmt::Display for OcspError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Certificate(m) => write!(f, "certificate unusable for OCSP: {m}"),
            Self::Url(m) => write!(f, "bad OCSP responder URL: {m}"),
            Self::Http(m) => write!(f, "OCSP responder HTTP error: {m}"),
            Self::Malformed(m) => write!(f, "malformed OCSP response: {m}"),
            Self::NotSuccessful(s) => write!(f, "OCSP responder answered status {s}"),
            Self::NotBasic(oid) => write!(f, "OCSP response type {oid} is not basic"),
            Self::NoMatchingCertId => {
                f.write_str("OCSP response has no status for this certificate (CertID mismatch)")
            }
            Self::Revoked {
                revocation_time,
                reason,
            } => {
                let t = fmt_time(*revocation_time);
                write!(f, "certificate revoked at {t}")?;
                match reason {
                    Some(r) => write!(f, " (reason: {r})"),
                    None => Ok(()),
                }
            }
            Self::UnknownStatus => f.write_str("OCSP responder does not know this certificate"),
            Self::NotYetValid { this_update } => write!(
                f,
                "OCSP response not yet valid: thisUpdate {} is more than 5 minutes ahead",
                fmt_time(*this_update)
            ),
            Self::Expired { expired_at } => {
                write!(f, "OCSP response expired at {}", fmt_time(*expired_at))
            }
            Self::BadSignature(m) => write!(f, "OCSP response signature invalid: {m}"),
            Self::UnauthorizedSigner(m) => write!(f, "OCSP response signer not authorized: {m}"),
        }
    }
}

impl std::error::Error for OcspError {}
