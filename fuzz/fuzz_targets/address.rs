//! Address and domain parsing: mailboxes, reverse and forward paths,
//! HELO names, domains; what parses prints back to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_model::Domain;
use postern_transport::smtp::{ForwardPath, HeloName, Mailbox, ReversePath};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(mailbox) = Mailbox::parse(text) {
        let printed = mailbox.to_string();
        let again = Mailbox::parse(&printed).expect("a printed mailbox parses");
        assert_eq!(again.to_string(), printed);
    }
    let _ = ReversePath::parse(text).map(|p| p.to_string());
    let _ = ForwardPath::parse(text).map(|p| p.to_string());
    let _ = HeloName::parse(text).map(|h| h.to_string());
    if let Ok(domain) = Domain::parse(text) {
        let again = Domain::parse(domain.as_str()).expect("a parsed domain parses again");
        assert_eq!(again, domain);
    }
});
