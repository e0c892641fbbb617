//! Raw views of signed DER structures and signature checks (rustls-webpki).

use der::asn1::{AnyRef, BitStringRef};
use der::{Decode, Encode, Sequence};
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use std::time::{SystemTime, UNIX_EPOCH};
use webpki::{EndEntityCert, KeyUsage};
use x509_cert::spki::AlgorithmIdentifierOwned;

/// DER contents of the OID id-kp-OCSPSigning (1.3.6.1.5.5.7.3.9).
const EKU_OCSP_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x09];

/// `SEQUENCE { tbs, signatureAlgorithm, signature, [0] EXPLICIT certs OPTIONAL }`:
/// the shape of both `Certificate` and `BasicOCSPResponse`. `tbs` and the certs
/// stay raw so that signatures are checked on the bytes as received.
#[derive(Sequence)]
pub(crate) struct RawSigned<'a> {
    pub tbs: AnyRef<'a>,
    pub algorithm: AlgorithmIdentifierOwned,
    pub signature: BitStringRef<'a>,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    pub certs: Option<Vec<AnyRef<'a>>>,
}

/// A signature to check: the signed bytes, the algorithm and the signature.
pub(crate) struct SignedData<'a> {
    pub tbs: Vec<u8>,
    /// AlgorithmIdentifier contents (no outer SEQUENCE header), as webpki wants.
    pub alg_id: Vec<u8>,
    pub signature: &'a [u8],
}

impl<'a> RawSigned<'a> {
    /// Parses a signed structure; the error text says what failed.
    pub fn parse(der: &'a [u8]) -> Result<Self, String> {
        Self::from_der(der).map_err(|e| e.to_string())
    }

    /// The signed bytes, algorithm and signature, ready for [`verify_by_cert`].
    pub fn signed_data(&self) -> Result<SignedData<'a>, String> {
        let tbs = self.tbs.to_der().map_err(|e| e.to_string())?;
        let mut alg_id = self.algorithm.oid.to_der().map_err(|e| e.to_string())?;
        if let Some(params) = &self.algorithm.parameters {
            alg_id.extend(params.to_der().map_err(|e| e.to_string())?);
        }
        let signature = self
            .signature
            .as_bytes()
            .ok_or("signature BIT STRING has unused bits")?;
        Ok(SignedData {
            tbs,
            alg_id,
            signature,
        })
    }

    /// The certificates carried in the structure, each re-encoded as DER.
    pub fn cert_ders(&self) -> Result<Vec<Vec<u8>>, String> {
        let certs = self.certs.as_deref().unwrap_or_default();
        certs
            .iter()
            .map(|c| c.to_der().map_err(|e| e.to_string()))
            .collect()
    }
}

/// The webpki algorithms whose signature AlgorithmIdentifier equals `alg_id`.
fn algorithms_for(alg_id: &[u8]) -> Vec<&'static dyn SignatureVerificationAlgorithm> {
    webpki::ALL_VERIFICATION_ALGS
        .iter()
        .copied()
        .filter(|a| a.signature_alg_id().as_ref() == alg_id)
        .collect()
}

/// Checks that the key of certificate `signer_der` made `data`'s signature.
pub(crate) fn verify_by_cert(signer_der: &[u8], data: &SignedData<'_>) -> Result<(), String> {
    let der = CertificateDer::from(signer_der);
    let signer = EndEntityCert::try_from(&der).map_err(|e| format!("signer cert: {e}"))?;
    let algs = algorithms_for(&data.alg_id);
    if algs.is_empty() {
        return Err("unsupported signature algorithm".into());
    }
    let mut last = String::new();
    for alg in algs {
        match signer.verify_signature(alg, &data.tbs, data.signature) {
            Ok(()) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// Converts `now` to webpki's time type (times before 1970 become 1970).
fn unix_time(now: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default())
}

/// Checks that `responder_der` may sign OCSP responses for `issuer_der`: signed
/// by the issuer's key, valid at `now`, not a CA, with the id-kp-OCSPSigning EKU.
pub(crate) fn check_delegate(
    responder_der: &[u8],
    issuer_der: &[u8],
    now: SystemTime,
) -> Result<(), String> {
    let raw = RawSigned::parse(responder_der).map_err(|e| format!("responder cert: {e}"))?;
    let signed = raw.signed_data()?;
    if verify_by_cert(issuer_der, &signed).is_err() {
        return Err("responder certificate is not issued by the certificate's issuer".into());
    }
    let issuer = CertificateDer::from(issuer_der);
    let anchors =
        [webpki::anchor_from_trusted_cert(&issuer).map_err(|e| format!("issuer cert: {e}"))?];
    let responder = CertificateDer::from(responder_der);
    let cert = EndEntityCert::try_from(&responder).map_err(|e| format!("responder cert: {e}"))?;
    let result = cert.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &[],
        unix_time(now),
        KeyUsage::required(EKU_OCSP_SIGNING),
        None,
        None,
    );
    match result {
        Ok(_) => Ok(()),
        Err(webpki::Error::RequiredEkuNotFoundContext(_)) => {
            Err("responder certificate lacks the OCSP-signing extended key usage".into())
        }
        Err(e) => Err(format!("responder certificate rejected: {e}")),
    }
}
