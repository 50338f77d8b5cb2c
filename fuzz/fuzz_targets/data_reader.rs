//! The DATA reader (dot-unstuffing, line and size limits) and the header
//! firewall that screens what it produced (strict header-section parse,
//! internal and forged Authentication-Results fields removed).

#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_transport::auth::results::strip_ours;
use postern_transport::server::{Firewall, strip_org_headers};
use postern_transport::smtp::{DataReceiver, DataStatus, DataViolation};

/// What a fresh reader made of `chunks`: the body (`None` once a
/// violation made it incomplete, as the reader documents: such a body is
/// discarded and the message refused), where it ended, and the violation.
type Received = (Option<Vec<u8>>, Option<(u64, usize)>, Option<DataViolation>);

/// Feeds `chunks` to a fresh reader.
fn receive(chunks: &[&[u8]]) -> Received {
    let mut rx = DataReceiver::new(64 * 1024);
    let mut body = Vec::new();
    let mut offset = 0;
    let mut end = None;
    for chunk in chunks {
        if let DataStatus::End { consumed, end: e } = rx.feed(chunk, &mut body) {
            end = Some((e.size, offset + consumed));
            break;
        }
        offset += chunk.len();
    }
    let violation = rx.violation();
    (violation.is_none().then_some(body), end, violation)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut) * 7 % (stream.len() + 1);
    let whole = receive(&[stream]);
    let split = receive(&[&stream[..cut], &stream[cut..]]);
    assert_eq!(whole, split, "the DATA reader depends on how the input is split");
    let Some(body) = whole.0 else {
        return;
    };
    let ids = ["edge1.contoso.test".to_owned(), "hub1.contoso.test".to_owned()];
    let firewall = Firewall {
        allowed: false,
        authserv_ids: &ids,
    };
    if let Ok(screened) = firewall.screen(&body) {
        let again = firewall.screen(&screened);
        assert!(
            again.as_deref().ok() == Some(&screened[..]),
            "the header firewall is not idempotent"
        );
    }
    let _ = strip_org_headers(&body, false);
    let _ = strip_ours(&body, "edge1.contoso.test");
});
