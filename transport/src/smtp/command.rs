//! One SMTP command line (RFC 5321 section 4.1) parsed into [`Command`].
//! Verbs and parameter keywords are case-insensitive; `MAIL FROM:<x>` is
//! accepted with or without spaces after the colon and, leniently, without
//! the angle brackets. A refused line is a [`CommandError`] that knows the
//! reply to send, so the mapping from fault to SMTP code lives here.

use crate::queue::RelayOrigin;
use crate::smtp::address::{AddressError, ForwardPath, HeloName, ReversePath};
use crate::smtp::reply::Reply;

/// The EHLO keyword and `MAIL FROM` parameter by which one node of the
/// organisation names a relayed message by its own queue id (see
/// [`crate::queue::once`]); offered and accepted only between nodes of
/// the organisation.
pub const ONCE_KEYWORD: &str = "X-POSTERN-ONCE";

/// A parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `EHLO name`.
    Ehlo(HeloName),
    /// `HELO name`.
    Helo(HeloName),
    /// `MAIL FROM:<path> [params]`.
    Mail {
        /// The sender, or the null path.
        from: ReversePath,
        /// The ESMTP parameters.
        params: MailParams,
    },
    /// `RCPT TO:<path> [params]`.
    Rcpt {
        /// The recipient.
        to: ForwardPath,
        /// ESMTP parameters, none of which we offer yet.
        params: Vec<EsmtpParam>,
    },
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP [text]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `STARTTLS`.
    StartTls,
    /// `VRFY string`.
    Vrfy(String),
    /// `HELP [topic]`.
    Help(Option<String>),
    /// Any other verb, upper-cased (EXPN, AUTH, BDAT, TURN…).
    Unknown(String),
}

/// The parameters of `MAIL FROM`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=n` (RFC 1870): the size the client declares.
    pub size: Option<u64>,
    /// `BODY=7BIT|8BITMIME` (RFC 6152).
    pub body: Option<BodyType>,
    /// `REQUIRETLS` (RFC 8689): relay only over verified TLS.
    pub require_tls: bool,
    /// `X-POSTERN-ONCE=node:queue-id:expiry` ([`ONCE_KEYWORD`]); the
    /// session refuses it from anyone but a node of the organisation.
    pub once: Option<RelayOrigin>,
    /// Every other parameter, kept for the session to accept or refuse.
    pub other: Vec<EsmtpParam>,
}

/// The `BODY=` value of `MAIL FROM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyType {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// An ESMTP parameter `KEYWORD[=value]`; the keyword is upper-cased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EsmtpParam {
    /// The keyword, upper-case.
    pub keyword: String,
    /// The value after `=`, if any.
    pub value: Option<String>,
}

/// Why a command line was refused. The client is at fault; [`reply`]
/// gives the answer.
///
/// [`reply`]: CommandError::reply
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// An empty line or one that is not UTF-8 text.
    #[error("not a command line")]
    NotACommand,
    /// The command's structure is wrong (missing `FROM:`, stray arguments…).
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    /// A well-formed command whose argument is not acceptable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The MAIL FROM address is malformed.
    #[error("bad sender address: {0}")]
    BadSender(AddressError),
    /// The RCPT TO address is malformed.
    #[error("bad recipient address: {0}")]
    BadRecipient(AddressError),
    /// A parameter we do not offer (RFC 5321 section 4.1.1.11: 555).
    #[error("unsupported parameter {0}")]
    UnsupportedParameter(String),
}

impl CommandError {
    /// The reply the server sends for this error.
    pub fn reply(&self) -> Reply {
        match self {
            Self::NotACommand => Reply::unknown_command(),
            Self::Syntax(why) => Reply::simple(501, (5, 5, 2), format!("Syntax error: {why}")),
            Self::InvalidArgument(why) => Reply::simple(501, (5, 5, 4), format!("Invalid argument: {why}")),
            Self::BadSender(AddressError::NonAscii) | Self::BadRecipient(AddressError::NonAscii) => {
                Reply::simple(
                    553,
                    (5, 6, 7),
                    "Non-ASCII address requires SMTPUTF8, which is not offered",
                )
            }
            Self::BadSender(e) => Reply::simple(501, (5, 1, 7), format!("Bad sender address: {e}")),
            Self::BadRecipient(e) => Reply::simple(501, (5, 1, 3), format!("Bad recipient address: {e}")),
            Self::UnsupportedParameter(k) => {
                Reply::simple(555, (5, 5, 4), format!("Unsupported parameter {k}"))
            }
        }
    }
}

impl Command {
    /// Parses one command line, given without its CRLF.
    pub fn parse(line: &[u8]) -> Result<Self, CommandError> {
        let line = std::str::from_utf8(line).map_err(|_| CommandError::NotACommand)?;
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(CommandError::Syntax("control characters in the command line"));
        }
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        if verb.is_empty() {
            return Err(CommandError::NotACommand);
        }
        let verb = verb.to_ascii_uppercase();
        let no_args = |cmd: Command| {
            if rest.trim().is_empty() {
                Ok(cmd)
            } else {
                Err(CommandError::Syntax("this command takes no arguments"))
            }
        };
        match verb.as_str() {
            "EHLO" => helo_name(rest).map(Self::Ehlo),
            "HELO" => helo_name(rest).map(Self::Helo),
            "MAIL" => parse_mail(rest),
            "RCPT" => parse_rcpt(rest),
            "DATA" => no_args(Self::Data),
            "RSET" => no_args(Self::Rset),
            "QUIT" => no_args(Self::Quit),
            "STARTTLS" => no_args(Self::StartTls),
            "NOOP" => Ok(Self::Noop),
            "VRFY" if rest.trim().is_empty() => Err(CommandError::Syntax("VRFY needs an argument")),
            "VRFY" => Ok(Self::Vrfy(rest.trim().to_string())),
            "HELP" => Ok(Self::Help(
                Some(rest.trim()).filter(|t| !t.is_empty()).map(str::to_string),
            )),
            _ => Ok(Self::Unknown(verb)),
        }
    }

    /// The verb, upper-case, for logs.
    pub fn verb(&self) -> &str {
        match self {
            Self::Ehlo(_) => "EHLO",
            Self::Helo(_) => "HELO",
            Self::Mail { .. } => "MAIL",
            Self::Rcpt { .. } => "RCPT",
            Self::Data => "DATA",
            Self::Rset => "RSET",
            Self::Noop => "NOOP",
            Self::Quit => "QUIT",
            Self::StartTls => "STARTTLS",
            Self::Vrfy(_) => "VRFY",
            Self::Help(_) => "HELP",
            Self::Unknown(verb) => verb,
        }
    }
}

fn helo_name(rest: &str) -> Result<HeloName, CommandError> {
    let name = rest.trim();
    if name.is_empty() {
        return Err(CommandError::Syntax(
            "a domain name or address literal is required",
        ));
    }
    HeloName::parse(name).map_err(|_| CommandError::InvalidArgument(format!("{name:?} is not a domain name")))
}

/// Splits `FROM:<path> params` after the `FROM:`/`TO:` prefix.
fn path_and_params<'a>(
    rest: &'a str,
    prefix: &'static str,
) -> Result<(&'a str, Vec<EsmtpParam>), CommandError> {
    let head = rest
        .get(..prefix.len())
        .filter(|h| h.eq_ignore_ascii_case(prefix));
    let Some(_) = head else {
        return Err(CommandError::Syntax(if prefix == "FROM:" {
            "expected MAIL FROM:<address>"
        } else {
            "expected RCPT TO:<address>"
        }));
    };
    let rest = rest[prefix.len()..].trim_start_matches(' ');
    let end = path_end(rest);
    let (path, params) = rest.split_at(end);
    if !params.is_empty() && !params.starts_with(' ') {
        return Err(CommandError::Syntax("junk after the address"));
    }
    let params = params
        .split(' ')
        .filter(|p| !p.is_empty())
        .map(esmtp_param)
        .collect::<Result<_, _>>()?;
    Ok((path, params))
}

/// Where the path ends: after the `>` that closes it (ignoring any inside a
/// quoted local part), or at the first space when there are no brackets.
fn path_end(s: &str) -> usize {
    if !s.starts_with('<') {
        return s.find(' ').unwrap_or(s.len());
    }
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => return i + 1,
            _ => {}
        }
    }
    s.len()
}

fn esmtp_param(p: &str) -> Result<EsmtpParam, CommandError> {
    let (keyword, value) = match p.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (p, None),
    };
    let keyword_ok = keyword.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && keyword.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let value_ok =
        value.is_none_or(|v| !v.is_empty() && v.bytes().all(|b| (33..=126).contains(&b) && b != b'='));
    if !keyword_ok || !value_ok {
        return Err(CommandError::Syntax("malformed ESMTP parameter"));
    }
    Ok(EsmtpParam {
        keyword: keyword.to_ascii_uppercase(),
        value: value.map(str::to_string),
    })
}

fn parse_mail(rest: &str) -> Result<Command, CommandError> {
    let (path, raw) = path_and_params(rest, "FROM:")?;
    let from = ReversePath::parse(path).map_err(CommandError::BadSender)?;
    let mut params = MailParams::default();
    for p in raw {
        let value = p.value.as_deref();
        match p.keyword.as_str() {
            "SIZE" if params.size.is_some() => return Err(duplicate("SIZE")),
            "SIZE" => {
                let n = value.filter(|v| v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()));
                let n = n
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| invalid("SIZE needs a number"))?;
                params.size = Some(n);
            }
            "BODY" if params.body.is_some() => return Err(duplicate("BODY")),
            "BODY" => {
                params.body = Some(match value.map(str::to_ascii_uppercase).as_deref() {
                    Some("7BIT") => BodyType::SevenBit,
                    Some("8BITMIME") => BodyType::EightBitMime,
                    Some(other) => {
                        return Err(CommandError::UnsupportedParameter(format!("BODY={other}")));
                    }
                    None => return Err(invalid("BODY needs a value")),
                })
            }
            "REQUIRETLS" if params.require_tls => return Err(duplicate("REQUIRETLS")),
            "REQUIRETLS" if value.is_some() => return Err(invalid("REQUIRETLS takes no value")),
            "REQUIRETLS" => params.require_tls = true,
            ONCE_KEYWORD if params.once.is_some() => return Err(duplicate(ONCE_KEYWORD)),
            ONCE_KEYWORD => {
                let origin = value
                    .ok_or_else(|| invalid("X-POSTERN-ONCE needs a value"))?
                    .parse()
                    .map_err(|e: crate::queue::once::RelayOriginError| invalid(&e.to_string()))?;
                params.once = Some(origin);
            }
            _ => params.other.push(p),
        }
    }
    Ok(Command::Mail { from, params })
}

fn parse_rcpt(rest: &str) -> Result<Command, CommandError> {
    let (path, params) = path_and_params(rest, "TO:")?;
    let to = ForwardPath::parse(path).map_err(CommandError::BadRecipient)?;
    Ok(Command::Rcpt { to, params })
}

fn duplicate(keyword: &str) -> CommandError {
    CommandError::InvalidArgument(format!("{keyword} given twice"))
}

fn invalid(why: &str) -> CommandError {
    CommandError::InvalidArgument(why.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Command, CommandError> {
        Command::parse(s.as_bytes())
    }

    fn code(s: &str) -> String {
        let r = parse(s).unwrap_err().reply();
        format!("{} {}", r.code(), r.enhanced().unwrap())
    }

    #[test]
    fn simple_verbs_any_case() {
        assert_eq!(parse("quit"), Ok(Command::Quit));
        assert_eq!(parse("StartTLS"), Ok(Command::StartTls));
        assert_eq!(parse("NOOP hello"), Ok(Command::Noop));
        assert_eq!(parse("help mail"), Ok(Command::Help(Some("mail".into()))));
        assert_eq!(parse("VRFY bob"), Ok(Command::Vrfy("bob".into())));
        assert_eq!(parse("expn list"), Ok(Command::Unknown("EXPN".into())));
        assert!(
            matches!(parse("ehlo Client.Example.COM"), Ok(Command::Ehlo(HeloName::Domain(d))) if d.as_str() == "client.example.com")
        );
        assert!(matches!(
            parse("HELO [192.0.2.7]"),
            Ok(Command::Helo(HeloName::Literal(_)))
        ));
    }

    #[test]
    fn mail_with_and_without_space() {
        for line in ["MAIL FROM:<a@b.com>", "mail from: <a@b.com>", "Mail From:a@b.com"] {
            let Ok(Command::Mail {
                from: ReversePath::Mailbox(m),
                params,
            }) = parse(line)
            else {
                panic!("{line}")
            };
            assert_eq!(m.to_string(), "a@b.com");
            assert_eq!(params, MailParams::default());
        }
        assert!(matches!(
            parse("MAIL FROM:<>"),
            Ok(Command::Mail {
                from: ReversePath::Null,
                ..
            })
        ));
    }

    #[test]
    fn mail_parameters() {
        let Ok(Command::Mail { params, .. }) =
            parse("MAIL FROM:<a@b.com> size=1000 BODY=8bitmime RET=HDRS ENVID=x+2B1")
        else {
            panic!()
        };
        assert_eq!(params.size, Some(1000));
        assert_eq!(params.body, Some(BodyType::EightBitMime));
        assert_eq!(params.other.len(), 2);
        assert_eq!(
            params.other[0],
            EsmtpParam {
                keyword: "RET".into(),
                value: Some("HDRS".into())
            }
        );
        let Ok(Command::Mail { from, .. }) = parse(r#"MAIL FROM:<"a> b"@c.com> SIZE=1"#) else {
            panic!()
        };
        assert_eq!(from.to_string(), r#"<"a> b"@c.com>"#);
    }

    #[test]
    fn rcpt_forms() {
        assert!(matches!(
            parse("RCPT TO:<postmaster>"),
            Ok(Command::Rcpt {
                to: ForwardPath::Postmaster,
                ..
            })
        ));
        let Ok(Command::Rcpt { to, params }) = parse("rcpt to:<@relay.com:u@d.com> NOTIFY=NEVER") else {
            panic!()
        };
        assert_eq!(to.to_string(), "<u@d.com>");
        assert_eq!(params[0].keyword, "NOTIFY");
    }

    #[test]
    fn errors_carry_replies() {
        assert_eq!(code(""), "500 5.5.2");
        assert_eq!(code(" MAIL"), "500 5.5.2");
        assert_eq!(code("MAIL <a@b.com>"), "501 5.5.2");
        assert_eq!(code("MAIL FROM:<a@b.com>junk"), "501 5.5.2");
        assert_eq!(code("DATA now"), "501 5.5.2");
        assert_eq!(code("EHLO"), "501 5.5.2");
        assert_eq!(code("EHLO bad_host!"), "501 5.5.4");
        assert_eq!(code("MAIL FROM:<a@@b.com>"), "501 5.1.7");
        assert_eq!(code("RCPT TO:<>"), "501 5.1.3");
        assert_eq!(code("RCPT TO:<jörg@b.com>"), "553 5.6.7");
        assert_eq!(code("MAIL FROM:<a@b.com> SIZE=big"), "501 5.5.4");
        assert_eq!(code("MAIL FROM:<a@b.com> SIZE=1 SIZE=2"), "501 5.5.4");
        assert_eq!(code("MAIL FROM:<a@b.com> BODY=BINARYMIME"), "555 5.5.4");
        assert_eq!(code("MAIL FROM:<a@b.com> =x"), "501 5.5.2");
        assert_eq!(code("NOOP \u{1}"), "501 5.5.2");
        assert_eq!(
            Command::parse(b"\xff\xfe").unwrap_err(),
            CommandError::NotACommand
        );
    }
}
