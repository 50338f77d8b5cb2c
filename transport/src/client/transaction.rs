//! One mail transaction without I/O: the command lines (with the SIZE and
//! BODY parameters the server announced), the message as it goes on the
//! wire (dot-stuffed, CRLF only, ending `.\r\n`), and the mapping of the
//! server's replies to one [`DeliveryOutcome`] per recipient.

use crate::client::error::reply_text;
use crate::queue::{DeliveryOutcome, RecipientOutcome, RelayOrigin};
use crate::smtp::{EhloCapabilities, ONCE_KEYWORD, Reply};

/// `MAIL FROM:<sender>` with `SIZE=` when the server announced SIZE,
/// `BODY=8BITMIME` when it announced 8BITMIME and the body needs it, and
/// `X-POSTERN-ONCE=` naming the message when `origin` is given and the
/// server announced the keyword (only a node of our organisation does;
/// the caller gives `origin` only on an organisation hop).
/// `None` is the null sender `<>`.
pub fn mail_command(
    sender: Option<&str>,
    caps: &EhloCapabilities,
    body: &[u8],
    origin: Option<&RelayOrigin>,
) -> String {
    let mut line = format!("MAIL FROM:<{}>", sender.unwrap_or(""));
    if caps.size.is_some() {
        line.push_str(&format!(" SIZE={}", body.len()));
    }
    if caps.eight_bit_mime && has_eight_bit(body) {
        line.push_str(" BODY=8BITMIME");
    }
    if let Some(origin) = origin.filter(|_| caps.once) {
        line.push_str(&format!(" {ONCE_KEYWORD}={origin}"));
    }
    line.push_str("\r\n");
    line
}

/// `RCPT TO:<recipient>`.
pub fn rcpt_command(recipient: &str) -> String {
    format!("RCPT TO:<{recipient}>\r\n")
}

/// Whether `path` may be put between `<` and `>` on a command line: it must
/// not be able to end the line or the path (addresses come from the queue,
/// which parsed them, so this is a guard against command injection).
pub fn is_safe_path(path: &str) -> bool {
    !path
        .bytes()
        .any(|b| b < 0x20 || b == 0x7f || b == b'<' || b == b'>')
}

/// Whether the body has octets above 127 (and so needs `BODY=8BITMIME`).
pub fn has_eight_bit(body: &[u8]) -> bool {
    body.iter().any(|&b| b >= 0x80)
}

/// The largest message the server accepts, when it announced a fixed one
/// (`SIZE 0` or a bare `SIZE` means no fixed limit).
pub fn size_limit(caps: &EhloCapabilities) -> Option<u64> {
    caps.size.filter(|&n| n > 0)
}

/// The outcome for every recipient of a message larger than the server's
/// announced SIZE: refused before MAIL, permanently (as a 552 would be).
pub fn too_big_outcomes(recipients: &[String], body_len: usize, limit: u64) -> Vec<RecipientOutcome> {
    let text = format!(
        "552 5.3.4 Message size ({body_len} bytes) exceeds the next hop's fixed maximum of {limit} bytes"
    );
    every(recipients, DeliveryOutcome::PermanentFailure(text))
}

/// The message as it goes on the wire after `354`: every line ends in CRLF
/// (a bare CR or LF becomes CRLF, so nothing we send can smuggle an end of
/// data), a line starting with `.` gets another `.` (RFC 5321 §4.5.2), the
/// last line ends in CRLF, and `.\r\n` ends the data.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64 + 5);
    let mut line_start = true;
    let mut bytes = body.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        match b {
            b'\r' => {
                bytes.next_if_eq(&b'\n');
                out.extend_from_slice(b"\r\n");
                line_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                line_start = true;
            }
            _ => {
                if line_start && b == b'.' {
                    out.push(b'.');
                }
                out.push(b);
                line_start = false;
            }
        }
    }
    if !line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// What a refusal means: 5xx is permanent, anything else not positive is
/// tried again later.
pub fn refusal(reply: &Reply) -> DeliveryOutcome {
    if reply.is_permanent() {
        DeliveryOutcome::PermanentFailure(reply_text(reply))
    } else {
        DeliveryOutcome::TransientFailure(reply_text(reply))
    }
}

/// Maps one transaction's replies to one outcome per recipient.
///
/// `mail` is the reply to MAIL, `rcpts` the replies to RCPT in order (fewer
/// than the recipients when the transaction stopped early), and `message`
/// the last word on the message: the reply after the final dot, or the
/// reply to DATA when it was not 354, or `None` when DATA was not sent.
pub fn outcomes(
    recipients: &[String],
    mail: &Reply,
    rcpts: &[Reply],
    message: Option<&Reply>,
) -> Vec<RecipientOutcome> {
    if !is_success(mail) {
        return every(recipients, refusal(mail));
    }
    recipients
        .iter()
        .enumerate()
        .map(|(i, address)| {
            let outcome = match (rcpts.get(i), message) {
                (None, _) => DeliveryOutcome::TransientFailure("no reply to RCPT TO".to_owned()),
                (Some(rcpt), _) if !is_success(rcpt) => refusal(rcpt),
                (Some(_), Some(end)) if is_success(end) => DeliveryOutcome::Delivered(reply_text(end)),
                (Some(_), Some(end)) => refusal(end),
                (Some(_), None) => DeliveryOutcome::TransientFailure("the message was not sent".to_owned()),
            };
            RecipientOutcome::new(address.clone(), outcome)
        })
        .collect()
}

/// Maps an LMTP transaction's replies to one outcome per recipient
/// (RFC 2033 §4.2): `mail` and `rcpts` as for [`outcomes`], and `ends` the
/// replies after the message, one per recipient accepted at RCPT, in RCPT
/// order. An accepted recipient without its reply (the connection failed
/// first) is tried again; each of the others has its own verdict, so a
/// 4xx defers and a 5xx bounces only that recipient.
pub fn lmtp_outcomes(
    recipients: &[String],
    mail: &Reply,
    rcpts: &[Reply],
    ends: &[Reply],
) -> Vec<RecipientOutcome> {
    if !is_success(mail) {
        return every(recipients, refusal(mail));
    }
    let mut ends = ends.iter();
    recipients
        .iter()
        .enumerate()
        .map(|(i, address)| {
            let outcome = match rcpts.get(i) {
                None => DeliveryOutcome::TransientFailure("no reply to RCPT TO".to_owned()),
                Some(rcpt) if !is_success(rcpt) => refusal(rcpt),
                Some(_) => match ends.next() {
                    Some(end) if is_success(end) => DeliveryOutcome::Delivered(reply_text(end)),
                    Some(end) => refusal(end),
                    None => DeliveryOutcome::TransientFailure(
                        "no LMTP reply for this recipient after the message".to_owned(),
                    ),
                },
            };
            RecipientOutcome::new(address.clone(), outcome)
        })
        .collect()
}

/// A 2xx reply.
pub fn is_success(reply: &Reply) -> bool {
    (200..300).contains(&reply.code())
}

/// The same outcome for every recipient.
pub fn every(recipients: &[String], outcome: DeliveryOutcome) -> Vec<RecipientOutcome> {
    recipients
        .iter()
        .map(|r| RecipientOutcome::new(r.clone(), outcome.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::EnhancedCode;

    fn reply(code: u16, text: &str) -> Reply {
        let class = u8::try_from(code / 100).unwrap_or(5);
        Reply::new(code, Some(EnhancedCode(class, 0, 0)), [text])
    }

    fn rcpts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("r{i}@x.test")).collect()
    }

    #[test]
    fn dot_stuffing_and_line_ends() {
        let table: [(&[u8], &[u8]); 8] = [
            (b"", b".\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b"a", b"a\r\n.\r\n"),
            (b".\r\n", b"..\r\n.\r\n"),
            (b"a\r\n.b\r\n..\r\n", b"a\r\n..b\r\n...\r\n.\r\n"),
            (b"x.y\r\n", b"x.y\r\n.\r\n"),
            // Bare LF and CR become CRLF: the smuggling sequence `\n.\n`
            // cannot reach the wire as such.
            (b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\r.\rb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
        ];
        for (body, wire) in table {
            assert_eq!(dot_stuff(body), wire, "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn mail_parameters() {
        let mut caps = EhloCapabilities::default();
        let origin: RelayOrigin = "edge1.adatum.com:0000000000000000000000000000002A:1800000000"
            .parse()
            .unwrap();
        assert_eq!(mail_command(None, &caps, b"\xc3\xa9", None), "MAIL FROM:<>\r\n");
        assert_eq!(
            mail_command(None, &caps, b"a", Some(&origin)),
            "MAIL FROM:<>\r\n",
            "not offered: not sent"
        );
        caps.size = Some(0);
        caps.eight_bit_mime = true;
        assert_eq!(
            mail_command(Some("a@b.test"), &caps, b"abc", None),
            "MAIL FROM:<a@b.test> SIZE=3\r\n"
        );
        assert_eq!(
            mail_command(Some("a@b.test"), &caps, b"\xc3\xa9", None),
            "MAIL FROM:<a@b.test> SIZE=2 BODY=8BITMIME\r\n"
        );
        caps.once = true;
        assert_eq!(
            mail_command(Some("a@b.test"), &caps, b"abc", Some(&origin)),
            "MAIL FROM:<a@b.test> SIZE=3 X-POSTERN-ONCE=edge1.adatum.com:0000000000000000000000000000002A:1800000000\r\n"
        );
        assert_eq!(size_limit(&caps), None);
        caps.size = Some(10);
        assert_eq!(size_limit(&caps), Some(10));
        assert_eq!(rcpt_command("c@d.test"), "RCPT TO:<c@d.test>\r\n");
        assert!(is_safe_path("a@b.test") && is_safe_path(""));
        assert!(!is_safe_path("a@b>\r\nRCPT TO:<x@y") && !is_safe_path("a\n"));
    }

    #[test]
    fn reply_mapping() {
        let ok = reply(250, "ok");
        let queued = reply(250, "queued as X");
        let later = reply(450, "later");
        let never = reply(550, "no such user");
        let delivered = DeliveryOutcome::Delivered("250 2.0.0 queued as X".into());
        let transient = |t: &str| DeliveryOutcome::TransientFailure(t.into());
        let permanent = |t: &str| DeliveryOutcome::PermanentFailure(t.into());
        let three = rcpts(3);
        let table: Vec<(Vec<Reply>, Option<Reply>, Vec<DeliveryOutcome>)> = vec![
            (vec![], None, vec![transient("no reply to RCPT TO"); 3]),
            (
                vec![ok.clone(), later.clone(), never.clone()],
                Some(queued),
                vec![
                    delivered,
                    transient("450 4.0.0 later"),
                    permanent("550 5.0.0 no such user"),
                ],
            ),
            (
                vec![ok.clone(), ok.clone(), never.clone()],
                Some(reply(451, "disk full")),
                vec![
                    transient("451 4.0.0 disk full"),
                    transient("451 4.0.0 disk full"),
                    permanent("550 5.0.0 no such user"),
                ],
            ),
            (
                vec![ok.clone(); 3],
                Some(reply(554, "spam")),
                vec![permanent("554 5.0.0 spam"); 3],
            ),
            (
                vec![never.clone(), never.clone(), later.clone()],
                None,
                vec![
                    permanent("550 5.0.0 no such user"),
                    permanent("550 5.0.0 no such user"),
                    transient("450 4.0.0 later"),
                ],
            ),
        ];
        for (rcpt_replies, end, expected) in table {
            let got: Vec<DeliveryOutcome> = outcomes(&three, &ok, &rcpt_replies, end.as_ref())
                .into_iter()
                .map(|o| o.outcome)
                .collect();
            assert_eq!(got, expected, "{rcpt_replies:?} {end:?}");
        }
        let got = outcomes(&three, &reply(553, "bad sender"), &[], None);
        assert!(got.iter().all(|o| o.outcome == permanent("553 5.0.0 bad sender")));
        assert_eq!(got[2].address, "r2@x.test");
        let got = outcomes(&three, &reply(421, "closing"), &[], None);
        assert!(got.iter().all(|o| o.outcome == transient("421 4.0.0 closing")));
    }

    #[test]
    fn lmtp_reply_per_recipient() {
        let ok = reply(250, "ok");
        let saved = reply(250, "saved");
        let never = reply(550, "no such user");
        let over_quota = reply(452, "over quota");
        let rejected = reply(554, "virus");
        let four = rcpts(4);
        let delivered = DeliveryOutcome::Delivered("250 2.0.0 saved".into());
        let transient = |t: &str| DeliveryOutcome::TransientFailure(t.into());
        let permanent = |t: &str| DeliveryOutcome::PermanentFailure(t.into());
        let no_reply = transient("no LMTP reply for this recipient after the message");
        // RCPT replies, replies after the message (one per accepted
        // recipient), expected outcomes.
        let table: Vec<(Vec<Reply>, Vec<Reply>, Vec<DeliveryOutcome>)> = vec![
            (
                vec![ok.clone(), never.clone(), ok.clone(), ok.clone()],
                vec![saved.clone(), over_quota.clone(), rejected.clone()],
                vec![
                    delivered.clone(),
                    permanent("550 5.0.0 no such user"),
                    transient("452 4.0.0 over quota"),
                    permanent("554 5.0.0 virus"),
                ],
            ),
            // The connection failed after the first reply: the delivered
            // one stays delivered, the unanswered ones are retried.
            (
                vec![ok.clone(), ok.clone(), never.clone(), ok.clone()],
                vec![saved.clone()],
                vec![
                    delivered.clone(),
                    no_reply.clone(),
                    permanent("550 5.0.0 no such user"),
                    no_reply.clone(),
                ],
            ),
            (
                vec![ok.clone(), ok.clone()],
                vec![saved.clone(), saved.clone()],
                vec![
                    delivered.clone(),
                    delivered.clone(),
                    transient("no reply to RCPT TO"),
                    transient("no reply to RCPT TO"),
                ],
            ),
        ];
        for (rcpt_replies, ends, expected) in table {
            let got: Vec<DeliveryOutcome> = lmtp_outcomes(&four, &ok, &rcpt_replies, &ends)
                .into_iter()
                .map(|o| o.outcome)
                .collect();
            assert_eq!(got, expected, "{rcpt_replies:?} {ends:?}");
        }
        let got = lmtp_outcomes(&four, &reply(451, "try later"), &[], &[]);
        assert!(got.iter().all(|o| o.outcome == transient("451 4.0.0 try later")));
    }

    #[test]
    fn too_big() {
        let got = too_big_outcomes(&rcpts(2), 20, 10);
        assert_eq!(got.len(), 2);
        assert!(
            matches!(&got[1].outcome, DeliveryOutcome::PermanentFailure(t) if t.starts_with("552 5.3.4"))
        );
    }
}
