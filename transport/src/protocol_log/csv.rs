//! One protocol log line: the nine `#Fields:` columns, quoted per RFC 4180
//! (a field holding `,`, `"`, CR or LF is enclosed in quotes, quotes doubled).

use std::fmt::Write as _;
use std::net::SocketAddr;

use time::OffsetDateTime;

use crate::protocol_log::SessionId;
use crate::protocol_log::clock::push_timestamp;

/// The `#Fields:` header, Exchange's columns in Exchange's order.
pub(crate) const FIELDS: &str =
    "date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context";

/// The `event` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `+`: the connection opened.
    Connect,
    /// `-`: the connection closed.
    Disconnect,
    /// `>`: a line Postern sent.
    Send,
    /// `<`: a line Postern received.
    Receive,
    /// `*`: information, such as the outcome of TLS negotiation.
    Information,
}

impl Event {
    /// The symbol Exchange writes.
    pub fn symbol(self) -> &'static str {
        match self {
            Event::Connect => "+",
            Event::Disconnect => "-",
            Event::Send => ">",
            Event::Receive => "<",
            Event::Information => "*",
        }
    }
}

/// The columns of one line.
pub(crate) struct Record<'a> {
    pub time: OffsetDateTime,
    pub connector_id: &'a str,
    pub session_id: SessionId,
    pub sequence: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub event: Event,
    pub data: &'a str,
    pub context: &'a str,
}

impl Record<'_> {
    /// The line, with its CRLF ending (Exchange's logs are CRLF files).
    pub fn to_line(&self) -> String {
        let mut out = String::with_capacity(96 + self.data.len() + self.context.len());
        push_timestamp(&mut out, self.time);
        out.push(',');
        push_field(&mut out, self.connector_id);
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            ",{},{},{},{},{},",
            self.session_id,
            self.sequence,
            self.local,
            self.remote,
            self.event.symbol()
        );
        push_field(&mut out, self.data);
        out.push(',');
        push_field(&mut out, self.context);
        out.push_str("\r\n");
        out
    }
}

/// Appends `field`, quoted if it needs to be.
pub(crate) fn push_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        for c in field.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(field);
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn quoted(s: &str) -> String {
        let mut out = String::new();
        push_field(&mut out, s);
        out
    }

    #[test]
    fn fields_are_quoted_only_when_needed() {
        for (input, want) in [
            ("EHLO mail.example.com", "EHLO mail.example.com"),
            ("", ""),
            (
                "250 2.1.0 Sender OK, go ahead",
                "\"250 2.1.0 Sender OK, go ahead\"",
            ),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("two\r\nlines", "\"two\r\nlines\""),
            ("EDGE1\\Internet", "EDGE1\\Internet"),
        ] {
            assert_eq!(quoted(input), want, "{input:?}");
        }
    }

    #[test]
    fn a_connect_line_reads_like_exchange() {
        let r = Record {
            time: datetime!(2026-11-23 09:00:01.123 UTC),
            connector_id: "EDGE1\\Internet",
            session_id: SessionId::from(0x08CD_4A1B_2C3D_4E5F),
            sequence: 0,
            local: "10.0.0.1:25".parse().unwrap(),
            remote: "203.0.113.5:41234".parse().unwrap(),
            event: Event::Connect,
            data: "",
            context: "",
        };
        assert_eq!(
            r.to_line(),
            "2026-11-23T09:00:01.123Z,EDGE1\\Internet,08CD4A1B2C3D4E5F,0,10.0.0.1:25,203.0.113.5:41234,+,,\r\n"
        );
    }
}
