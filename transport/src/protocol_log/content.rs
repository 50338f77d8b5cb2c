//! What of the SMTP conversation may reach the log. As in Exchange, commands
//! and replies are logged but message content never is: after a 354 reply
//! nothing on the command side is logged until the final reply. AUTH
//! arguments and the SASL exchange that follows are written as `<redacted>`.
//!
//! BDAT chunks are not lines and must never be passed to the logger; the
//! `BDAT n [LAST]` command itself is logged like any other.
//!
//! This is a pure state machine over lines, knowing nothing of files, so it
//! is tested line by line.

use std::borrow::Cow;

/// Where the conversation is, as far as logging cares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Commands and replies, logged as they are.
    #[default]
    Command,
    /// After `AUTH`, until a reply other than 334: client lines are credentials.
    Auth,
    /// After a 354 reply, until the final reply: client lines are content.
    Data,
}

/// Redacts and suppresses lines according to the phase.
#[derive(Debug, Default)]
pub(crate) struct ContentFilter {
    phase: Phase,
}

/// What a credentials line is logged as.
pub(crate) const REDACTED: &str = "<redacted>";
/// What an AUTH command is logged as.
pub(crate) const AUTH_REDACTED: &str = "AUTH <redacted>";

impl ContentFilter {
    /// A line from the SMTP client (received on a receive connector, sent on
    /// a send connector): the text to log, or `None` for message content.
    pub fn command<'a>(&mut self, line: &'a str) -> Option<Cow<'a, str>> {
        match self.phase {
            Phase::Data => None,
            Phase::Auth => Some(Cow::Borrowed(REDACTED)),
            Phase::Command if is_verb(line, "AUTH") => {
                self.phase = Phase::Auth;
                Some(Cow::Borrowed(AUTH_REDACTED))
            }
            Phase::Command => Some(Cow::Borrowed(line)),
        }
    }

    /// A line from the SMTP server: always logged; moves the phase.
    pub fn reply<'a>(&mut self, line: &'a str) -> Option<Cow<'a, str>> {
        let code = line.get(..3);
        self.phase = match (self.phase, code) {
            (Phase::Command, Some("354")) => Phase::Data,
            (Phase::Auth, Some("334")) => Phase::Auth,
            // The final reply to DATA or AUTH, or any other reply.
            _ => Phase::Command,
        };
        Some(Cow::Borrowed(line))
    }

    #[cfg(test)]
    pub fn phase(&self) -> Phase {
        self.phase
    }
}

/// Whether `line` is the command `verb` (case-insensitive, alone or followed
/// by a space).
fn is_verb(line: &str, verb: &str) -> bool {
    let head = line.split(' ').next().unwrap_or("");
    head.eq_ignore_ascii_case(verb)
}

#[cfg(test)]
mod tests {
    use super::*;

    enum Side {
        C,
        S,
    }
    use Side::{C, S};

    /// Runs a transcript and returns what would be logged.
    fn run(transcript: &[(Side, &str)]) -> Vec<String> {
        let mut f = ContentFilter::default();
        transcript
            .iter()
            .filter_map(|(side, line)| match side {
                C => f.command(line).map(|l| format!("C {l}")),
                S => f.reply(line).map(|l| format!("S {l}")),
            })
            .collect()
    }

    #[test]
    fn data_content_is_never_logged() {
        let got = run(&[
            (C, "MAIL FROM:<a@adatum.com>"),
            (S, "250 2.1.0 Sender OK"),
            (C, "DATA"),
            (S, "354 Start mail input; end with <CRLF>.<CRLF>"),
            (C, "Subject: secret"),
            (C, "AUTH is not a command in a body"),
            (C, "."),
            (S, "250 2.6.0 Queued mail for delivery"),
            (C, "QUIT"),
        ]);
        assert_eq!(
            got,
            [
                "C MAIL FROM:<a@adatum.com>",
                "S 250 2.1.0 Sender OK",
                "C DATA",
                "S 354 Start mail input; end with <CRLF>.<CRLF>",
                "S 250 2.6.0 Queued mail for delivery",
                "C QUIT",
            ]
        );
    }

    #[test]
    fn auth_and_sasl_exchange_are_redacted() {
        let got = run(&[
            (C, "auth login"),
            (S, "334 VXNlcm5hbWU6"),
            (C, "dXNlcg=="),
            (S, "334 UGFzc3dvcmQ6"),
            (C, "cGFzcw=="),
            (S, "235 2.7.0 Authentication successful"),
            (C, "AUTH PLAIN AHVzZXIAcGFzcw=="),
            (S, "503 5.5.1 Already authenticated"),
            (C, "AUTHOR is not AUTH"),
        ]);
        assert_eq!(
            got,
            [
                "C AUTH <redacted>",
                "S 334 VXNlcm5hbWU6",
                "C <redacted>",
                "S 334 UGFzc3dvcmQ6",
                "C <redacted>",
                "S 235 2.7.0 Authentication successful",
                "C AUTH <redacted>",
                "S 503 5.5.1 Already authenticated",
                "C AUTHOR is not AUTH",
            ]
        );
    }

    #[test]
    fn a_refused_data_goes_back_to_commands() {
        let mut f = ContentFilter::default();
        f.command("DATA");
        f.reply("554 5.5.1 No valid recipients");
        assert_eq!(f.phase(), Phase::Command);
        assert_eq!(f.command("RSET").as_deref(), Some("RSET"));
    }
}
