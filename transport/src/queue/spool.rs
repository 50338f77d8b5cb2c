//! Spooled bodies: message data streamed to a file as it arrives, so a
//! receiving session holds at most its header section and one read in
//! memory, whatever the message size.
//!
//! A session whose body (everything after the header section) grows past
//! [`crate::server::SPOOL_ABOVE`] opens a [`SpoolWriter`] in the node's
//! spool directory (`DATA_DIR/spool`) and appends the body as it is
//! received (smaller bodies are stored whole in the queue); at the final
//! dot [`Queue::enqueue_spooled`] fsyncs the file, renames it to the queue
//! id and stores, with the envelope, a small reference
//! in place of the body: the message's first part (trace fields and the
//! checked header section) and the file's path. The client hears 250 only
//! after the file, its directory and the record are on disk, as before.
//! [`Queue::body`] reads the reference back into the whole message.
//!
//! Files whose message has left the queue are removed by
//! [`sweep`] (at start and periodically); a crash mid-session leaves a
//! `.tmp` file that the sweep removes once it is a day old.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use postern_model::QueueId;

use crate::queue::engine::BodyIo;
use crate::queue::envelope::Envelope;
use crate::queue::error::{QueueError, Result};
use crate::queue::{Queue, RelayOrigin, RelayedOutcome};

/// What a stored body value starts with when it is a reference.
const MAGIC: &[u8] = b"\0postern-spool-v1\0";

/// A body being written to the spool.
#[derive(Debug)]
pub struct SpoolWriter {
    path: PathBuf,
    file: std::fs::File,
    len: u64,
}

impl SpoolWriter {
    /// A new, private (0600) file in `dir`, created 0700 if missing.
    pub fn create(dir: &Path) -> Result<Self> {
        crate::private_files::create_private_dir_all(dir)
            .map_err(|e| QueueError::Spool(dir.to_path_buf(), e))?;
        let path = dir.join(format!("{:032x}.tmp", rand::random::<u128>()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| QueueError::Spool(path.clone(), e))?;
        Ok(Self { path, file, len: 0 })
    }

    /// Appends `data` (a blocking write of at most one read's worth).
    pub fn append(&mut self, data: &[u8]) -> Result<()> {
        self.file
            .write_all(data)
            .map_err(|e| QueueError::Spool(self.path.clone(), e))?;
        self.len += data.len() as u64;
        Ok(())
    }

    /// Where the body is being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Octets written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        // Abandoned (or already renamed, then this finds nothing).
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Queue {
    /// Queues a message whose first part (trace fields, header section)
    /// is `head` and whose rest was spooled by `body`; returns once
    /// everything is on disk, like [`Queue::enqueue`] (or, with an
    /// `origin`, [`Queue::enqueue_relayed`]: a file left by a message
    /// whose recipients were all repeats is removed by [`sweep`]).
    pub async fn enqueue_spooled(
        &self,
        envelope: Envelope,
        head: Vec<u8>,
        body: SpoolWriter,
        origin: Option<&RelayOrigin>,
    ) -> Result<RelayedOutcome> {
        let len = head.len() as u64 + body.len;
        self.accept(
            envelope,
            len,
            BodyIo::File,
            move |id| commit(body, id, &head),
            origin.cloned(),
        )
        .await
    }
}

/// Makes the spooled file durable under the queue id; returns the value
/// stored in place of the body.
fn commit(mut body: SpoolWriter, id: QueueId, head: &[u8]) -> Result<sled::IVec> {
    let dir = body.path.parent().map(Path::to_path_buf).unwrap_or_default();
    body.file
        .sync_all()
        .map_err(|e| QueueError::Spool(body.path.clone(), e))?;
    let final_path = dir.join(id.to_string());
    std::fs::rename(&body.path, &final_path).map_err(|e| QueueError::Spool(body.path.clone(), e))?;
    body.path = final_path.clone();
    crate::dir_sync::sync_dir(&dir).map_err(|e| QueueError::Spool(dir.clone(), e))?;
    let path = final_path.as_os_str().as_encoded_bytes();
    let head_len = u32::try_from(head.len()).map_err(|_| QueueError::Corrupt {
        key: id.to_string(),
        reason: "header section over 4 GiB".into(),
    })?;
    let mut value = Vec::with_capacity(MAGIC.len() + 4 + head.len() + path.len());
    value.extend_from_slice(MAGIC);
    value.extend_from_slice(&head_len.to_be_bytes());
    value.extend_from_slice(head);
    value.extend_from_slice(path);
    // Keep the file: forget the writer without its Drop.
    body.path = PathBuf::new();
    Ok(sled::IVec::from(value))
}

/// A reference's head and file path, or `None` for a body stored whole.
fn parse(value: &[u8]) -> Option<(&[u8], PathBuf)> {
    let rest = value.strip_prefix(MAGIC)?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    let head = rest.get(..len)?;
    let path = std::str::from_utf8(rest.get(len..)?).ok()?;
    Some((head, PathBuf::from(path)))
}

/// The whole message a stored body value stands for.
pub fn resolve(value: &[u8]) -> Result<Vec<u8>> {
    let Some((head, path)) = parse(value) else {
        return Ok(value.to_vec());
    };
    let rest = std::fs::read(&path).map_err(|e| QueueError::Spool(path.clone(), e))?;
    let mut message = Vec::with_capacity(head.len() + rest.len());
    message.extend_from_slice(head);
    message.extend_from_slice(&rest);
    Ok(message)
}

/// The part of a stored body value that holds the header section (the
/// head of a reference, or the whole body), without reading any file.
pub fn header_part(value: &[u8]) -> &[u8] {
    match parse(value) {
        Some((head, _)) => head,
        None => value,
    }
}

/// Removes spool files whose message has left `queue` (named by a queue
/// id older than ten minutes, so never one being committed) and `.tmp`
/// files older than a day; returns how many were removed.
pub fn sweep(queue: &Queue, dir: &Path) -> Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(QueueError::Spool(dir.to_path_buf(), e)),
    };
    let now = SystemTime::now();
    let old = |age: Duration, at: SystemTime| now.duration_since(at).is_ok_and(|d| d > age);
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let stale = if let Some(stem) = name.strip_suffix(".tmp") {
            let _ = stem;
            entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| old(Duration::from_secs(24 * 3600), at))
        } else if let Ok(id) = QueueId::parse(&name) {
            let made = SystemTime::UNIX_EPOCH + Duration::from_millis(id.unix_millis());
            old(Duration::from_secs(600), made) && queue.get(id)?.is_none()
        } else {
            false
        };
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_back() {
        assert!(parse(b"From: a\r\n\r\nhi").is_none());
        let mut value = MAGIC.to_vec();
        value.extend_from_slice(&3u32.to_be_bytes());
        value.extend_from_slice(b"abc/tmp/x");
        let (head, path) = parse(&value).unwrap();
        assert_eq!(head, b"abc");
        assert_eq!(path, PathBuf::from("/tmp/x"));
        assert_eq!(header_part(&value), b"abc");
        assert!(parse(&value[..MAGIC.len() + 2]).is_none());
    }
}
