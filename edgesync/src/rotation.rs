//! Certificate rotation over the EdgeSync stream (DESIGN §10): an edge that
//! enabled a new SMTP certificate offers it to the hub on the open,
//! authenticated stream, with proof that it holds the new key — a signature
//! by the new key over old and new certificate and over keying material
//! exported from this TLS session (so the proof cannot be replayed on
//! another one). The hub checks that the old certificate is the one the
//! edge presented in this session, verifies the proof, trusts both and
//! answers; only then does the edge present the new certificate. The old
//! one stays trusted by the hubs for a grace period.
//!
//! Offers travel as `CertOffer` (edge → hub) and `CertOfferReply`
//! (hub → edge); `proof_message` is the exact byte string signed.

use std::sync::Arc;

use postern_model::Thumbprint;
use postern_proto::edgesync as pb;
use postern_tls::certs::{CertStore, Rotation};
use ring::signature;
use rustls::SignatureScheme;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The domain-separation prefix of the signed proof.
const PROOF_CONTEXT: &[u8] = b"postern-cert-rotation-v1";

/// The bytes the new key signs: context, session binding, old and new
/// certificate, each length-prefixed.
pub fn proof_message(binding: &[u8; 32], old_der: &[u8], new_der: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(PROOF_CONTEXT.len() + 40 + old_der.len() + new_der.len());
    m.extend_from_slice(PROOF_CONTEXT);
    m.extend_from_slice(binding);
    for der in [old_der, new_der] {
        m.extend_from_slice(&u32::try_from(der.len()).unwrap_or(u32::MAX).to_be_bytes());
        m.extend_from_slice(der);
    }
    m
}

/// Why an offer was not made or not accepted.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    /// The certificate store failed or lacks the certificate.
    #[error(transparent)]
    Cert(#[from] postern_tls::certs::CertError),
    /// The key cannot sign the proof.
    #[error("the new certificate's key cannot sign the offer: {0}")]
    Signing(String),
    /// The TLS session exported no keying material.
    #[error("the EdgeSync session has no exported keying material to bind the offer to")]
    NoBinding,
}

/// Signs an offer of `new` (replacing `old`) for the session `binding`.
pub fn make_offer(
    certs: &CertStore,
    old: &Thumbprint,
    new: &Thumbprint,
    binding: &[u8; 32],
) -> Result<pb::CertOffer, OfferError> {
    let old_chain = certs.chain(old)?;
    let new_chain = certs.chain(new)?;
    let (Some(old_der), Some(new_der)) = (old_chain.first(), new_chain.first()) else {
        return Err(OfferError::Signing("empty certificate chain".into()));
    };
    let key = certs.certified_key(new)?;
    let signer = key
        .key
        .choose_scheme(&[
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::RSA_PSS_SHA256,
        ])
        .ok_or_else(|| OfferError::Signing("the key supports neither ECDSA P-256 nor RSA-PSS".into()))?;
    let scheme = signer.scheme();
    let signature = signer
        .sign(&proof_message(binding, old_der, new_der))
        .map_err(|e| OfferError::Signing(e.to_string()))?;
    Ok(pb::CertOffer {
        old_certificate: old_der.clone(),
        new_chain,
        signature_scheme: format!("{scheme:?}"),
        signature,
    })
}

/// What the hub learnt from a verified offer.
#[derive(Clone, Debug)]
pub struct VerifiedOffer {
    /// The certificate being replaced (the one presented in this session).
    pub old: Thumbprint,
    /// The offered certificate.
    pub new: Thumbprint,
    /// Its DER.
    pub new_der: Vec<u8>,
}

/// Verifies an offer received on a session whose binding is `binding` and
/// whose peer presented `presented`.
pub fn verify_offer(
    offer: &pb::CertOffer,
    binding: Option<&[u8; 32]>,
    presented: Option<Thumbprint>,
    now: OffsetDateTime,
) -> Result<VerifiedOffer, String> {
    let binding = binding.ok_or("the hub has no keying material for this session")?;
    let new_der = offer
        .new_chain
        .first()
        .ok_or("the offer carries no certificate")?;
    let old = Thumbprint::of_der(&offer.old_certificate);
    let new = Thumbprint::of_der(new_der);
    if presented != Some(old) {
        return Err(format!(
            "the offer replaces {old}, but the edge presented {} in this session",
            presented
                .map(|t| t.to_string())
                .unwrap_or_else(|| "no certificate".into())
        ));
    }
    if old == new {
        return Err(format!("certificate {new} is already the edge's identity"));
    }
    let (_, cert) = X509Certificate::from_der(new_der)
        .map_err(|e| format!("the offered certificate {new} does not parse: {e}"))?;
    let validity = cert.validity();
    if now.unix_timestamp() > validity.not_after.timestamp()
        || now.unix_timestamp() < validity.not_before.timestamp()
    {
        return Err(format!(
            "the offered certificate {new} is not within its validity period"
        ));
    }
    let alg: &dyn signature::VerificationAlgorithm = match offer.signature_scheme.as_str() {
        "ECDSA_NISTP256_SHA256" => &signature::ECDSA_P256_SHA256_ASN1,
        "RSA_PSS_SHA256" => &signature::RSA_PSS_2048_8192_SHA256,
        other => return Err(format!("unsupported signature scheme {other:?}")),
    };
    let key = cert.public_key().subject_public_key.data.as_ref();
    signature::UnparsedPublicKey::new(alg, key)
        .verify(
            &proof_message(binding, &offer.old_certificate, new_der),
            &offer.signature,
        )
        .map_err(|_| {
            format!(
                "the proof of possession for {new} does not verify (wrong key, or made for another session)"
            )
        })?;
    Ok(VerifiedOffer {
        old,
        new,
        new_der: new_der.clone(),
    })
}

/// The hub's side of a rotation: records that `edge` now presents `new`
/// and keeps trusting `old` until the returned time (RFC 3339), or says why
/// not. Implemented by the hub over its subscriptions and trust store.
pub trait RotationHook: Send + Sync {
    /// Trusts `offer.new` for `edge`, beside `offer.old` for a grace period.
    fn edge_certificate_rotated(&self, edge: &str, offer: &VerifiedOffer) -> Result<String, String>;

    /// Every certificate `edge` may present now (EdgeSync pins them all).
    fn edge_certificates(&self, edge: &str) -> Vec<Thumbprint>;
}

/// A shared hook.
pub type SharedRotationHook = Arc<dyn RotationHook>;

/// Handles one offer on the hub: verify, record, answer.
pub fn answer_offer(
    hook: Option<&SharedRotationHook>,
    edge: &str,
    offer: &pb::CertOffer,
    session: &crate::channel::SessionInfo,
) -> (pb::CertOfferReply, Option<VerifiedOffer>) {
    let offered = offer
        .new_chain
        .first()
        .map(|d| Thumbprint::of_der(d).to_string())
        .unwrap_or_default();
    let refuse = |reason: String| {
        tracing::warn!(edge, thumbprint = %offered, %reason, "certificate offer refused");
        pb::CertOfferReply {
            thumbprint: offered.clone(),
            accepted: false,
            reason,
            old_retired_at: String::new(),
        }
    };
    let Some(hook) = hook else {
        return (refuse("this hub does not take certificate offers".into()), None);
    };
    let verified = match verify_offer(
        offer,
        session.binding.as_ref(),
        session.peer_thumbprint(),
        OffsetDateTime::now_utc(),
    ) {
        Ok(v) => v,
        Err(reason) => return (refuse(reason), None),
    };
    match hook.edge_certificate_rotated(edge, &verified) {
        Ok(until) => {
            tracing::info!(edge, old = %verified.old, new = %verified.new, retire_at = %until, "edge certificate rotated: trusting both until the grace period ends");
            (
                pb::CertOfferReply {
                    thumbprint: offered,
                    accepted: true,
                    reason: String::new(),
                    old_retired_at: until,
                },
                Some(verified),
            )
        }
        Err(reason) => (refuse(reason), None),
    }
}

/// Writes why an offer waits (or failed) into the offered certificate's record.
pub fn note_offer(certs: &CertStore, new: &Thumbprint, note: &str) {
    if let Ok(Some(Rotation::Offered { since, note: old })) = certs.rotation(new)
        && old != note
    {
        let record = Rotation::Offered {
            since,
            note: note.to_owned(),
        };
        if let Err(e) = certs.set_rotation(new, Some(&record)) {
            tracing::error!(thumbprint = %new, error = %e, "cannot record the offer's state");
        }
    }
}

/// Applies the hub's answer on the edge: on acceptance the new certificate
/// is presented from now on and the old one is retiring until the hub's
/// retirement time; on refusal the old one stays and the reason is kept.
pub fn apply_reply(certs: &CertStore, old: &Thumbprint, reply: &pb::CertOfferReply) {
    let Ok(new) = reply.thumbprint.parse::<Thumbprint>() else {
        tracing::warn!(thumbprint = %reply.thumbprint.escape_debug(), "hub answered an offer for an unreadable thumbprint");
        return;
    };
    if !reply.accepted {
        let reason = reply.reason.escape_debug().to_string();
        tracing::warn!(%new, %reason, "the hub refused the certificate offer; still presenting {old} to the hubs");
        note_offer(certs, &new, &format!("refused by the hub: {reason}"));
        return;
    }
    let until = OffsetDateTime::parse(&reply.old_retired_at, &Rfc3339)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| reply.old_retired_at.escape_debug().to_string());
    let retiring = Rotation::Retiring {
        successor: new,
        until,
    };
    if let Err(e) = certs
        .set_rotation(old, Some(&retiring))
        .and_then(|()| certs.set_rotation(&new, None))
    {
        tracing::error!(%new, error = %e, "cannot record the confirmed rotation");
        return;
    }
    tracing::info!(%old, %new, "the hub confirmed the new certificate; presenting it from now on");
}

/// Moves retiring certificates whose grace period has ended to retired.
pub fn retire_due(certs: &CertStore, now: OffsetDateTime) {
    let Ok(all) = certs.rotations() else { return };
    for (tp, r) in all {
        if let Rotation::Retiring { successor, until } = r
            && OffsetDateTime::parse(&until, &Rfc3339).is_ok_and(|u| now >= u)
        {
            let retired = Rotation::Retired {
                successor,
                since: now.format(&Rfc3339).unwrap_or_default(),
            };
            if certs.set_rotation(&tp, Some(&retired)).is_ok() {
                tracing::info!(thumbprint = %tp, "certificate retired after its grace period");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_two() -> (tempfile::TempDir, CertStore, Thumbprint, Thumbprint) {
        use postern_model::{Domain, KeySpec, Service, SubjectName};
        use postern_tls::certs::NewCertificate;
        let tmp = tempfile::tempdir().unwrap();
        let store = CertStore::open(&sled::open(tmp.path()).unwrap()).unwrap();
        let mut made = Vec::new();
        for key in [KeySpec::EcdsaP256, KeySpec::EcdsaP256] {
            let view = store
                .new_self_signed(&NewCertificate {
                    subject: SubjectName::common_name_only("edge1.adatum.com"),
                    domains: vec![Domain::parse("edge1.adatum.com").unwrap()],
                    friendly_name: None,
                    key,
                    services: std::collections::BTreeSet::from([Service::Smtp]),
                })
                .unwrap();
            made.push(view.thumbprint);
        }
        (tmp, store, made[0], made[1])
    }

    #[test]
    fn an_offer_verifies_only_on_its_own_session_and_from_the_presented_certificate() {
        let (_tmp, store, old, new) = store_with_two();
        let offer = make_offer(&store, &old, &new, &[7; 32]).unwrap();
        let now = OffsetDateTime::now_utc();
        let ok = verify_offer(&offer, Some(&[7; 32]), Some(old), now).unwrap();
        assert_eq!((ok.old, ok.new), (old, new));
        let replayed = verify_offer(&offer, Some(&[8; 32]), Some(old), now).unwrap_err();
        assert!(replayed.contains("another session"), "{replayed}");
        let stranger = verify_offer(&offer, Some(&[7; 32]), Some(new), now).unwrap_err();
        assert!(stranger.contains("presented"), "{stranger}");
        // Signed by the old key instead of the new one: no proof of possession.
        let mut forged = make_offer(&store, &new, &old, &[7; 32]).unwrap();
        forged.old_certificate = offer.old_certificate.clone();
        forged.new_chain = offer.new_chain.clone();
        let err = verify_offer(&forged, Some(&[7; 32]), Some(old), now).unwrap_err();
        assert!(err.contains("does not verify"), "{err}");
        assert!(verify_offer(&offer, None, Some(old), now).is_err());
    }

    #[test]
    fn the_proof_binds_session_and_both_certificates() {
        let a = proof_message(&[1; 32], b"old", b"new");
        assert_ne!(a, proof_message(&[2; 32], b"old", b"new"));
        assert_ne!(a, proof_message(&[1; 32], b"ol", b"dnew"));
        assert!(a.starts_with(PROOF_CONTEXT));
    }
}
