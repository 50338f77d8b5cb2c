//! Message data as a session receives it: the header section in memory
//! (it must pass the header firewall before anything is queued, and is
//! at most [`MAX_HEADER_SECTION`]); a body of up to [`SPOOL_ABOVE`] octets
//! in memory too, to be stored whole in the queue under its group flush;
//! a larger body streamed to the queue's spool as it arrives (its file
//! made at the first octet past the limit), so a session's memory stays
//! bounded whatever the message size. Without a spool directory (or if the
//! spool cannot be written) the whole message is kept in memory, as before.

use std::path::{Path, PathBuf};

use crate::queue::QueueError;
use crate::queue::spool::SpoolWriter;

/// The largest header section accepted: 1 MiB.
pub const MAX_HEADER_SECTION: usize = 1024 * 1024;

/// The largest body (after the header section) kept in memory and stored
/// whole in the queue: 4 KiB. A spooled body costs a file and an fsync of
/// its own (and a share of a directory sync); one stored whole rides the
/// queue's group flush with the rest of the message's record. Why not
/// more: a sled leaf holds up to 17 entries whatever their size, and sled
/// writes a page over a quarter of its 512 KiB segment as a separate
/// "blob" file that its flush does not fsync; 17 bodies of 4 KiB keep a
/// page of bodies well under that.
pub const SPOOL_ABOVE: usize = 4 * 1024;

/// Where the header section stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Head {
    /// Still arriving: everything received is in `head`.
    Reading,
    /// Complete: `head` holds it, up to and including the empty line.
    Complete,
    /// Over [`MAX_HEADER_SECTION`]: the message will be refused.
    TooLong,
}

/// The message being received.
#[derive(Debug)]
pub(crate) struct Incoming {
    /// What the data receiver appended since the last [`settle`](Self::settle).
    pending: Vec<u8>,
    /// The header section (without a spool directory: the whole message).
    head: Vec<u8>,
    /// The body after the header section while it is not spooled.
    rest: Vec<u8>,
    /// Where a body over [`SPOOL_ABOVE`] goes; `None`: kept in memory.
    spool_dir: Option<PathBuf>,
    spool: Option<SpoolWriter>,
    state: Head,
    /// How much of `head` is known to hold no end of the header section
    /// (so each read is searched once, however small the reads).
    searched: usize,
    failed: Option<QueueError>,
}

/// What was received, at the final dot.
pub(crate) struct Received {
    /// The header section (the whole message when nothing was spooled).
    pub head: Vec<u8>,
    /// The rest, spooled.
    pub spool: Option<SpoolWriter>,
    /// Octets received in all.
    pub len: u64,
    /// Why it cannot be queued as received.
    pub problem: Option<Problem>,
}

/// Why a received message cannot be queued.
pub(crate) enum Problem {
    /// The header section is over [`MAX_HEADER_SECTION`] (550 5.6.0).
    HeaderTooLong,
    /// The spool could not be written (451).
    Spool(QueueError),
}

impl Default for Incoming {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Incoming {
    /// Receives a body over [`SPOOL_ABOVE`] into `spool_dir` when given
    /// (falls back to memory, with a warning, if no file can be made there).
    pub(crate) fn new(spool_dir: Option<&Path>) -> Self {
        Self {
            pending: Vec::new(),
            head: Vec::new(),
            rest: Vec::new(),
            spool_dir: spool_dir.map(Path::to_path_buf),
            spool: None,
            state: Head::Reading,
            searched: 0,
            failed: None,
        }
    }

    /// Where the data receiver appends.
    pub(crate) fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

    /// After each read: moves what follows the header section to the body
    /// (in memory, or spooled once it is over [`SPOOL_ABOVE`]).
    pub(crate) fn settle(&mut self) {
        // No spool directory (and none given up on midway): the whole
        // message stays in `head`, as before spooling existed.
        if self.spool_dir.is_none() && self.spool.is_none() && self.rest.is_empty() {
            self.head.append(&mut self.pending);
            return;
        }
        let mut pending = std::mem::take(&mut self.pending);
        let result = match self.state {
            Head::Reading => {
                self.head.append(&mut pending);
                let found = header_end(&self.head, self.searched);
                self.searched = self.head.len();
                match found {
                    Some(end) => {
                        self.state = Head::Complete;
                        let rest = self.head.split_off(end);
                        self.keep(&rest)
                    }
                    None if self.head.len() > MAX_HEADER_SECTION => {
                        self.state = Head::TooLong;
                        self.head = Vec::new();
                        Ok(())
                    }
                    None => Ok(()),
                }
            }
            Head::Complete if self.failed.is_none() => self.keep(&pending),
            Head::Complete | Head::TooLong => Ok(()),
        };
        pending.clear();
        self.pending = pending;
        if let Err(error) = result
            && self.failed.is_none()
        {
            self.failed = Some(error);
        }
    }

    /// Adds `data` to the body: in memory up to [`SPOOL_ABOVE`], then in
    /// the spool (the file made now, with what was kept so far).
    fn keep(&mut self, data: &[u8]) -> Result<(), QueueError> {
        if let Some(spool) = self.spool.as_mut() {
            return spool.append(data);
        }
        let Some(dir) = self
            .spool_dir
            .as_deref()
            .filter(|_| self.rest.len() + data.len() > SPOOL_ABOVE)
        else {
            self.rest.extend_from_slice(data);
            return Ok(());
        };
        match SpoolWriter::create(dir) {
            Ok(mut spool) => {
                spool.append(&self.rest)?;
                spool.append(data)?;
                self.rest = Vec::new();
                self.spool = Some(spool);
                Ok(())
            }
            Err(error) => {
                tracing::warn!(%error, "cannot spool message data; keeping this message in memory");
                self.spool_dir = None;
                self.rest.extend_from_slice(data);
                Ok(())
            }
        }
    }

    /// The message at the final dot.
    pub(crate) fn finish(mut self) -> Received {
        self.settle();
        let spooled = self.spool.as_ref().map_or(0, SpoolWriter::len);
        let problem = match (self.state, self.failed) {
            (Head::TooLong, _) => Some(Problem::HeaderTooLong),
            (_, Some(error)) => Some(Problem::Spool(error)),
            _ => None,
        };
        let mut head = self.head;
        head.append(&mut self.rest);
        Received {
            len: head.len() as u64 + spooled,
            head,
            spool: self.spool,
            problem,
        }
    }
}

/// Where the header section ends: just after its empty line (right after
/// a leading one when the message starts with it), or `None` before it
/// has arrived. `data[..searched]` was searched before: only the last
/// two octets of it are looked at again (an end may straddle reads).
fn header_end(data: &[u8], searched: usize) -> Option<usize> {
    if data.starts_with(b"\r\n") {
        return Some(2);
    }
    if data.starts_with(b"\n") {
        return Some(1);
    }
    let from = searched.saturating_sub(2);
    let tail = data.get(from..)?;
    tail.windows(2).enumerate().find_map(|(i, w)| match w {
        [b'\n', b'\n'] => Some(from + i + 2),
        [b'\n', b'\r'] if tail.get(i + 2) == Some(&b'\n') => Some(from + i + 3),
        _ => None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn header_ends() {
        assert_eq!(header_end(b"A: b\r\n\r\nbody", 0), Some(8));
        assert_eq!(header_end(b"A: b\n\nbody", 0), Some(6));
        assert_eq!(header_end(b"\r\nbody", 0), Some(2));
        assert_eq!(header_end(b"A: b\r\nC: d\r\n", 0), None);
        // An end straddling two reads is found from where the search stopped.
        assert_eq!(header_end(b"A: b\r\n\r\nbody", 6), Some(8));
        assert_eq!(header_end(b"A: b\r\n\r\nbody", 7), Some(8));
    }

    #[test]
    fn a_small_body_stays_in_memory_and_makes_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut incoming = Incoming::new(Some(dir.path()));
        for piece in [&b"Subject: x\r"[..], b"\n\r", b"\nline one\r\n", b"line two\r\n"] {
            incoming.buffer().extend_from_slice(piece);
            incoming.settle();
        }
        let received = incoming.finish();
        assert_eq!(received.head, b"Subject: x\r\n\r\nline one\r\nline two\r\n");
        assert_eq!(received.len, 14 + 20);
        assert!(received.problem.is_none());
        assert!(received.spool.is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_large_body_goes_to_the_spool_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let mut incoming = Incoming::new(Some(dir.path()));
        let line = b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n";
        incoming.buffer().extend_from_slice(b"Subject: x\r");
        incoming.settle();
        incoming.buffer().extend_from_slice(b"\n\r\nfirst\r\n");
        incoming.settle();
        let mut body = b"first\r\n".to_vec();
        while body.len() <= SPOOL_ABOVE {
            incoming.buffer().extend_from_slice(line);
            incoming.settle();
            body.extend_from_slice(line);
        }
        let received = incoming.finish();
        assert_eq!(received.head, b"Subject: x\r\n\r\n");
        assert_eq!(received.len, 14 + body.len() as u64);
        assert!(received.problem.is_none());
        let spool = received.spool.unwrap();
        assert_eq!(spool.len(), body.len() as u64);
        assert_eq!(std::fs::read(spool.path()).unwrap(), body);
    }

    #[test]
    fn an_endless_header_section_is_a_problem_not_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut incoming = Incoming::new(Some(dir.path()));
        let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        for _ in 0..(2 * MAX_HEADER_SECTION / line.len()) {
            incoming.buffer().extend_from_slice(line);
            incoming.settle();
            assert!(incoming.head.len() <= MAX_HEADER_SECTION + line.len());
        }
        assert!(matches!(incoming.finish().problem, Some(Problem::HeaderTooLong)));
    }
}
