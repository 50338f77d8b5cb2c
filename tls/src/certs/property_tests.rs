//! Property tests (proptest) for certificate import as administrators
//! bring files: PEM (with text around it, CRLF line ends), PKCS#12 made
//! by the store's own export. Whatever the bytes, import answers with a
//! certificate or an error, never a panic; a damaged or cut file is never
//! read as another certificate. Case counts are small (each PKCS#12 read
//! runs its key derivation) so the suite stays fast; fuzz/ runs the same
//! code unbounded.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use postern_model::{Domain, KeySpec, SubjectName, Thumbprint};
use proptest::prelude::*;

use super::{CertError, CertStore, NewCertificate};

/// Files to damage: a PEM certificate with its key (rcgen), the same
/// certificate alone, and a PKCS#12 export (password `pw`) of a
/// self-signed certificate, with their thumbprints.
struct Files {
    pem_with_key: String,
    pem_tp: Thumbprint,
    pkcs12: Vec<u8>,
    pkcs12_tp: Thumbprint,
}

fn files() -> &'static Files {
    static FILES: OnceLock<Files> = OnceLock::new();
    FILES.get_or_init(|| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["edge1.contoso.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let store = fresh_store();
        let view = store
            .new_self_signed(&NewCertificate {
                subject: SubjectName::common_name_only("hub1.contoso.test"),
                domains: vec![Domain::parse("hub1.contoso.test").unwrap()],
                friendly_name: None,
                key: KeySpec::EcdsaP256,
                services: BTreeSet::new(),
            })
            .unwrap();
        store.mark_exportable(&view.thumbprint).unwrap();
        Files {
            pem_with_key: format!("{}{}", cert.pem(), key.serialize_pem()),
            pem_tp: Thumbprint::of_der(cert.der()),
            pkcs12: store.export_pkcs12(&view.thumbprint, "pw").unwrap(),
            pkcs12_tp: view.thumbprint,
        }
    })
}

fn fresh_store() -> CertStore {
    CertStore::open(&sled::Config::new().temporary(true).open().unwrap()).unwrap()
}

/// Imports `data` into an empty store: the thumbprint, or the error.
fn import(data: &[u8], password: &str) -> Result<Thumbprint, CertError> {
    fresh_store()
        .import(data, password, None, &BTreeSet::new())
        .map(|view| view.thumbprint)
}

/// Text an administrator's editor or mail client might put around a PEM
/// block (no dashes, so no block boundary of its own).
fn prose() -> impl Strategy<Value = String> {
    "[ -,.-~\t\r\n]{0,200}"
}

#[test]
fn the_files_import_as_made() {
    let f = files();
    assert_eq!(import(f.pem_with_key.as_bytes(), "").unwrap(), f.pem_tp);
    assert_eq!(import(&f.pkcs12, "pw").unwrap(), f.pkcs12_tp);
    assert!(matches!(
        import(&f.pkcs12, "wrong"),
        Err(CertError::WrongPassword)
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_bytes_get_an_answer_not_a_panic(
        data in prop::collection::vec(any::<u8>(), 0..1500),
        password in "[a-z]{0,3}",
    ) {
        let _ = import(&data, &password);
    }

    #[test]
    fn pem_reads_the_same_with_text_around_it_and_crlf(
        before in prose(),
        after in prose(),
        crlf in any::<bool>(),
    ) {
        let pem = &files().pem_with_key;
        let pem = if crlf { pem.replace('\n', "\r\n") } else { pem.clone() };
        let text = format!("{before}\n{pem}\n{after}");
        prop_assert_eq!(import(text.as_bytes(), "").unwrap(), files().pem_tp);
    }

    #[test]
    fn a_cut_pem_file_is_refused(cut in 0usize..10_000) {
        let pem = files().pem_with_key.as_bytes();
        // Anywhere before the certificate block's end line is complete.
        let end = pem.windows(25).position(|w| w == b"-----END CERTIFICATE-----").unwrap() + 24;
        let cut = cut % end;
        prop_assert!(import(&pem[..cut], "").is_err());
    }

    #[test]
    fn a_damaged_pkcs12_file_is_never_read_as_another_certificate(
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let mut p12 = files().pkcs12.clone();
        let i = at.index(p12.len());
        p12[i] ^= xor;
        if let Ok(tp) = import(&p12, "pw") {
            prop_assert_eq!(tp, files().pkcs12_tp);
        }
    }

    #[test]
    fn a_cut_pkcs12_file_is_refused(cut in any::<prop::sample::Index>()) {
        let p12 = &files().pkcs12;
        let cut = cut.index(p12.len());
        prop_assert!(import(&p12[..cut], "pw").is_err());
    }
}
