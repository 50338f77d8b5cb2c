//! Text a peer sent, made safe to log or show: [`PeerText`] escapes every
//! control character (so a `\n` cannot forge a log line and an escape
//! sequence cannot drive a terminal), shows invalid UTF-8 as `\xNN`, and
//! truncates, saying how much was left out. Every log line or status that
//! carries a peer's words (a hub or edge name from EdgeSync, a remote
//! server's reply, an address) goes through it.

use std::fmt;

/// Characters shown of a peer's text before it is cut.
pub const PEER_TEXT_LIMIT: usize = 256;

/// A peer's bytes or text, escaped and truncated when displayed.
#[derive(Clone, Copy)]
pub struct PeerText<'a> {
    bytes: &'a [u8],
    limit: usize,
}

impl<'a> PeerText<'a> {
    /// Text as a peer sent it.
    pub fn new(text: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        Self {
            bytes: text.as_ref(),
            limit: PEER_TEXT_LIMIT,
        }
    }

    /// Shows at most `limit` characters.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}

/// Shorthand for [`PeerText::new`].
pub fn peer_text(text: &(impl AsRef<[u8]> + ?Sized)) -> PeerText<'_> {
    PeerText::new(text)
}

impl fmt::Display for PeerText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = 0;
        let mut rest = self.bytes;
        while !rest.is_empty() {
            if shown >= self.limit {
                return write!(f, "…[{} more bytes]", rest.len());
            }
            let (valid, invalid) = match std::str::from_utf8(rest) {
                Ok(s) => (s, &[][..]),
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // SAFETY-free: `valid_up_to` bytes are UTF-8 by definition.
                    (std::str::from_utf8(good).unwrap_or_default(), bad)
                }
            };
            for (i, c) in valid.char_indices() {
                if shown >= self.limit {
                    let left = valid.len() - i + invalid.len();
                    return write!(f, "…[{left} more bytes]");
                }
                if c.is_control() || c == '\\' {
                    write!(f, "{}", c.escape_default())?;
                } else {
                    write!(f, "{c}")?;
                }
                shown += 1;
            }
            match invalid.split_first() {
                Some((b, tail)) => {
                    write!(f, "\\x{b:02x}")?;
                    shown += 1;
                    rest = tail;
                }
                None => rest = &[],
            }
        }
        Ok(())
    }
}

impl fmt::Debug for PeerText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_truncates() {
        assert_eq!(peer_text("hub1").to_string(), "hub1");
        assert_eq!(
            peer_text("hub1\nERROR forged line\r\x1b[2J").to_string(),
            "hub1\\nERROR forged line\\r\\u{1b}[2J"
        );
        assert_eq!(peer_text(b"a\xffb\\").to_string(), "a\\xffb\\\\");
        assert_eq!(peer_text("naïve").to_string(), "naïve");
        assert_eq!(
            peer_text(&"x".repeat(300)).limit(10).to_string(),
            "xxxxxxxxxx…[290 more bytes]"
        );
        assert_eq!(
            peer_text(b"ab\xff\xfecd").limit(3).to_string(),
            "ab\\xff…[3 more bytes]"
        );
        let long = "y".repeat(100_000);
        assert!(peer_text(&long).to_string().len() < PEER_TEXT_LIMIT + 32);
    }
}
