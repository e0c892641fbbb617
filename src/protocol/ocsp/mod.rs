//! OCSP stapling protocol logic (RFC 6960), sans-IO.
//!
//! Nothing in this module opens a socket, reads a file or reads the clock: every
//! function takes bytes in and gives bytes or decisions out, and the current time
//! is always passed in as `now: SystemTime`. The I/O layer (the OCSP core) drives it:
//!
//! 1. At configuration time, per certificate: [`CertInfo::new`]`(leaf_der, issuer_der)`.
//!    `issuer_der` is the `ca_file` certificate when one is configured, else the
//!    certificate that follows the leaf in the chain. It is both the CertID issuer
//!    and the trust anchor for responses, so it must be the leaf's *direct* issuer
//!    ([`CertInfo::new`] checks the name and the leaf's signature).
//!    The responder URL is the configured `responder`, else
//!    [`CertInfo::aia_ocsp_url`]. [`CertInfo::must_staple`] reports the TLS Feature
//!    extension (OID 1.3.6.1.5.5.7.1.24 containing `status_request` = 5).
//! 2. Fetch: [`http_post`]`(url, &`[`build_request`]`(&info))` gives the host/port to
//!    connect to and the exact bytes to write (HTTP/1.0 POST, `Connection: close`).
//!    Read until the peer closes (at most [`MAX_HTTP_RESPONSE`] bytes), then
//!    [`parse_http_response`] gives the body. Only `http://` is supported.
//! 3. [`verify`]`(body, &info, now)` gives a [`Staple`] (the DER to hand to rustls as
//!    `CertifiedKey::ocsp`) or an [`OcspError`] saying why it must not be stapled.
//!    [`OcspError::Revoked`] is distinct; its `Display` contains "revoked".
//! 4. Scheduling with [`Schedule`]: after a success call [`Schedule::on_success`] and
//!    sleep until [`Schedule::next_refresh`] (half of the validity window, ± up to
//!    10% of the window as jitter, which the caller draws in `[-1, 1]`); after a
//!    failure sleep until [`Schedule::on_failure`] (`retry_min · 2^failures`, capped at
//!    `retry_max`). Keep serving the last good staple while [`is_servable`] holds and
//!    drop it at [`Staple::expires_at`] at the latest.
//!
//! # Verification rules ([`verify`])
//! - `responseStatus` is successful ([`OcspError::NotSuccessful`] otherwise) and the
//!   response type is id-pkix-ocsp-basic ([`OcspError::NotBasic`]).
//! - The signature over `tbsResponseData` (checked on the received bytes) is made by
//!   the issuer's key, or by a certificate carried in the response that is issued by
//!   the issuer (signature checked), is valid at `now` and carries the
//!   id-kp-OCSPSigning EKU. A carried certificate that signed the response but fails
//!   those checks gives [`OcspError::UnauthorizedSigner`]; a signature that no
//!   candidate key verifies gives [`OcspError::BadSignature`]. The ResponderID field is
//!   not trusted for anything: the keys are tried instead. The signature is checked
//!   before any content is believed (a forged "revoked" is a `BadSignature`).
//! - A SingleResponse whose CertID (SHA-1) matches the certificate
//!   ([`OcspError::NoMatchingCertId`]); its status is good ([`OcspError::Revoked`],
//!   [`OcspError::UnknownStatus`]).
//! - `thisUpdate <= now + `[`CLOCK_SKEW`] ([`OcspError::NotYetValid`]) and
//!   `now <` [`Staple::expires_at`] ([`OcspError::Expired`]).
//!
//! # Responses without nextUpdate
//! RFC 6960 lets a responder omit nextUpdate ("newer information is always
//! available"). Such a staple is treated as valid for [`DEFAULT_VALIDITY`] (1 hour)
//! after its thisUpdate, for scheduling *and* for serving: [`Staple::expires_at`] is
//! `thisUpdate + 1h`, so it is refreshed after about 30 minutes and never served
//! more than an hour after it was produced.
//!
//! # Limits
//! - CertIDs are matched with SHA-1 only (what requests use, and what responders echo).
//! - Signature algorithms are those of rustls-webpki with *ring*: ECDSA P-256/P-384,
//!   Ed25519, RSA PKCS#1 (SHA-256/384/512, 2048–8192 bits) and RSA-PSS. A response
//!   signed with SHA-1 is rejected as [`OcspError::BadSignature`].
//! - No nonce is sent (responders cache responses; a nonce defeats that).
//! - The issuer must be an X.509 v3 certificate that rustls-webpki parses.
//!
//! # Tests
//! The unit tests build PKIs with rcgen and get their responses from the real
//! `openssl ocsp` responder (the `openssl` CLI must be on PATH; CI installs it).

mod cert;
mod error;
mod http;
mod request;
mod schedule;
mod sig;
mod verify;

#[cfg(test)]
mod tests;

pub use cert::{build_request, not_after_unix, CertInfo};
pub use error::{OcspError, ResponseStatus};
pub use http::{http_post, parse_http_response, HttpTarget, MAX_HTTP_RESPONSE};
pub use schedule::{is_servable, Schedule, MAX_RETRY_DELAY};
pub use verify::{verify, Staple, CLOCK_SKEW, DEFAULT_VALIDITY};
