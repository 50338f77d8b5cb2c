//! Delivery status notifications (RFC 3464): a pure function that writes
//! the `multipart/report; report-type=delivery-status` message telling a
//! sender that some recipients failed, or are delayed.
//!
//! Parts: a human-readable explanation, the `message/delivery-status`
//! fields, and the original message's headers (`text/rfc822-headers`, not
//! the body, as Exchange and Postfix do by default). Addresses are written
//! as `rfc822` address types; SMTPUTF8 (RFC 6533) addresses pass through
//! unchanged for now.

use std::fmt::Write as _;
use std::time::SystemTime;

use postern_model::QueueId;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::queue::envelope::{Envelope, RecipientState, RecipientStatus};

/// Which notice to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnKind {
    /// Recipients that failed for good (`Action: failed`).
    Failure,
    /// Recipients still being retried (`Action: delayed`).
    Delay,
}

/// Everything a DSN says; the recipients are the ones to report.
#[derive(Debug, Clone)]
pub struct DsnInput<'a> {
    /// Failure or delay.
    pub kind: DsnKind,
    /// The original message's queue id.
    pub id: QueueId,
    /// The original envelope (sender, arrival date).
    pub envelope: &'a Envelope,
    /// The recipients to report.
    pub recipients: Vec<&'a RecipientState>,
    /// The original message's header section (see [`original_headers`]).
    pub original_headers: &'a [u8],
    /// This node's name.
    pub reporting_mta: &'a str,
    /// The time of the report.
    pub now: SystemTime,
    /// For delays: when the queue will give up.
    pub will_retry_until: Option<SystemTime>,
}

/// A DSN ready to queue, with the null sender, to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// The original sender: the DSN's only recipient.
    pub to: String,
    /// The whole message, CRLF line ends.
    pub message: Vec<u8>,
}

/// The DSN for `input`, or `None` when the original sender is null (a DSN
/// is never answered with a DSN) or there is no recipient to report.
pub fn build_dsn(input: &DsnInput<'_>) -> Option<Dsn> {
    let to = input.envelope.sender.as_deref().filter(|s| !s.is_empty())?;
    if input.recipients.is_empty() {
        return None;
    }
    let mta = input.reporting_mta;
    let boundary = format!("{}/{}", input.id, mta);
    let (subject, action, tag) = match input.kind {
        DsnKind::Failure => ("Undeliverable: returned to sender", "failed", "failed"),
        DsnKind::Delay => ("Delayed: still trying to deliver", "delayed", "delayed"),
    };
    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = write!(
        out,
        "From: Mail Delivery System <MAILER-DAEMON@{mta}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}.{tag}.{stamp}@{mta}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated delivery status notification.\r\n\
         \r\n--{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n",
        date = rfc2822(input.now),
        id = input.id,
        stamp = unix_secs(input.now),
    );
    out.push_str(&human_text(input));
    let _ = write!(
        out,
        "\r\n--{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {mta}\r\n\
         X-Postern-Queue-ID: {id}\r\n\
         Arrival-Date: {arrival}\r\n",
        id = input.id,
        arrival = rfc2822(input.envelope.received_at),
    );
    for recipient in &input.recipients {
        let (status, reply) = status_and_reply(input.kind, &recipient.status);
        let _ = write!(
            out,
            "\r\nFinal-Recipient: rfc822; {address}\r\nAction: {action}\r\nStatus: {status}\r\n",
            address = recipient.address,
        );
        if starts_with_reply_code(reply) {
            let _ = write!(out, "Diagnostic-Code: smtp; {}\r\n", one_line(reply));
        }
        let _ = write!(out, "Last-Attempt-Date: {}\r\n", rfc2822(input.now));
        if let Some(until) = input.will_retry_until.filter(|_| input.kind == DsnKind::Delay) {
            let _ = write!(out, "Will-Retry-Until: {}\r\n", rfc2822(until));
        }
    }
    let _ = write!(
        out,
        "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    );
    let mut message = out.into_bytes();
    message.extend_from_slice(input.original_headers);
    if !input.original_headers.ends_with(b"\n") {
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Some(Dsn {
        to: to.to_owned(),
        message,
    })
}

/// The header section of `body`: everything before the first empty line
/// (CRLF or bare LF), including the last header's line end.
pub fn original_headers(body: &[u8]) -> &[u8] {
    let mut start = 0;
    while start < body.len() {
        let end = body[start..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(body.len(), |p| start + p + 1);
        let line = &body[start..end];
        if line == b"\r\n" || line == b"\n" {
            return &body[..start];
        }
        start = end;
    }
    body
}

/// The enhanced status code (RFC 3463) found in `reply`, if any.
pub fn enhanced_status(reply: &str) -> Option<&str> {
    reply.split_whitespace().take(2).find(|token| {
        let parts: Vec<&str> = token.split('.').collect();
        parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
    })
}

fn status_and_reply(kind: DsnKind, status: &RecipientStatus) -> (String, &str) {
    let (reply, default) = match status {
        RecipientStatus::Failed { reply, .. } => (reply.as_str(), "5.0.0"),
        RecipientStatus::Deferred { last_error, .. } => (last_error.as_str(), "4.0.0"),
        RecipientStatus::Pending | RecipientStatus::Delivered { .. } => ("", "4.0.0"),
    };
    let mut code = enhanced_status(reply).unwrap_or(default).to_owned();
    // A delay is transient by definition, whatever the last reply said.
    if kind == DsnKind::Delay && !code.starts_with('4') {
        code = "4.0.0".to_owned();
    }
    (code, reply)
}

fn human_text(input: &DsnInput<'_>) -> String {
    let mut text = match input.kind {
        DsnKind::Failure => String::from(
            "Your message could not be delivered to the following recipients.\r\n\
             No further attempts will be made.\r\n\r\n",
        ),
        DsnKind::Delay => String::from(
            "Your message has not been delivered yet to the following recipients.\r\n\
             Delivery will be retried; you need not send it again.\r\n\r\n",
        ),
    };
    for recipient in &input.recipients {
        let (_, reply) = status_and_reply(input.kind, &recipient.status);
        let _ = write!(text, "  <{}>: {}\r\n", recipient.address, one_line(reply));
    }
    text
}

fn starts_with_reply_code(reply: &str) -> bool {
    let bytes = reply.as_bytes();
    bytes.len() >= 3 && bytes[..3].iter().all(u8::is_ascii_digit) && matches!(bytes[0], b'4' | b'5')
}

/// A reply folded onto one line (multi-line SMTP replies keep their text).
fn one_line(reply: &str) -> String {
    reply
        .split(['\r', '\n'])
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn rfc2822(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc2822)
        .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".to_owned())
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::time::Duration;

    use super::*;

    const BODY: &[u8] = b"From: s@adatum.com\r\nSubject: hello\r\n\r\nbody text\r\n";

    fn failed(address: &str, reply: &str) -> RecipientState {
        let mut r = RecipientState::new(address, crate::queue::QueuedHop::read("fabrikam.com".into()));
        r.status = RecipientStatus::Failed {
            at: SystemTime::UNIX_EPOCH,
            reply: reply.into(),
        };
        r
    }

    fn input<'a>(envelope: &'a Envelope, recipients: Vec<&'a RecipientState>, kind: DsnKind) -> DsnInput<'a> {
        DsnInput {
            kind,
            id: QueueId::from_parts(7, 7),
            envelope,
            recipients,
            original_headers: original_headers(BODY),
            reporting_mta: "edge1.adatum.com",
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(86_400),
            will_retry_until: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(2 * 86_400)),
        }
    }

    #[test]
    fn failure_report_has_the_rfc3464_fields() {
        let envelope = Envelope::new(Some("s@adatum.com".into()), vec![], SystemTime::UNIX_EPOCH);
        let a = failed("a@fabrikam.com", "550 5.1.1 no such user");
        let b = failed("b@fabrikam.com", "4.4.7 message expired");
        let dsn = build_dsn(&input(&envelope, vec![&a, &b], DsnKind::Failure)).unwrap();
        assert_eq!(dsn.to, "s@adatum.com");
        let text = String::from_utf8(dsn.message).unwrap();
        for needle in [
            "To: <s@adatum.com>\r\n",
            "Content-Type: multipart/report; report-type=delivery-status;",
            "Auto-Submitted: auto-replied\r\n",
            "Content-Type: message/delivery-status\r\n",
            "Reporting-MTA: dns; edge1.adatum.com\r\n",
            "Arrival-Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n",
            "Final-Recipient: rfc822; a@fabrikam.com\r\nAction: failed\r\nStatus: 5.1.1\r\n",
            "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n",
            "Final-Recipient: rfc822; b@fabrikam.com\r\nAction: failed\r\nStatus: 4.4.7\r\n",
            "Content-Type: text/rfc822-headers\r\n\r\nFrom: s@adatum.com\r\nSubject: hello\r\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(!text.contains("body text"), "the original body is not returned");
        assert!(text.ends_with("--\r\n"));
        assert!(!text.contains("Will-Retry-Until"));
    }

    #[test]
    fn delay_report_says_delayed_and_until_when() {
        let envelope = Envelope::new(Some("s@adatum.com".into()), vec![], SystemTime::UNIX_EPOCH);
        let mut r = RecipientState::to_domain_of("a@fabrikam.com");
        r.status = RecipientStatus::Deferred {
            attempts: 3,
            next_attempt: SystemTime::UNIX_EPOCH,
            last_error: "421 4.4.2 timeout".into(),
        };
        let dsn = build_dsn(&input(&envelope, vec![&r], DsnKind::Delay)).unwrap();
        let text = String::from_utf8(dsn.message).unwrap();
        assert!(text.contains("Action: delayed\r\nStatus: 4.4.2\r\n"), "{text}");
        assert!(text.contains("Will-Retry-Until: Sat, 03 Jan 1970"), "{text}");
    }

    #[test]
    fn null_sender_or_nobody_to_report_gives_no_dsn() {
        let null = Envelope::new(None, vec![], SystemTime::UNIX_EPOCH);
        let a = failed("a@fabrikam.com", "550 5.1.1 no");
        assert!(build_dsn(&input(&null, vec![&a], DsnKind::Failure)).is_none());
        let normal = Envelope::new(Some("s@adatum.com".into()), vec![], SystemTime::UNIX_EPOCH);
        assert!(build_dsn(&input(&normal, vec![], DsnKind::Failure)).is_none());
    }

    #[test]
    fn finds_headers_and_status_codes() {
        assert_eq!(original_headers(b"A: 1\nB: 2\n\nbody"), b"A: 1\nB: 2\n");
        assert_eq!(original_headers(b"A: 1\r\n"), b"A: 1\r\n");
        assert_eq!(enhanced_status("550 5.1.1 no"), Some("5.1.1"));
        assert_eq!(enhanced_status("4.4.7 expired"), Some("4.4.7"));
        assert_eq!(enhanced_status("550 no such user 5.1.1"), None);
        assert_eq!(enhanced_status("connection refused"), None);
    }
}
