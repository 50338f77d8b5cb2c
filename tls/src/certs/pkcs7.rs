//! Reads the certificates out of a PKCS#7 (CMS) `SignedData` bundle — the
//! `.p7b`/`.p7c` files Windows CAs hand out and `openssl crl2pkcs7
//! -nocrl -certfile` writes — in PEM (`-----BEGIN PKCS7-----`) or DER.
//!
//! Only the `certificates` field is read (RFC 5652 §5.1); signatures,
//! CRLs and signer infos are ignored, as a certificate-only bundle has
//! none. Written here over the `der` crate: the RustCrypto `cms` crate in
//! reach is a pre-release built on another `x509-cert` major version.

use der::asn1::{Any, ObjectIdentifier};
use der::{Decode, Encode, Reader, SliceReader, Tag, TagNumber, Tagged};

use super::CertError;

/// id-signedData.
const SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");

/// Whether `data` looks like a PKCS#7 bundle (PEM or DER).
pub(crate) fn looks_like_pkcs7(data: &[u8]) -> bool {
    if data.windows(17).any(|w| w == b"-----BEGIN PKCS7-") {
        return true;
    }
    content_type(data).is_some_and(|oid| oid == SIGNED_DATA)
}

fn content_type(data: &[u8]) -> Option<ObjectIdentifier> {
    let info = Any::from_der(data).ok()?;
    let mut r = SliceReader::new(info.value()).ok()?;
    r.decode::<ObjectIdentifier>().ok()
}

fn bad(why: impl std::fmt::Display) -> CertError {
    CertError::NotACertificate(format!("bad PKCS#7 bundle: {why}"))
}

/// The certificates of a PKCS#7 bundle, in file order (DER each).
pub(crate) fn read_pkcs7(data: &[u8]) -> Result<Vec<Vec<u8>>, CertError> {
    let der = if data.starts_with(b"-----") || data.windows(17).any(|w| w == b"-----BEGIN PKCS7-") {
        let text = std::str::from_utf8(data).map_err(bad)?;
        let start = text
            .find("-----BEGIN PKCS7-----")
            .ok_or_else(|| bad("no BEGIN PKCS7 line"))?;
        let (_, der) = der::pem::decode_vec(&text.as_bytes()[start..]).map_err(bad)?;
        der
    } else {
        data.to_vec()
    };
    let info = Any::from_der(&der).map_err(bad)?;
    let mut r = SliceReader::new(info.value()).map_err(bad)?;
    let oid: ObjectIdentifier = r.decode().map_err(bad)?;
    if oid != SIGNED_DATA {
        return Err(bad(format!("content type {oid} is not signedData")));
    }
    // content [0] EXPLICIT SignedData
    let explicit: Any = r.decode().map_err(bad)?;
    let signed: Any = Any::from_der(explicit.value()).map_err(bad)?;
    let mut r = SliceReader::new(signed.value()).map_err(bad)?;
    let _version: Any = r.decode().map_err(bad)?;
    let _digest_algorithms: Any = r.decode().map_err(bad)?;
    let _encap_content: Any = r.decode().map_err(bad)?;
    let mut certs = Vec::new();
    while !r.is_finished() {
        let field: Any = r.decode().map_err(bad)?;
        let is_certificates = matches!(
            field.tag(),
            Tag::ContextSpecific { number, constructed: true } if number == TagNumber::N0
        );
        if !is_certificates {
            continue;
        }
        let mut inner = SliceReader::new(field.value()).map_err(bad)?;
        while !inner.is_finished() {
            let cert: Any = inner.decode().map_err(bad)?;
            // Other certificate formats (attribute certificates) are tagged.
            if cert.tag() == Tag::Sequence {
                certs.push(cert.to_der().map_err(bad)?);
            }
        }
    }
    if certs.is_empty() {
        return Err(bad("it holds no certificate"));
    }
    Ok(certs)
}
