//! `verify` against responses made by the real `openssl ocsp` responder.

use super::super::{build_request, verify, CertInfo, OcspError, ResponseStatus, DEFAULT_VALIDITY};
use super::*;
use der::Encode;

/// The leaf's CertInfo, its request, and the index marking it (and `other`) good.
fn setup(pki: &Pki) -> (CertInfo, Vec<u8>) {
    let info = CertInfo::new(&pki.leaf.der, &pki.ca.der).unwrap();
    let req = build_request(&info);
    (info, req)
}

fn good_index(pki: &Pki) -> Vec<String> {
    [&pki.leaf, &pki.other]
        .iter()
        .map(|c| CertInfo::new(&c.der, &pki.ca.der).unwrap().serial_hex())
        .collect()
}

/// A response for the leaf, by `signer`, with `extra` openssl options.
fn response(pki: &Pki, signer: &Issued, extra: &[&str]) -> (CertInfo, Vec<u8>) {
    let (info, req) = setup(pki);
    let serials = good_index(pki);
    let index: Vec<Entry> = serials.iter().map(|s| Entry::Valid(s)).collect();
    let resp = respond(&req, &index, &pki.ca, signer, extra);
    (info, resp)
}

/// `now` one minute after the response's thisUpdate.
fn soon_after(resp: &[u8]) -> SystemTime {
    response_times(resp).0 + MIN
}

#[test]
fn good_response_signed_by_issuer() {
    let pki = Pki::new();
    let (info, resp) = response(&pki, &pki.ca, &[]);
    let (this, next) = response_times(&resp);
    let staple = verify(&resp, &info, this + MIN).unwrap();
    assert_eq!(staple.der, resp);
    assert_eq!(staple.this_update, this);
    assert_eq!(staple.next_update, next);
    assert_eq!(next.unwrap().duration_since(this).unwrap(), DAY);
    assert_eq!(staple.expires_at(), this + DAY);
}

#[test]
fn good_response_by_issuer_with_key_id_and_no_certs() {
    let pki = Pki::new();
    let (info, resp) = response(&pki, &pki.ca, &["-resp_key_id", "-resp_no_certs"]);
    verify(&resp, &info, soon_after(&resp)).unwrap();
}

#[test]
fn good_response_signed_by_delegated_responder() {
    let pki = Pki::new();
    let (info, resp) = response(&pki, &pki.delegate, &[]);
    verify(&resp, &info, soon_after(&resp)).unwrap();
    let (info, resp) = response(&pki, &pki.delegate, &["-resp_key_id"]);
    verify(&resp, &info, soon_after(&resp)).unwrap();
}

fn expect_unauthorized(result: Result<super::super::Staple, OcspError>, needle: &str) {
    match result {
        Err(OcspError::UnauthorizedSigner(m)) => assert!(m.contains(needle), "{m}"),
        other => panic!("expected UnauthorizedSigner({needle}), got {other:?}"),
    }
}

#[test]
fn delegate_without_ocsp_signing_eku_is_unauthorized() {
    let pki = Pki::new();
    let (info, resp) = response(&pki, &pki.delegate_no_eku, &[]);
    expect_unauthorized(verify(&resp, &info, soon_after(&resp)), "OCSP-signing");
    let (info, resp) = response(&pki, &pki.delegate_wrong_eku, &[]);
    expect_unauthorized(verify(&resp, &info, soon_after(&resp)), "OCSP-signing");
}

#[test]
fn expired_delegate_is_unauthorized() {
    let pki = Pki::new();
    let (info, resp) = response(&pki, &pki.delegate_expired, &[]);
    expect_unauthorized(verify(&resp, &info, soon_after(&resp)), "rejected");
}

#[test]
fn delegate_of_rogue_ca_with_same_name_is_unauthorized() {
    let pki = Pki::new();
    let (info, resp) = response(&pki, &pki.rogue_delegate, &[]);
    expect_unauthorized(verify(&resp, &info, soon_after(&resp)), "not issued");
}

#[test]
fn rogue_ca_signature_is_rejected() {
    let pki = Pki::new();
    // The rogue CA's certificate rides along: it signed, but is not the issuer.
    let (info, resp) = response(&pki, &pki.rogue, &[]);
    expect_unauthorized(verify(&resp, &info, soon_after(&resp)), "not issued");
    // Without certificates no acceptable key verifies the signature.
    let (info, resp) = response(&pki, &pki.rogue, &["-resp_no_certs"]);
    let err = verify(&resp, &info, soon_after(&resp)).unwrap_err();
    assert!(matches!(err, OcspError::BadSignature(_)), "{err:?}");
}

#[test]
fn delegated_response_without_its_certificate_is_bad_signature() {
    let pki = Pki::new();
    let (info, resp) = response(&pki, &pki.delegate, &["-resp_no_certs"]);
    let err = verify(&resp, &info, soon_after(&resp)).unwrap_err();
    assert!(matches!(err, OcspError::BadSignature(_)), "{err:?}");
}

#[test]
fn tampered_signature_is_rejected() {
    let pki = Pki::new();
    let (info, mut resp) = response(&pki, &pki.ca, &["-resp_no_certs"]);
    let now = soon_after(&resp);
    verify(&resp, &info, now).unwrap();
    // Without certs the signature BIT STRING ends the response.
    let last = resp.len() - 1;
    resp[last] ^= 0x01;
    let err = verify(&resp, &info, now).unwrap_err();
    assert!(matches!(err, OcspError::BadSignature(_)), "{err:?}");
}

#[test]
fn response_for_another_certificate_has_no_matching_cert_id() {
    let pki = Pki::new();
    let info = CertInfo::new(&pki.leaf.der, &pki.ca.der).unwrap();
    let other = CertInfo::new(&pki.other.der, &pki.ca.der).unwrap();
    let serials = good_index(&pki);
    let index: Vec<Entry> = serials.iter().map(|s| Entry::Valid(s)).collect();
    let resp = respond(&build_request(&other), &index, &pki.ca, &pki.ca, &[]);
    verify(&resp, &other, soon_after(&resp)).unwrap();
    assert_eq!(
        verify(&resp, &info, soon_after(&resp)),
        Err(OcspError::NoMatchingCertId)
    );
}

#[test]
fn matching_single_response_is_found_among_several() {
    let pki = Pki::new();
    let info = CertInfo::new(&pki.leaf.der, &pki.ca.der).unwrap();
    let dir = TempDir::new().unwrap();
    for (name, c) in [
        ("ca.pem", &pki.ca),
        ("other.pem", &pki.other),
        ("leaf.pem", &pki.leaf),
    ] {
        std::fs::write(dir.path().join(name), &c.pem).unwrap();
    }
    let args = [
        "ocsp",
        "-issuer",
        "ca.pem",
        "-cert",
        "other.pem",
        "-cert",
        "leaf.pem",
    ];
    let args = [&args[..], &["-no_nonce", "-reqout", "req.der"]].concat();
    openssl(dir.path(), &args);
    let req = std::fs::read(dir.path().join("req.der")).unwrap();
    let serials = good_index(&pki);
    let (leaf, other) = (&serials[0], &serials[1]);
    let index = [Entry::Valid(other), Entry::Valid(leaf)];
    let resp = respond(&req, &index, &pki.ca, &pki.ca, &[]);
    verify(&resp, &info, soon_after(&resp)).unwrap();
    // The same two-certificate request answered with the leaf revoked.
    let index = [
        Entry::Valid(other),
        Entry::Revoked(leaf, "240101000000Z", "keyCompromise"),
    ];
    let resp = respond(&req, &index, &pki.ca, &pki.ca, &[]);
    assert!(verify(&resp, &info, soon_after(&resp))
        .unwrap_err()
        .is_revoked());
}

#[test]
fn revoked_certificate_is_reported_as_revoked() {
    let pki = Pki::new();
    let (info, req) = setup(&pki);
    let serial = info.serial_hex();
    let index = [Entry::Revoked(&serial, "240102030405Z", "keyCompromise")];
    let resp = respond(&req, &index, &pki.ca, &pki.ca, &[]);
    let err = verify(&resp, &info, soon_after(&resp)).unwrap_err();
    let revoked_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_164_645);
    assert_eq!(
        err,
        OcspError::Revoked {
            revocation_time: revoked_at,
            reason: Some("KeyCompromise".into())
        }
    );
    assert!(err.is_revoked());
    let msg = err.to_string();
    assert!(
        msg.contains("revoked") && msg.contains("2024-01-02T03:04:05Z"),
        "{msg}"
    );
}

#[test]
fn forged_revocation_is_a_signature_error_not_revoked() {
    let pki = Pki::new();
    let (info, req) = setup(&pki);
    let serial = info.serial_hex();
    let index = [Entry::Revoked(&serial, "240102030405Z", "keyCompromise")];
    let resp = respond(&req, &index, &pki.ca, &pki.rogue, &["-resp_no_certs"]);
    let err = verify(&resp, &info, soon_after(&resp)).unwrap_err();
    assert!(matches!(err, OcspError::BadSignature(_)), "{err:?}");
}

#[test]
fn certificate_unknown_to_responder() {
    let pki = Pki::new();
    let (info, req) = setup(&pki);
    let resp = respond(&req, &[Entry::Valid("ABCDEF")], &pki.ca, &pki.ca, &[]);
    assert_eq!(
        verify(&resp, &info, soon_after(&resp)),
        Err(OcspError::UnknownStatus)
    );
}

#[test]
fn expired_response_is_rejected_at_next_update() {
    let pki = Pki::new();
    let (info, resp) = response(&pki, &pki.ca, &["-nmin", "30"]);
    let (this, next) = response_times(&resp);
    let next = next.unwrap();
    assert_eq!(next, this + 30 * MIN);
    verify(&resp, &info, next - Duration::from_secs(1)).unwrap();
    assert_eq!(
        verify(&resp, &info, next),
        Err(OcspError::Expired { expired_at: next })
    );
    let err = verify(&resp, &info, this + DAY).unwrap_err();
    assert!(matches!(err, OcspError::Expired { .. }), "{err:?}");
    assert!(err.to_string().contains("expired"));
}

#[test]
fn this_update_in_the_future_beyond_skew_is_not_yet_valid() {
    let pki = Pki::new();
    let (info, resp) = response(&pki, &pki.ca, &[]);
    let (this, _) = response_times(&resp);
    verify(&resp, &info, this - 5 * MIN).unwrap();
    assert_eq!(
        verify(&resp, &info, this - 5 * MIN - Duration::from_secs(1)),
        Err(OcspError::NotYetValid { this_update: this })
    );
}

#[test]
fn response_without_next_update_gets_default_validity() {
    let pki = Pki::new();
    let (info, resp) = response(&pki, &pki.ca, &[NO_NEXT_UPDATE]);
    let (this, next) = response_times(&resp);
    assert_eq!(next, None);
    let staple = verify(&resp, &info, this + MIN).unwrap();
    assert_eq!(staple.next_update, None);
    assert_eq!(staple.expires_at(), this + DEFAULT_VALIDITY);
    let err = verify(&resp, &info, this + DEFAULT_VALIDITY).unwrap_err();
    assert!(matches!(err, OcspError::Expired { .. }), "{err:?}");
}

#[test]
fn non_successful_statuses_are_reported() {
    let pki = Pki::new();
    let (info, _) = setup(&pki);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let cases = [
        (
            x509_ocsp::OcspResponse::try_later(),
            ResponseStatus::TryLater,
            "tryLater",
        ),
        (
            x509_ocsp::OcspResponse::unauthorized(),
            ResponseStatus::Unauthorized,
            "unauthorized",
        ),
        (
            x509_ocsp::OcspResponse::malformed_request(),
            ResponseStatus::MalformedRequest,
            "malformedRequest",
        ),
        (
            x509_ocsp::OcspResponse::internal_error(),
            ResponseStatus::InternalError,
            "internalError",
        ),
        (
            x509_ocsp::OcspResponse::sig_required(),
            ResponseStatus::SigRequired,
            "sigRequired",
        ),
    ];
    for (resp, status, name) in cases {
        let der = resp.to_der().unwrap();
        let err = verify(&der, &info, now).unwrap_err();
        assert_eq!(err, OcspError::NotSuccessful(status));
        assert!(err.to_string().contains(name), "{err}");
    }
    // tryLater as a responder sends it: SEQUENCE { ENUMERATED 3 }.
    let err = verify(&[0x30, 0x03, 0x0a, 0x01, 0x03], &info, now).unwrap_err();
    assert_eq!(err, OcspError::NotSuccessful(ResponseStatus::TryLater));
}

#[test]
fn non_basic_response_type_is_rejected() {
    let pki = Pki::new();
    let (info, _) = setup(&pki);
    let resp = x509_ocsp::OcspResponse {
        response_status: x509_ocsp::OcspResponseStatus::Successful,
        response_bytes: Some(x509_ocsp::ResponseBytes {
            response_type: der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.99"),
            response: der::asn1::OctetString::new(vec![0x05, 0x00]).unwrap(),
        }),
    };
    let err = verify(&resp.to_der().unwrap(), &info, SystemTime::now()).unwrap_err();
    assert_eq!(err, OcspError::NotBasic("1.3.6.1.5.5.7.48.1.99".into()));
}

#[test]
fn garbage_is_malformed() {
    let pki = Pki::new();
    let (info, resp) = response(&pki, &pki.ca, &[]);
    let now = soon_after(&resp);
    let mut trailing = resp.clone();
    trailing.push(0);
    let successful_without_body = [0x30, 0x03, 0x0a, 0x01, 0x00];
    let cases: [&[u8]; 6] = [
        b"",
        b"<html>not ocsp</html>",
        &resp[..resp.len() / 2],
        &trailing,
        &successful_without_body,
        &[0x30, 0x03, 0x0a, 0x01, 0x04],
    ];
    for (i, der) in cases.iter().enumerate() {
        match verify(der, &info, now) {
            Err(OcspError::Malformed(m)) => assert!(!m.is_empty()),
            other => panic!("case {i}: {other:?}"),
        }
    }
}

#[test]
fn rsa_issuer_and_responder() {
    let dir = TempDir::new().unwrap();
    let genrsa = [
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
    ];
    openssl(dir.path(), &[&genrsa[..], &["-out", "ca.key"]].concat());
    let pem = std::fs::read_to_string(dir.path().join("ca.key")).unwrap();
    let pki = Pki::with_ca(ca_with_key(CA_NAME, KeyPair::from_pem(&pem).unwrap()));
    let (info, resp) = response(&pki, &pki.ca, &[]);
    verify(&resp, &info, soon_after(&resp)).unwrap();
    // An EC delegated responder certified by the RSA CA.
    let (info, resp) = response(&pki, &pki.delegate, &[]);
    verify(&resp, &info, soon_after(&resp)).unwrap();
}
