//! The header firewall (DESIGN §6). `X-Postern-Organization-*` header
//! fields carry the organisation's own verdicts (how a partner was
//! authenticated, for instance), and `Authentication-Results` fields under
//! one of the organisation's authserv-ids carry its own checks (RFC 8601
//! §5), so only a node of the organisation may send them. From anyone
//! else they are removed before the message is queued, or a stranger could
//! claim to be a domain-secured partner.
//!
//! The header section must parse: every line up to the empty line is a
//! field or a continuation. A message whose header section does not parse
//! is refused ([`HeaderError`], 550 5.6.0), so that no parser further down
//! reads a field this firewall did not see.

use std::borrow::Cow;

/// The prefix of the organisation's trusted header fields (matched
/// without regard to case, as field names are).
pub const ORG_HEADER_PREFIX: &str = "X-Postern-Organization-";

/// Why a header section does not parse; the sender is at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A line before the empty line is neither a field nor a continuation.
    #[error("line {line} of the header section is not a header field")]
    NotAField {
        /// Its number, from 1.
        line: usize,
    },
    /// The message starts with a continuation line.
    #[error("the header section starts with a continuation line")]
    LeadingContinuation,
}

/// What the firewall keeps out of messages from peers that are not
/// organisation nodes.
#[derive(Clone, Copy, Debug)]
pub struct Firewall<'a> {
    /// The peer is an organisation node: nothing is removed.
    pub allowed: bool,
    /// The organisation's authserv-ids (its nodes' names), lower case.
    pub authserv_ids: &'a [String],
}

impl Firewall<'_> {
    /// Checks that the header section of `message` parses and removes
    /// the organisation's fields (continuation lines included) unless
    /// the peer is allowed them. The body after the first empty line is
    /// never touched. Returns the input untouched (borrowed) when nothing
    /// is removed.
    pub fn screen<'m>(&self, message: &'m [u8]) -> Result<Cow<'m, [u8]>, HeaderError> {
        let mut removed: Vec<(usize, usize)> = Vec::new();
        let mut field_start: Option<usize> = None;
        let mut pos = 0;
        let mut number = 0;
        loop {
            let end = line_end(message, pos);
            let line = &message[pos..end];
            number += 1;
            let is_continuation = matches!(line.first(), Some(b' ' | b'\t'));
            if is_continuation {
                if field_start.is_none() {
                    return Err(HeaderError::LeadingContinuation);
                }
                pos = end;
                continue;
            }
            // A field ends where the next line is not its continuation.
            if let Some(start) = field_start.take()
                && !self.allowed
                && self.is_protected(&message[start..pos])
            {
                push_span(&mut removed, start, pos);
            }
            if pos >= message.len() || is_empty_line(line) {
                break;
            }
            if field_name(line).is_none() {
                return Err(HeaderError::NotAField { line: number });
            }
            field_start = Some(pos);
            pos = end;
        }
        if removed.is_empty() {
            return Ok(Cow::Borrowed(message));
        }
        let mut out = Vec::with_capacity(message.len());
        let mut from = 0;
        for (start, end) in removed {
            out.extend_from_slice(&message[from..start]);
            from = end;
        }
        out.extend_from_slice(&message[from..]);
        Ok(Cow::Owned(out))
    }

    /// Whether the whole field (name, value, continuations) is one only
    /// the organisation may send.
    fn is_protected(&self, field: &[u8]) -> bool {
        let Some(name) = field_name(field) else {
            return false;
        };
        if is_org_field(name) {
            return true;
        }
        if !name.eq_ignore_ascii_case(b"Authentication-Results") {
            return false;
        }
        let value = field
            .iter()
            .position(|&b| b == b':')
            .map_or(&[][..], |c| &field[c + 1..]);
        authserv_id(value).is_some_and(|id| self.authserv_ids.contains(&id))
    }
}

/// Removes every `X-Postern-Organization-*` field unless `allowed` (see
/// [`Firewall::screen`]); a header section that does not parse is
/// returned untouched.
pub fn strip_org_headers(message: &[u8], allowed: bool) -> Cow<'_, [u8]> {
    let firewall = Firewall {
        allowed,
        authserv_ids: &[],
    };
    firewall.screen(message).unwrap_or(Cow::Borrowed(message))
}

/// The authserv-id of an `Authentication-Results` value (RFC 8601 §2.2:
/// `[CFWS] authserv-id [CFWS authres-version] ...;`), lower case, without
/// a trailing dot.
fn authserv_id(value: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(value);
    let head = text.split(';').next().unwrap_or_default();
    // Comments may stand anywhere CFWS may: drop them (not nested deeper
    // than one level in practice; unbalanced text is kept).
    let mut plain = String::with_capacity(head.len());
    let mut depth = 0u32;
    for c in head.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let id = plain.split_ascii_whitespace().next()?;
    let id = id.trim_matches('"').trim_end_matches('.').to_ascii_lowercase();
    (!id.is_empty()).then_some(id)
}

/// Where the line starting at `pos` ends (after its LF, or at the end).
fn line_end(message: &[u8], pos: usize) -> usize {
    message
        .get(pos..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
        .map_or(message.len(), |i| pos + i + 1)
}

fn is_empty_line(line: &[u8]) -> bool {
    matches!(line, b"\r\n" | b"\n" | b"\r")
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
                "headers only, no final CRLF",
                "Subject: x\r\nX-Postern-Organization-AuthAs: Partner",
                "Subject: x\r\n",
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

    const IDS: &[&str] = &["edge1.contoso.test", "hub1.contoso.test"];

    fn screen(message: &str) -> Result<String, HeaderError> {
        let ids: Vec<String> = IDS.iter().map(|s| (*s).to_owned()).collect();
        let firewall = Firewall {
            allowed: false,
            authserv_ids: &ids,
        };
        firewall
            .screen(message.as_bytes())
            .map(|out| String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn authentication_results_under_our_ids_are_removed() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "forged, ours",
                "Authentication-Results: edge1.contoso.test; tls=pass (domain-secured)\r\nSubject: x\r\n\r\nhi\r\n",
                "Subject: x\r\n\r\nhi\r\n",
            ),
            (
                "any case, comment, version, folded, trailing dot",
                "From: a@b.c\r\nauthentication-results: (hi) HUB1.Contoso.Test. 1;\r\n\tdkim=pass\r\nTo: x@y.z\r\n\r\n",
                "From: a@b.c\r\nTo: x@y.z\r\n\r\n",
            ),
            (
                "someone else's is kept",
                "Authentication-Results: mx.google.com; spf=pass\r\n\r\n",
                "Authentication-Results: mx.google.com; spf=pass\r\n\r\n",
            ),
            (
                "a subdomain is not ours",
                "Authentication-Results: x.edge1.contoso.test; spf=pass\r\n\r\n",
                "Authentication-Results: x.edge1.contoso.test; spf=pass\r\n\r\n",
            ),
        ];
        for (name, input, expected) in cases {
            assert_eq!(screen(input).as_deref(), Ok(*expected), "case {name:?}");
        }
    }

    #[test]
    fn a_header_section_that_does_not_parse_is_refused() {
        for (input, error) in [
            (
                "From: a@b.c\r\nX Odd Name: v\r\nX-Postern-Organization-AuthAs: Partner\r\n\r\n",
                HeaderError::NotAField { line: 2 },
            ),
            (
                "hello\r\nX-Postern-Organization-AuthAs: Partner\r\n",
                HeaderError::NotAField { line: 1 },
            ),
            (
                " X-Postern-Organization-A: 1\r\n\r\n",
                HeaderError::LeadingContinuation,
            ),
            (
                "Subject: x\r\n: no name\r\n\r\n",
                HeaderError::NotAField { line: 2 },
            ),
        ] {
            assert_eq!(screen(input), Err(error), "{input:?}");
        }
        // Only the header section must parse.
        assert!(screen("Subject: x\r\n\r\nX Odd Name: v\r\n").is_ok());
    }

    #[test]
    fn untouched_input_is_borrowed() {
        assert!(matches!(
            strip_org_headers(b"Subject: x\r\n\r\nhi\r\n", false),
            Cow::Borrowed(_)
        ));
    }
}
