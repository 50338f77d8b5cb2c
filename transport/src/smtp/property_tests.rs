//! Property tests (proptest) for the parsers that read what clients send:
//! command lines, addresses, the line reader, the DATA reader, the header
//! firewall and the peer-text escaper. None may panic on any input; the
//! stateful readers must not depend on how the input is split.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use crate::server::firewall::Firewall;
use crate::smtp::{Command, DataReceiver, DataStatus, LineReader, Mailbox};

/// Bytes that look like SMTP more often than random bytes do (line
/// ends, dots, colons, brackets), with some of every other kind.
fn smtp_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    const ALPHABET: &[u8] = b"\r\n\r\n\r\n...::  \t<>@aZ09-X\x00\x1b\x7f\xc3\xa9\xff";
    prop::collection::vec(prop::sample::select(ALPHABET), 0..max)
}

/// Feeds `input` to a fresh DATA reader in pieces cut at `cuts`.
fn receive(input: &[u8], cuts: &[usize]) -> (Vec<u8>, Option<(u64, usize)>) {
    let mut rx = DataReceiver::new(1 << 20);
    let mut body = Vec::new();
    let mut start = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    points.push(input.len());
    for end in points {
        if end < start {
            continue;
        }
        if let DataStatus::End { consumed, end: done } = rx.feed(&input[start..end], &mut body) {
            return (body, Some((done.size, start + consumed)));
        }
        start = end;
    }
    (body, None)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn command_lines_never_panic(line in smtp_bytes(520)) {
        let _ = Command::parse(&line);
    }

    #[test]
    fn addresses_never_panic_and_round_trip(text in "[ -~]{0,80}") {
        if let Ok(mailbox) = Mailbox::parse(&text) {
            let again = Mailbox::parse(&mailbox.to_string()).unwrap();
            prop_assert_eq!(again.to_string(), mailbox.to_string());
        }
    }

    #[test]
    fn the_line_reader_does_not_depend_on_chunking(input in smtp_bytes(1200), cut in 0usize..1200) {
        let collect = |chunks: &[&[u8]]| {
            let mut reader = LineReader::new();
            let mut lines = Vec::new();
            for chunk in chunks {
                reader.feed(chunk);
                while let Some(line) = reader.next_line() {
                    lines.push(line.map_err(|e| e.to_string()));
                }
            }
            lines
        };
        let cut = cut.min(input.len());
        let (a, b) = input.split_at(cut);
        prop_assert_eq!(collect(&[&input]), collect(&[a, b]));
    }

    #[test]
    fn the_data_reader_does_not_depend_on_chunking(
        input in smtp_bytes(1500),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        prop_assert_eq!(receive(&input, &[]), receive(&input, &cuts));
    }

    #[test]
    fn the_header_firewall_never_panics_and_is_idempotent(message in smtp_bytes(800)) {
        let ids = vec!["edge1.contoso.test".to_owned()];
        let firewall = Firewall { allowed: false, authserv_ids: &ids };
        if let Ok(once) = firewall.screen(&message) {
            let twice = firewall.screen(&once).unwrap();
            prop_assert_eq!(&*twice, &*once);
            prop_assert!(once.len() <= message.len());
        }
    }

    #[test]
    fn peer_text_has_no_control_characters_and_is_short(bytes in prop::collection::vec(any::<u8>(), 0..1000)) {
        let shown = postern_model::peer_text(&bytes).to_string();
        prop_assert!(!shown.chars().any(char::is_control), "{:?}", shown);
        prop_assert!(shown.chars().count() <= postern_model::peer_text::PEER_TEXT_LIMIT * 10 + 32);
    }
}
