//! Certificate import (`cert import`): PEM, DER, PKCS#7 and PKCS#12 as
//! administrators bring them, through the node's certificate store (a
//! temporary sled store, opened once).

#![no_main]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use postern_tls::certs::CertStore;

fn store() -> &'static CertStore {
    static STORE: OnceLock<CertStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .expect("a temporary sled store");
        CertStore::open(&db).expect("a certificate store")
    })
}

fuzz_target!(|data: &[u8]| {
    // The first byte is the password's length (PKCS#12), then the password.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 16).min(rest.len());
    let (password, file) = rest.split_at(n);
    let password = String::from_utf8_lossy(password);
    let _ = store().import(file, &password, None, &BTreeSet::new());
});
