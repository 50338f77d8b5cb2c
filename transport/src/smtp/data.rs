//! The DATA receiver: fed the client's bytes in chunks of any size, it
//! writes the message body (dot-unstuffed, RFC 5321 section 4.5.2) and says
//! where the message ends. The end is `<CRLF>.<CRLF>` and nothing else: a
//! bare CR or LF anywhere is a [`DataViolation::BareLineEnding`] and never
//! starts or ends a line, so none of the SMTP smuggling variants (`\n.\n`,
//! `\r.\r`, `\n.\r\n`, …) can end a message early and smuggle a second one
//! in behind it. Violations do not stop reading: the receiver keeps going
//! to the real end, stops storing, and reports, so the server answers once,
//! after the final dot, and stays in step with the client.

use crate::smtp::reply::Reply;

/// The longest text line, CRLF included (RFC 5321 section 4.5.3.1.6).
pub const MAX_TEXT_LINE: usize = 1000;

/// Why a received message must be refused, least severe first; when
/// several occur the most severe is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DataViolation {
    /// The body grew past the size limit.
    TooBig,
    /// A line was longer than [`MAX_TEXT_LINE`] octets.
    LineTooLong,
    /// A CR or LF that was not part of a CRLF pair.
    BareLineEnding,
}

impl DataViolation {
    /// The reply the server sends after the final dot.
    pub fn reply(self, max_size: u64) -> Reply {
        match self {
            Self::TooBig => Reply::too_big(max_size),
            Self::LineTooLong => Reply::data_line_too_long(),
            Self::BareLineEnding => Reply::bare_line_ending_in_data(),
        }
    }
}

/// What the receiver reports at `<CRLF>.<CRLF>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataEnd {
    /// Octets of body received after unstuffing, stored or not.
    pub size: u64,
    /// Why the message must be refused, if it must.
    pub violation: Option<DataViolation>,
}

/// The result of feeding one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataStatus {
    /// The message goes on; feed more bytes.
    More,
    /// The final dot arrived after `consumed` bytes of this chunk; the rest
    /// of the chunk is pipelined commands for the line reader.
    End {
        /// How many bytes of the chunk belonged to the message.
        consumed: usize,
        /// The outcome.
        end: DataEnd,
    },
}

/// Where in a line the receiver is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    /// Just after a CRLF (or the DATA command's CRLF).
    LineStart,
    /// A `.` at the start of a line.
    Dot,
    /// `.` CR at the start of a line: LF now ends the message.
    DotCr,
    /// Inside a line.
    Text,
    /// After a CR; LF completes the line.
    Cr,
    /// The final dot has been seen.
    Done,
}

/// Receives one message after the server's 354.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataReceiver {
    scan: Scan,
    max_size: u64,
    size: u64,
    line_len: usize,
    violation: Option<DataViolation>,
}

impl DataReceiver {
    /// A receiver that stores at most `max_size` octets of body.
    pub fn new(max_size: u64) -> Self {
        Self {
            scan: Scan::LineStart,
            max_size,
            size: 0,
            line_len: 0,
            violation: None,
        }
    }

    /// The size limit this receiver enforces.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// The worst violation seen so far; once there is one, the body
    /// collected is incomplete and must be discarded.
    pub fn violation(&self) -> Option<DataViolation> {
        self.violation
    }

    /// Consumes `input`, appending body bytes to `body`. Once a violation
    /// is seen nothing more is appended; the body must then be discarded.
    pub fn feed(&mut self, input: &[u8], body: &mut Vec<u8>) -> DataStatus {
        let mut i = 0;
        while i < input.len() {
            if self.scan == Scan::Done {
                break;
            }
            if self.scan == Scan::Text {
                // Fast path: copy the run up to the next CR or LF at once.
                let run = input[i..]
                    .iter()
                    .position(|&b| b == b'\r' || b == b'\n')
                    .unwrap_or(input.len() - i);
                if run > 0 {
                    self.count_line(run);
                    self.emit(&input[i..i + run], body);
                    i += run;
                    continue;
                }
            }
            let b = input[i];
            i += 1;
            self.count_line(1);
            self.step(b, body);
            if self.scan == Scan::Done {
                return DataStatus::End {
                    consumed: i,
                    end: self.end(),
                };
            }
        }
        if self.scan == Scan::Done {
            return DataStatus::End {
                consumed: 0,
                end: self.end(),
            };
        }
        DataStatus::More
    }

    fn end(&self) -> DataEnd {
        DataEnd {
            size: self.size,
            violation: self.violation,
        }
    }

    fn step(&mut self, b: u8, body: &mut Vec<u8>) {
        self.scan = match (self.scan, b) {
            (Scan::LineStart, b'.') => Scan::Dot,
            (Scan::Dot, b'\r') => Scan::DotCr,
            (Scan::DotCr, b'\n') => Scan::Done,
            (Scan::LineStart | Scan::Text, b'\r') => Scan::Cr,
            (Scan::Cr, b'\n') => {
                self.emit(b"\r\n", body);
                self.line_len = 0;
                Scan::LineStart
            }
            (Scan::Cr | Scan::DotCr, _) => {
                // A bare CR: refuse, and read this byte as ordinary text
                // (it may itself be the CR of the next CRLF).
                self.flag(DataViolation::BareLineEnding);
                self.scan = Scan::Text;
                return self.step(b, body);
            }
            (_, b'\n') => {
                // A bare LF never starts a new line: no dot after it counts.
                self.flag(DataViolation::BareLineEnding);
                Scan::Text
            }
            // `Dot` followed by text: the leading dot is dropped (unstuffed).
            (_, _) => {
                self.emit(&[b], body);
                Scan::Text
            }
        };
    }

    fn count_line(&mut self, n: usize) {
        self.line_len += n;
        if self.line_len > MAX_TEXT_LINE {
            self.flag(DataViolation::LineTooLong);
        }
    }

    fn emit(&mut self, bytes: &[u8], body: &mut Vec<u8>) {
        self.size += bytes.len() as u64;
        if self.size > self.max_size {
            self.flag(DataViolation::TooBig);
        }
        if self.violation.is_none() {
            body.extend_from_slice(bytes);
        }
    }

    fn flag(&mut self, v: DataViolation) {
        self.violation = self.violation.max(Some(v));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Feeds `chunks`; returns the body, the outcome and the absolute
    /// offset just after the final dot. Panics if the end comes anywhere
    /// but in the last chunk.
    fn run<'a>(max: u64, chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<u8>, Option<(DataEnd, usize)>) {
        let mut rx = DataReceiver::new(max);
        let (mut body, mut offset, mut ended) = (Vec::new(), 0, None);
        for chunk in chunks {
            assert!(
                ended.is_none() || chunk.is_empty(),
                "bytes after the end were fed to the receiver"
            );
            if let DataStatus::End { consumed, end } = rx.feed(chunk, &mut body) {
                ended = Some((end, offset + consumed));
            }
            offset += chunk.len();
        }
        (body, ended)
    }

    fn whole(input: &[u8]) -> (Vec<u8>, Option<(DataEnd, usize)>) {
        run(1 << 20, [input])
    }

    #[test]
    fn ends_only_at_crlf_dot_crlf_and_unstuffs() {
        let (body, end) = whole(b"Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n");
        assert_eq!(body, b"Subject: x\r\n\r\n.leading dot\r\n");
        let (end, at) = end.unwrap();
        assert_eq!((end.size, end.violation, at), (body.len() as u64, None, 32));
        assert_eq!(whole(b".\r\n").0, b"");
        assert_eq!(whole(b".\r\n").1.unwrap().1, 3);
        assert_eq!(whole(b"a.\r\nb\r\n.x\r\n").1, None);
        assert_eq!(whole(b"a.\r\nb\r\n.x\r\n").0, b"a.\r\nb\r\nx\r\n");
    }

    #[test]
    fn line_limit_is_1000_octets_with_crlf() {
        let ok = [vec![b'a'; 998], b"\r\n.\r\n".to_vec()].concat();
        assert_eq!(whole(&ok).1.unwrap().0.violation, None);
        let long = [vec![b'a'; 999], b"\r\nmore\r\n.\r\n".to_vec()].concat();
        assert_eq!(
            whole(&long).1.unwrap().0.violation,
            Some(DataViolation::LineTooLong)
        );
    }

    #[test]
    fn size_cap_stops_storing_but_reads_to_the_end() {
        let msg = [
            vec![b'a'; 50],
            b"\r\n".to_vec(),
            vec![b'b'; 50],
            b"\r\n.\r\n".to_vec(),
        ]
        .concat();
        let (body, end) = run(60, [&msg[..]]);
        let (end, at) = end.unwrap();
        assert_eq!(
            (end.size, end.violation, at),
            (104, Some(DataViolation::TooBig), msg.len())
        );
        assert!(body.len() <= 60);
        assert_eq!(DataViolation::TooBig.reply(60).code(), 552);
    }

    /// The SMTP smuggling vectors (SEC Consult, December 2023, and the
    /// follow-ups): each sits where an attacker would put a fake end of
    /// data, followed by a smuggled transaction, then the real end.
    const SMUGGLING: &[&[u8]] = &[
        b"\n.\n",
        b"\n.\r\n",
        b"\r.\r",
        b"\r.\r\n",
        b"\r\n.\r",
        b"\r\n.\n",
        b"\n.\r",
        b"\r.\n",
        b"\r\n\x00.\r\n",
        b"\r\n.\x00\r\n",
        b"\n\n.\n\n",
        b"\r\r.\r\r",
        b"\r\n\n.\r\n",
    ];

    fn smuggling_message(vector: &[u8]) -> (Vec<u8>, usize) {
        let head = b"From: a@b.com\r\n\r\nhello".as_slice();
        let smuggled =
            b"MAIL FROM:<ceo@b.com>\r\nRCPT TO:<v@c.com>\r\nDATA\r\nFrom: ceo@b.com\r\n\r\nwire money\r\n";
        let msg = [head, vector, smuggled, b"\r\n.\r\n", b"QUIT\r\n"].concat();
        let real_end = msg.len() - b"QUIT\r\n".len();
        (msg, real_end)
    }

    fn assert_one_message(vector: &[u8], outcome: Option<(DataEnd, usize)>, real_end: usize) {
        let (end, at) = outcome.unwrap_or_else(|| panic!("{vector:?}: the real end was missed"));
        assert_eq!(at, real_end, "{vector:?} ended the message at the wrong place");
        let has_bare = vector.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n')
            || vector
                .iter()
                .enumerate()
                .any(|(i, &b)| b == b'\n' && (i == 0 || vector[i - 1] != b'\r'))
            || vector.last() == Some(&b'\r');
        let expected = if has_bare {
            Some(DataViolation::BareLineEnding)
        } else {
            None
        };
        assert_eq!(end.violation, expected, "{vector:?}");
    }

    #[test]
    fn smuggling_vectors_in_one_chunk_and_byte_by_byte() {
        for vector in SMUGGLING {
            let (msg, real_end) = smuggling_message(vector);
            assert_one_message(vector, whole(&msg).1, real_end);
            assert_one_message(vector, run(1 << 20, msg[..real_end].chunks(1)).1, real_end);
        }
    }

    #[test]
    fn smuggling_vectors_with_every_two_and_three_way_split() {
        for vector in SMUGGLING {
            let (msg, real_end) = smuggling_message(vector);
            let msg = &msg[..real_end];
            for a in 0..=msg.len() {
                assert_one_message(vector, run(1 << 20, [&msg[..a], &msg[a..]]).1, real_end);
                for b in a..=msg.len() {
                    let chunks = [&msg[..a], &msg[a..b], &msg[b..]];
                    assert_one_message(vector, run(1 << 20, chunks).1, real_end);
                }
            }
        }
    }

    #[test]
    fn smuggling_vectors_with_random_splits() {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for vector in SMUGGLING {
            let (msg, real_end) = smuggling_message(vector);
            for _ in 0..500 {
                let mut chunks = Vec::new();
                let mut rest = &msg[..];
                while !rest.is_empty() {
                    let n = (next() % 8 + 1).min(rest.len() as u64) as usize;
                    chunks.push(&rest[..n]);
                    rest = &rest[n..];
                }
                // The tail after the real end must not reach the receiver.
                let mut fed = 0;
                let upto: Vec<&[u8]> = chunks
                    .into_iter()
                    .take_while(|c| {
                        let keep = fed < real_end;
                        fed += c.len();
                        keep
                    })
                    .collect();
                assert_one_message(vector, run(1 << 20, upto).1, real_end);
            }
        }
    }

    #[test]
    fn bare_line_endings_are_refused_and_not_stored() {
        let (body, end) = whole(b"a\nb\r\n.\r\n");
        assert_eq!(end.unwrap().0.violation, Some(DataViolation::BareLineEnding));
        assert_eq!(body, b"a");
        assert_eq!(
            DataViolation::BareLineEnding.reply(0).to_string(),
            "550 5.6.11 Bare CR or LF in message data is not allowed\r\n"
        );
    }
}
