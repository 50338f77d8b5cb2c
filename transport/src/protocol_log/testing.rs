//! Reading protocol log files back, for the tests of the sessions that
//! write them (server and client).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;

use crate::protocol_log::Direction;

/// Every line of every file of `direction` under `data_dir`, headers
/// included, files in name order.
pub(crate) fn lines(data_dir: &Path, direction: Direction) -> Vec<String> {
    let dir = direction.dir_in(data_dir);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let mut lines = Vec::new();
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(direction.file_prefix()) && name.ends_with(".LOG"),
            "{name}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("\r\n"), "{name} does not end in CRLF");
        lines.extend(text.split_terminator("\r\n").map(str::to_owned));
    }
    lines
}

/// The nine columns of one event line, unquoted (RFC 4180).
pub(crate) fn columns(line: &str) -> Vec<String> {
    let mut cols = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cols.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cols.push(String::new()),
            (c, _) => cols.last_mut().unwrap().push(c),
        }
    }
    assert_eq!(cols.len(), 9, "{line}");
    cols
}

/// The `event,data,context` columns of an event line, unquoted.
pub(crate) fn tail(line: &str) -> String {
    columns(line)[6..].join(",")
}
