//! Command-line framing: [`LineReader`] takes bytes as they arrive and hands
//! out complete command lines. Only CRLF ends a line; a bare CR or LF makes
//! the whole span up to the next CRLF one bad line, so no command is ever
//! executed from ambiguous framing (a client that ends lines with LF alone
//! gets no answer and eventually times out). A line longer than 512 octets
//! (RFC 5321 section 4.5.3.1.4) is discarded as it arrives, so memory stays
//! bounded, and reported once its CRLF arrives: the server answers 500 and
//! carries on with the next line, keeping pipelined replies in order.

/// The longest command line, CRLF included (RFC 5321 section 4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;

/// Why a command line was refused; the reader has already resynchronised
/// at the next CRLF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line exceeded [`MAX_COMMAND_LINE`] octets.
    #[error("command line longer than 512 octets")]
    TooLong,
    /// The line contained a CR or LF that was not part of a CRLF.
    #[error("bare CR or LF in a command line")]
    BareLineEnding,
}

/// Buffers client bytes and splits them into command lines.
#[derive(Debug, Default)]
pub struct LineReader {
    buf: Vec<u8>,
    /// True while skipping the rest of an over-long line.
    discarding: bool,
}

impl LineReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line without its CRLF, an error for a bad line,
    /// or `None` when more bytes are needed.
    pub fn next_line(&mut self) -> Option<Result<Vec<u8>, LineError>> {
        let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") else {
            if self.buf.len() > MAX_COMMAND_LINE {
                // Keep the last byte: it may be the CR of the CRLF we wait for.
                let keep = self.buf.len() - 1;
                self.buf.drain(..keep);
                self.discarding = true;
            }
            return None;
        };
        let line: Vec<u8> = self.buf.drain(..end + 2).take(end).collect();
        if std::mem::take(&mut self.discarding) || line.len() + 2 > MAX_COMMAND_LINE {
            return Some(Err(LineError::TooLong));
        }
        if line.iter().any(|&b| b == b'\r' || b == b'\n') {
            return Some(Err(LineError::BareLineEnding));
        }
        Some(Ok(line))
    }

    /// The bytes received but not yet returned as lines: what the client
    /// pipelined after the last complete line.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the buffered bytes out, e.g. to hand them to the DATA receiver.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        self.discarding = false;
        std::mem::take(&mut self.buf)
    }

    /// Drops everything buffered. The server must call this after
    /// answering STARTTLS with 220: plain text pipelined behind STARTTLS
    /// must never be read as if it came over TLS (CVE-2011-0411).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.discarding = false;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lines(reader: &mut LineReader) -> Vec<Result<Vec<u8>, LineError>> {
        std::iter::from_fn(|| reader.next_line()).collect()
    }

    #[test]
    fn splits_on_crlf_across_chunks() {
        let mut r = LineReader::new();
        r.feed(b"EHLO a\r\nMAIL FROM:<a@b.c>\r");
        assert_eq!(lines(&mut r), [Ok(b"EHLO a".to_vec())]);
        r.feed(b"\nRC");
        assert_eq!(lines(&mut r), [Ok(b"MAIL FROM:<a@b.c>".to_vec())]);
        assert_eq!(r.buffered(), b"RC");
    }

    #[test]
    fn bare_cr_or_lf_spoils_the_line_until_crlf() {
        let mut r = LineReader::new();
        r.feed(b"NOOP\nRSET\r\nNOOP\rQUIT\r\nHELP\r\n");
        assert_eq!(
            lines(&mut r),
            [
                Err(LineError::BareLineEnding),
                Err(LineError::BareLineEnding),
                Ok(b"HELP".to_vec())
            ]
        );
    }

    #[test]
    fn exactly_512_octets_is_fine() {
        let mut r = LineReader::new();
        let mut line = vec![b'A'; MAX_COMMAND_LINE - 2];
        line.extend_from_slice(b"\r\n");
        r.feed(&line);
        assert_eq!(lines(&mut r), [Ok(vec![b'A'; MAX_COMMAND_LINE - 2])]);
        r.feed(&[b'A'; MAX_COMMAND_LINE - 1]);
        r.feed(b"\r\nNOOP\r\n");
        assert_eq!(lines(&mut r), [Err(LineError::TooLong), Ok(b"NOOP".to_vec())]);
    }

    #[test]
    fn overlong_line_is_discarded_as_it_arrives_and_resyncs() {
        let mut r = LineReader::new();
        for _ in 0..100 {
            r.feed(&[b'x'; 1000]);
            assert_eq!(r.next_line(), None);
            assert!(r.buffered().len() <= MAX_COMMAND_LINE + 1000);
        }
        r.feed(b"\r");
        assert_eq!(r.next_line(), None);
        r.feed(b"\nQUIT\r\n");
        assert_eq!(lines(&mut r), [Err(LineError::TooLong), Ok(b"QUIT".to_vec())]);
    }

    #[test]
    fn clear_drops_pipelined_plaintext() {
        let mut r = LineReader::new();
        r.feed(b"STARTTLS\r\nMAIL FROM:<evil@x.com>\r\n");
        assert_eq!(r.next_line(), Some(Ok(b"STARTTLS".to_vec())));
        r.clear();
        assert_eq!(r.next_line(), None);
    }
}
