//! Key generation and signing for certificates and requests made on this
//! node.
//!
//! rcgen on the ring provider cannot generate RSA keys, and its
//! distinguished names cannot hold one attribute twice (the seed's
//! `DC=com,DC=Adatum,CN=…`), so new keys come from the RustCrypto `rsa` and
//! `p256` crates and certificates are assembled by `x509-cert`'s builder.

use std::time::{Duration, SystemTime};

use der::asn1::Ia5String;
use der::{Encode, EncodePem};
use postern_model::{Domain, KeySpec};
use rsa::pkcs8::EncodePrivateKey;
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::builder::{Builder, CertificateBuilder, Profile, RequestBuilder};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use super::CertError;

/// OIDs of the extended key usages every Postern certificate carries:
/// it serves STARTTLS and is presented as a client certificate.
const SERVER_AUTH: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
const CLIENT_AUTH: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

/// A private key made on this node, able to sign its own certificate or request.
pub(crate) enum NewKey {
    /// RSA, signing with PKCS#1 v1.5 and SHA-256.
    Rsa(Box<rsa::RsaPrivateKey>),
    /// ECDSA P-256 with SHA-256.
    P256(p256::ecdsa::SigningKey),
}

impl NewKey {
    /// Generates a key of the given kind from the operating system's RNG.
    pub(crate) fn generate(spec: KeySpec) -> Result<Self, CertError> {
        let mut rng = rand::rngs::OsRng;
        match spec {
            KeySpec::Rsa(bits) => rsa::RsaPrivateKey::new(&mut rng, bits as usize)
                .map(|k| NewKey::Rsa(Box::new(k)))
                .map_err(|e| CertError::KeyGeneration(e.to_string())),
            KeySpec::EcdsaP256 => Ok(NewKey::P256(p256::ecdsa::SigningKey::random(&mut rng))),
        }
    }

    /// The private key as PKCS#8 DER.
    pub(crate) fn to_pkcs8_der(&self) -> Result<Vec<u8>, CertError> {
        let doc = match self {
            NewKey::Rsa(k) => k.to_pkcs8_der(),
            NewKey::P256(k) => k.to_pkcs8_der(),
        };
        doc.map(|d| d.as_bytes().to_vec())
            .map_err(|e| CertError::KeyGeneration(e.to_string()))
    }

    /// A self-signed end-entity certificate (DER) valid from a few minutes
    /// ago for `valid_for`, with the domains as DNS subject alternative names.
    pub(crate) fn self_signed(
        &self,
        subject: Name,
        domains: &[Domain],
        valid_for: Duration,
    ) -> Result<Vec<u8>, CertError> {
        let now = SystemTime::now();
        // Allow for peers whose clocks run a little behind ours.
        let start = now.checked_sub(Duration::from_secs(600)).unwrap_or(now);
        let end = now + valid_for;
        let validity = Validity {
            not_before: Time::try_from(start).map_err(build_err)?,
            not_after: Time::try_from(end).map_err(build_err)?,
        };
        let serial = random_serial()?;
        let profile = Profile::Leaf {
            issuer: subject.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: matches!(self, NewKey::Rsa(_)),
        };
        let san = subject_alt_name(domains)?;
        let eku = ExtendedKeyUsage(vec![SERVER_AUTH, CLIENT_AUTH]);
        match self {
            NewKey::Rsa(k) => {
                let signer = rsa::pkcs1v15::SigningKey::<sha2_10::Sha256>::new((**k).clone());
                let spki = spki_of(&signer)?;
                let mut b = CertificateBuilder::new(profile, serial, validity, subject, spki, &signer)
                    .map_err(build_err)?;
                b.add_extension(&san).map_err(build_err)?;
                b.add_extension(&eku).map_err(build_err)?;
                let cert = b.build::<rsa::pkcs1v15::Signature>().map_err(build_err)?;
                cert.to_der().map_err(build_err)
            }
            NewKey::P256(k) => {
                let spki = spki_of(k)?;
                let mut b = CertificateBuilder::new(profile, serial, validity, subject, spki, k)
                    .map_err(build_err)?;
                b.add_extension(&san).map_err(build_err)?;
                b.add_extension(&eku).map_err(build_err)?;
                let cert = b.build::<p256::ecdsa::DerSignature>().map_err(build_err)?;
                cert.to_der().map_err(build_err)
            }
        }
    }

    /// A PKCS#10 request (DER, PEM) for `subject` asking for the domains as SANs.
    pub(crate) fn request(&self, subject: Name, domains: &[Domain]) -> Result<(Vec<u8>, String), CertError> {
        let san = subject_alt_name(domains)?;
        let req = match self {
            NewKey::Rsa(k) => {
                let signer = rsa::pkcs1v15::SigningKey::<sha2_10::Sha256>::new((**k).clone());
                let mut b = RequestBuilder::new(subject, &signer).map_err(build_err)?;
                b.add_extension(&san).map_err(build_err)?;
                b.build::<rsa::pkcs1v15::Signature>().map_err(build_err)?
            }
            NewKey::P256(k) => {
                let mut b = RequestBuilder::new(subject, k).map_err(build_err)?;
                b.add_extension(&san).map_err(build_err)?;
                b.build::<p256::ecdsa::DerSignature>().map_err(build_err)?
            }
        };
        let der = req.to_der().map_err(build_err)?;
        let pem = req.to_pem(der::pem::LineEnding::LF).map_err(build_err)?;
        Ok((der, pem))
    }
}

fn spki_of<K>(signer: &K) -> Result<SubjectPublicKeyInfoOwned, CertError>
where
    K: signature::Keypair,
    K::VerifyingKey: spki::EncodePublicKey,
{
    SubjectPublicKeyInfoOwned::from_key(signer.verifying_key()).map_err(build_err)
}

fn subject_alt_name(domains: &[Domain]) -> Result<SubjectAltName, CertError> {
    let names = domains
        .iter()
        .map(|d| Ia5String::new(d.as_str()).map(GeneralName::DnsName))
        .collect::<Result<Vec<_>, _>>()
        .map_err(build_err)?;
    Ok(SubjectAltName(names))
}

fn random_serial() -> Result<SerialNumber, CertError> {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    // Positive and without a leading zero byte, as RFC 5280 asks.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::new(&bytes).map_err(build_err)
}

fn build_err(e: impl std::fmt::Display) -> CertError {
    CertError::Build(e.to_string())
}
