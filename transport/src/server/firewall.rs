//! The header firewall (DESIGN §6): `X-Postern-Organization-*` header
//! fields carry the organisation's own verdicts (how a partner was
//! authenticated, for instance), so only a node of the organisation may
//! send them. From anyone else they are removed before the message is
//! queued, or a stranger could claim to be a domain-secured partner.

use std::borrow::Cow;

/// The prefix of the organisation's trusted header fields (matched
/// without regard to case, as field names are).
pub const ORG_HEADER_PREFIX: &str = "X-Postern-Organization-";

/// Removes every `X-Postern-Organization-*` field, continuation lines
/// included, from the header section of `message` unless `allowed` (the
/// peer is an organisation node). The body after the first empty line is
/// never touched; a line that is neither a field nor a continuation also
/// ends the header section. Returns the input untouched (borrowed) when
/// nothing is removed.
pub fn strip_org_headers(message: &[u8], allowed: bool) -> Cow<'_, [u8]> {
    if allowed {
        return Cow::Borrowed(message);
    }
    let mut removed: Vec<(usize, usize)> = Vec::new();
    let mut stripping = false;
    let mut pos = 0;
    while pos < message.len() {
        let end = message[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..end];
        match line.first() {
            Some(b' ' | b'\t') if pos > 0 => {
                // A continuation belongs to the field before it.
                if stripping {
                    push_span(&mut removed, pos, end);
                }
            }
            _ => match field_name(line) {
                Some(name) => {
                    stripping = is_org_field(name);
                    if stripping {
                        push_span(&mut removed, pos, end);
                    }
                }
                // The empty line, or something that is not a header field.
                None => break,
            },
        }
        pos = end;
    }
    if removed.is_empty() {
        return Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len());
    let mut from = 0;
    for (start, end) in removed {
        out.extend_from_slice(&message[from..start]);
        from = end;
    }
    out.extend_from_slice(&message[from..]);
    Cow::Owned(out)
}

/// Adds `start..end`, merging with the previous span when they touch.
fn push_span(spans: &mut Vec<(usize, usize)>, start: usize, end: usize) {
    match spans.last_mut() {
        Some(last) if last.1 == start => last.1 = end,
        _ => spans.push((start, end)),
    }
}

/// The name of a header field line (`Name:` or obsolete `Name :`), or
/// `None` when the line is not one.
fn field_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = line[..colon].trim_ascii_end();
    let printable = |b: &u8| (33..=126).contains(b);
    (!name.is_empty() && name.iter().all(printable)).then_some(name)
}

fn is_org_field(name: &[u8]) -> bool {
    let prefix = ORG_HEADER_PREFIX.as_bytes();
    name.len() > prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "no org headers",
                "From: a@b.c\r\nSubject: x\r\n\r\nhi\r\n",
                "From: a@b.c\r\nSubject: x\r\n\r\nhi\r\n",
            ),
            (
                "spoofed AuthAs",
                "From: a@b.c\r\nX-Postern-Organization-AuthAs: Partner\r\nSubject: x\r\n\r\nhi\r\n",
                "From: a@b.c\r\nSubject: x\r\n\r\nhi\r\n",
            ),
            (
                "any case, first field",
                "x-postern-organization-authdomain: northwindtraders.com\r\nFrom: a@b.c\r\n\r\nhi\r\n",
                "From: a@b.c\r\n\r\nhi\r\n",
            ),
            (
                "with continuation lines",
                "X-Postern-Organization-AuthAs: Partner\r\n\tmore\r\n  and more\r\nFrom: a@b.c\r\n \tfolded\r\n\r\n",
                "From: a@b.c\r\n \tfolded\r\n\r\n",
            ),
            (
                "several, adjacent and not",
                "X-Postern-Organization-A: 1\r\nX-POSTERN-ORGANIZATION-B: 2\r\nTo: x@y.z\r\nX-Postern-Organization-C : 3\r\n\r\n",
                "To: x@y.z\r\n\r\n",
            ),
            (
                "body untouched",
                "Subject: x\r\n\r\nX-Postern-Organization-AuthAs: Partner\r\n",
                "Subject: x\r\n\r\nX-Postern-Organization-AuthAs: Partner\r\n",
            ),
            (
                "bare prefix is not an org field",
                "X-Postern-Organization-: x\r\nX-Postern-Organizational: y\r\n\r\n",
                "X-Postern-Organization-: x\r\nX-Postern-Organizational: y\r\n\r\n",
            ),
            (
                "no header section",
                "hello\r\nX-Postern-Organization-AuthAs: Partner\r\n",
                "hello\r\nX-Postern-Organization-AuthAs: Partner\r\n",
            ),
            (
                "headers only, no final CRLF",
                "Subject: x\r\nX-Postern-Organization-AuthAs: Partner",
                "Subject: x\r\n",
            ),
            (
                "leading whitespace line is not a continuation",
                " X-Postern-Organization-A: 1\r\n\r\n",
                " X-Postern-Organization-A: 1\r\n\r\n",
            ),
            ("empty", "", ""),
        ];
        for (name, input, expected) in cases {
            let out = strip_org_headers(input.as_bytes(), false);
            assert_eq!(String::from_utf8_lossy(&out), *expected, "case {name:?}");
            let kept = strip_org_headers(input.as_bytes(), true);
            assert_eq!(
                &*kept,
                input.as_bytes(),
                "case {name:?} from an organisation node"
            );
        }
    }

    #[test]
    fn untouched_input_is_borrowed() {
        assert!(matches!(
            strip_org_headers(b"Subject: x\r\n\r\nhi\r\n", false),
            Cow::Borrowed(_)
        ));
    }
}
