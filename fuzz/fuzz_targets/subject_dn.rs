//! The distinguished-name parser of `cert new --subject-name`: what
//! parses prints back to the same name.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_model::SubjectName;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(name) = SubjectName::parse(text) {
        let printed = name.to_string();
        let again = SubjectName::parse(&printed).expect("a printed subject name parses");
        assert_eq!(again, name, "{text:?} printed as {printed:?}");
        let _ = name.common_name();
    }
});
