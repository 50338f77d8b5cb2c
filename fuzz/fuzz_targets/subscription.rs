//! The edge subscription file (`edge-subscription new --file`): JSON,
//! the edge's certificate in PEM, a signature over the body, the expiry.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_edgesync::subscription::SubscriptionFile;
use time::OffsetDateTime;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((file, _der)) = SubscriptionFile::verify(text, OffsetDateTime::UNIX_EPOCH) {
        let _ = file.thumbprint();
    }
});
