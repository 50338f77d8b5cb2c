//! Counting a run's messages at the sink: polls a Maildir's `new/` and
//! `cur/`, reads the head of each file not seen before, and records which of
//! the run's sequence numbers arrived and the newest delivery time (mtime).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// How much of a delivered file to read looking for the Message-ID: the
/// sink's trace headers plus ours fit easily.
const HEAD_BYTES: u64 = 16 * 1024;

/// Watches one Maildir for messages whose Message-ID starts with `marker`.
#[derive(Debug)]
pub struct Watcher {
    dirs: [PathBuf; 2],
    marker: Vec<u8>,
    /// Maildir unique names (before `:2,`) already looked at, so a file
    /// moved from `new/` to `cur/` is not read twice.
    seen: HashMap<String, Option<u64>>,
    delivered: HashSet<u64>,
    newest: Option<SystemTime>,
}

impl Watcher {
    pub fn new(maildir: &Path, marker: &str) -> Self {
        Self {
            dirs: [maildir.join("new"), maildir.join("cur")],
            marker: marker.as_bytes().to_vec(),
            seen: HashMap::new(),
            delivered: HashSet::new(),
            newest: None,
        }
    }

    /// Distinct messages of this run seen so far.
    pub fn delivered(&self) -> usize {
        self.delivered.len()
    }

    /// Latest modification time among this run's delivered files.
    pub fn newest_delivery(&self) -> Option<SystemTime> {
        self.newest
    }

    /// Looks at files not seen before. A missing directory counts as empty
    /// (the sink creates the Maildir on first delivery).
    pub fn scan(&mut self) -> io::Result<()> {
        for dir in self.dirs.clone() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let unique = name.split(':').next().unwrap_or(&name).to_string();
                if self.seen.contains_key(&unique) {
                    continue;
                }
                match self.inspect(&entry.path()) {
                    Ok((seq, mtime)) => {
                        if let Some(seq) = seq {
                            self.delivered.insert(seq);
                            self.newest = self.newest.max(Some(mtime));
                        }
                        self.seen.insert(unique, seq);
                    }
                    // Renamed new/ → cur/ between listing and opening: the
                    // next scan finds it under its new name.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    fn inspect(&self, path: &Path) -> io::Result<(Option<u64>, SystemTime)> {
        let file = fs::File::open(path)?;
        let mtime = file.metadata()?.modified()?;
        let mut head = Vec::with_capacity(HEAD_BYTES as usize);
        file.take(HEAD_BYTES).read_to_end(&mut head)?;
        Ok((sequence(&head, &self.marker), mtime))
    }
}

/// The run's sequence number in `head`, from `MARKER<digits>@`.
fn sequence(head: &[u8], marker: &[u8]) -> Option<u64> {
    let at = head.windows(marker.len()).position(|w| w == marker)?;
    let digits: Vec<u8> = head[at + marker.len()..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_from_message_id() {
        assert_eq!(
            sequence(b"X: y\nMessage-ID: <bench-r1-17@bench>\n", b"bench-r1-"),
            Some(17)
        );
        assert_eq!(sequence(b"Message-ID: <bench-r2-17@bench>\n", b"bench-r1-"), None);
        assert_eq!(sequence(b"Message-ID: <bench-r1-@bench>\n", b"bench-r1-"), None);
    }

    #[test]
    fn counts_distinct_messages_across_new_and_cur() {
        let dir = std::env::temp_dir().join(format!("postern-bench-maildir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("new")).unwrap();
        fs::create_dir_all(dir.join("cur")).unwrap();
        let mut w = Watcher::new(&dir, "bench-r1-");
        w.scan().unwrap();
        assert_eq!(w.delivered(), 0);

        fs::write(dir.join("new/1.a.host"), "Message-ID: <bench-r1-1@bench>\n\nx\n").unwrap();
        fs::write(dir.join("new/2.a.host"), "Message-ID: <bench-r1-2@bench>\n\nx\n").unwrap();
        fs::write(dir.join("new/3.a.host"), "Message-ID: <other@x>\n\nx\n").unwrap();
        // A redelivery of message 2 under another name counts once.
        fs::write(
            dir.join("cur/4.a.host:2,S"),
            "Message-ID: <bench-r1-2@bench>\n\nx\n",
        )
        .unwrap();
        w.scan().unwrap();
        assert_eq!(w.delivered(), 2);
        assert!(w.newest_delivery().is_some());

        // Moving a seen file to cur/ does not count it again.
        fs::rename(dir.join("new/1.a.host"), dir.join("cur/1.a.host:2,")).unwrap();
        w.scan().unwrap();
        assert_eq!(w.delivered(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }
}
