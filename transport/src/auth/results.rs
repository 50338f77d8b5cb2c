//! The `Authentication-Results` field (RFC 8601) the edge stamps, and the
//! removal of fields from outside that claim the edge's authserv-id
//! (§5: a receiver must not trust, and should remove, results that
//! pretend to be its own). Only the header section is read; the body is
//! never touched.

use std::borrow::Cow;

/// The field name.
pub const AUTHENTICATION_RESULTS: &str = "Authentication-Results";

/// The header a quarantined message carries (the organisation's prefix:
/// the header firewall removes it from anyone outside, transport rules
/// route on it).
pub const QUARANTINE_FIELD: &str = "X-Postern-Organization-DMARC";

/// Removes every `Authentication-Results` field whose authserv-id is
/// `authserv_id` (case-insensitive), continuation lines included.
/// Returns the input borrowed when nothing is removed.
pub fn strip_ours<'a>(message: &'a [u8], authserv_id: &str) -> Cow<'a, [u8]> {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut current: Option<(usize, Vec<u8>)> = None;
    let mut pos = 0;
    let close = |start: usize, end: usize, value: &[u8], spans: &mut Vec<(usize, usize)>| {
        if claims(value, authserv_id) {
            spans.push((start, end));
        }
    };
    while pos < message.len() {
        let end = message[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..end];
        let continuation = matches!(line.first(), Some(b' ' | b'\t')) && pos > 0;
        if continuation {
            if let Some((_, value)) = current.as_mut() {
                value.extend_from_slice(line);
            }
            pos = end;
            continue;
        }
        if let Some((start, value)) = current.take() {
            close(start, pos, &value, &mut spans);
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            break; // the empty line, or not a header field
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(AUTHENTICATION_RESULTS.as_bytes()) {
            current = Some((pos, line[colon + 1..].to_vec()));
        }
        pos = end;
    }
    if let Some((start, value)) = current.take() {
        close(start, pos, &value, &mut spans);
    }
    if spans.is_empty() {
        return Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len());
    let mut from = 0;
    for (start, end) in spans {
        out.extend_from_slice(&message[from..start]);
        from = end;
    }
    out.extend_from_slice(&message[from..]);
    Cow::Owned(out)
}

/// Whether a field value's authserv-id (before the first `;`, comments
/// and an optional version aside) is `authserv_id`.
fn claims(value: &[u8], authserv_id: &str) -> bool {
    let text = String::from_utf8_lossy(value);
    let id_part = text.split(';').next().unwrap_or_default();
    let id = strip_comments(id_part);
    id.split_whitespace()
        .next()
        .is_some_and(|id| id.eq_ignore_ascii_case(authserv_id))
}

fn strip_comments(s: &str) -> String {
    let mut depth = 0usize;
    s.chars()
        .filter(|c| match c {
            '(' => {
                depth += 1;
                false
            }
            ')' => {
                depth = depth.saturating_sub(1);
                false
            }
            _ => depth == 0,
        })
        .collect()
}

/// Appends the result clauses of another `Authentication-Results` line of
/// ours (`other`, e.g. the domain-security `tls=pass`) to `field`, so the
/// message carries one field. Both end without CRLF.
pub fn merge(field: &str, other: &str) -> String {
    let clauses = other
        .split_once(':')
        .map(|(_, v)| v)
        .and_then(|v| v.split_once(';'))
        .map(|(_, clauses)| clauses.trim());
    match clauses {
        Some(c) if !c.is_empty() => format!("{field};\r\n\t{c}"),
        _ => field.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_results_of_ours_are_removed() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "ours, folded",
                "Authentication-Results: edge1.adatum.com;\r\n\tdkim=pass header.d=adatum.com\r\nFrom: a@b.c\r\n\r\nbody\r\n",
                "From: a@b.c\r\n\r\nbody\r\n",
            ),
            (
                "ours with a comment and a version, any case",
                "authentication-results: (forged) EDGE1.adatum.com 1; spf=pass\r\nSubject: x\r\n\r\n",
                "Subject: x\r\n\r\n",
            ),
            (
                "someone else's stays",
                "Authentication-Results: mx.example.net; spf=pass\r\nSubject: x\r\n\r\n",
                "Authentication-Results: mx.example.net; spf=pass\r\nSubject: x\r\n\r\n",
            ),
            (
                "a lookalike id stays",
                "Authentication-Results: edge1.adatum.com.evil.example; spf=pass\r\n\r\n",
                "Authentication-Results: edge1.adatum.com.evil.example; spf=pass\r\n\r\n",
            ),
            (
                "the body is not read",
                "Subject: x\r\n\r\nAuthentication-Results: edge1.adatum.com; spf=pass\r\n",
                "Subject: x\r\n\r\nAuthentication-Results: edge1.adatum.com; spf=pass\r\n",
            ),
            (
                "last field, no body",
                "Subject: x\r\nAuthentication-Results: edge1.adatum.com; none",
                "Subject: x\r\n",
            ),
        ];
        for (name, input, expected) in cases {
            let out = strip_ours(input.as_bytes(), "edge1.adatum.com");
            assert_eq!(String::from_utf8_lossy(&out), *expected, "{name}");
        }
    }

    #[test]
    fn merging_keeps_one_field() {
        let merged = merge(
            "Authentication-Results: edge1.adatum.com;\r\n\tspf=pass",
            "Authentication-Results: edge1.adatum.com; tls=pass (domain-secured) smtp.mailfrom=nw.example",
        );
        assert_eq!(
            merged,
            "Authentication-Results: edge1.adatum.com;\r\n\tspf=pass;\r\n\ttls=pass (domain-secured) smtp.mailfrom=nw.example"
        );
    }
}
