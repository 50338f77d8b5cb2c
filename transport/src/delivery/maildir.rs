//! Local delivery to Maildir, as Dovecot reads it:
//! `ROOT/<domain>/<local-part>/Maildir/{tmp,new,cur}`; each message is
//! written to `tmp`, fsynced, renamed into `new`, and `new` is fsynced
//! (one sync shared by the deliveries renaming into it at the same time,
//! [`crate::dir_sync`]).
//!
//! File names are derived from the queue id and the recipient, so a
//! delivery repeated after a crash (the queue had not yet recorded it)
//! finds its file in place and is not delivered twice. Looking costs a
//! listing of `cur/` (a reader renames `NAME` to `NAME:2,FLAGS`), which
//! grows with the mailbox; it is skipped on a message's first attempt
//! ([`Attempt::First`]), when no copy can exist.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use postern_model::QueueId;

use crate::queue::{Attempt, DeliveryOutcome};
use crate::smtp::Mailbox;

/// Writes messages into per-mailbox Maildirs under a root directory.
#[derive(Clone, Debug)]
pub struct Maildir {
    root: PathBuf,
    hostname: String,
}

impl Maildir {
    /// Delivers under `root` (the hub's `DATA_DIR/mailboxes`); `hostname`
    /// ends the file names, as the Maildir convention asks.
    pub fn new(root: impl Into<PathBuf>, hostname: &str) -> Self {
        let hostname = hostname.replace(['/', ':'], "_");
        Self {
            root: root.into(),
            hostname,
        }
    }

    /// The Maildir of `mailbox` (which need not exist yet).
    pub fn dir_of(&self, mailbox: &Mailbox) -> Option<PathBuf> {
        let local = safe_local_part(mailbox.local_part())?;
        Some(
            self.root
                .join(mailbox.domain().as_str())
                .join(local)
                .join("Maildir"),
        )
    }

    /// Delivers `body` of queued message `id` to `recipient`, prefixed
    /// with `Return-Path:` and `Delivered-To:`, unless `attempt` may be a
    /// repeat and the copy is already there. Blocking: call from
    /// `spawn_blocking`.
    pub fn deliver(
        &self,
        id: QueueId,
        sender: Option<&str>,
        recipient: &str,
        body: &[u8],
        attempt: Attempt,
    ) -> DeliveryOutcome {
        let mailbox = match Mailbox::parse(recipient) {
            Ok(m) => m,
            Err(e) => {
                return DeliveryOutcome::PermanentFailure(format!("550 5.1.3 bad recipient address: {e}"));
            }
        };
        let Some(dir) = self.dir_of(&mailbox) else {
            return DeliveryOutcome::PermanentFailure(format!(
                "550 5.1.3 local part of {recipient} cannot name a mailbox directory"
            ));
        };
        match self.write(&dir, id, sender, &mailbox, body, attempt) {
            Ok(name) => DeliveryOutcome::Delivered(format!("250 2.0.0 delivered to maildir as {name}")),
            Err(e) => DeliveryOutcome::TransientFailure(format!(
                "451 4.3.0 maildir delivery to {} failed: {e}",
                dir.display()
            )),
        }
    }

    fn write(
        &self,
        dir: &Path,
        id: QueueId,
        sender: Option<&str>,
        mailbox: &Mailbox,
        body: &[u8],
        attempt: Attempt,
    ) -> std::io::Result<String> {
        for sub in ["tmp", "new", "cur"] {
            crate::private_files::create_private_dir_all(&dir.join(sub))?;
        }
        let rcpt_tag = short_hash(&mailbox.to_string());
        let name = format!("{}.P{}R{}.{}", id_seconds(id), id, rcpt_tag, self.hostname);
        let final_path = dir.join("new").join(&name);
        if attempt == Attempt::MaybeRepeat && (final_path.exists() || already_read(dir, &name)?) {
            return Ok(name);
        }
        let tmp_path = dir.join("tmp").join(&name);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp_path)?;
        let header = format!(
            "Return-Path: <{}>\r\nDelivered-To: {}\r\n",
            sender.unwrap_or(""),
            mailbox
        );
        file.write_all(header.as_bytes())?;
        file.write_all(body)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp_path, &final_path)?;
        crate::dir_sync::sync_dir(&dir.join("new"))?;
        Ok(name)
    }
}

/// A mail reader may already have moved the message to `cur` (`name:2,…`).
fn already_read(dir: &Path, name: &str) -> std::io::Result<bool> {
    let cur = dir.join("cur");
    let prefix = format!("{name}:");
    for entry in fs::read_dir(cur)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A local part usable as one directory name: lower-cased, no path
/// separators, no leading dot, printable ASCII only.
fn safe_local_part(local: &str) -> Option<String> {
    let local = local.trim_matches('"').to_ascii_lowercase();
    let ok = !local.is_empty()
        && !local.starts_with('.')
        && local.len() <= 128
        && local
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '/' | '\\' | ':' | '"'));
    ok.then_some(local)
}

fn id_seconds(id: QueueId) -> u64 {
    id.unix_millis() / 1000
}

fn short_hash(s: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(s.to_ascii_lowercase().as_bytes());
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(dir: &Path) -> usize {
        fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
    }

    #[test]
    fn delivers_once_even_when_repeated() {
        let tmp = tempfile::tempdir().unwrap();
        let md = Maildir::new(tmp.path(), "hub1.adatum.com");
        let id = QueueId::from_parts(1_700_000_000_000, 42);
        let out = md.deliver(
            id,
            Some("a@b.com"),
            "Kim@Adatum.com",
            b"Subject: x\r\n\r\nhi\r\n",
            Attempt::First,
        );
        assert!(matches!(out, DeliveryOutcome::Delivered(_)), "{out:?}");
        let again = md.deliver(
            id,
            Some("a@b.com"),
            "kim@adatum.com",
            b"Subject: x\r\n\r\nhi\r\n",
            Attempt::MaybeRepeat,
        );
        assert!(matches!(again, DeliveryOutcome::Delivered(_)));
        let new = tmp.path().join("adatum.com/kim/Maildir/new");
        assert_eq!(count(&new), 1);
        let file = fs::read_dir(&new).unwrap().next().unwrap().unwrap().path();
        let text = fs::read_to_string(file).unwrap();
        assert!(text.starts_with("Return-Path: <a@b.com>\r\nDelivered-To: Kim@adatum.com\r\nSubject: x"));
        assert_eq!(count(&tmp.path().join("adatum.com/kim/Maildir/tmp")), 0);
    }

    #[test]
    fn a_repeat_finds_the_copy_a_reader_moved_to_cur() {
        let tmp = tempfile::tempdir().unwrap();
        let md = Maildir::new(tmp.path(), "hub1.adatum.com");
        let id = QueueId::from_parts(1_700_000_000_000, 43);
        let body = b"Subject: x\r\n\r\nhi\r\n";
        let out = md.deliver(id, None, "kim@adatum.com", body, Attempt::First);
        assert!(matches!(out, DeliveryOutcome::Delivered(_)), "{out:?}");
        let maildir = tmp.path().join("adatum.com/kim/Maildir");
        let name = fs::read_dir(maildir.join("new"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .file_name();
        let read = format!("{}:2,S", name.to_string_lossy());
        fs::rename(maildir.join("new").join(&name), maildir.join("cur").join(&read)).unwrap();
        let again = md.deliver(id, None, "kim@adatum.com", body, Attempt::MaybeRepeat);
        assert!(matches!(again, DeliveryOutcome::Delivered(_)), "{again:?}");
        assert_eq!(count(&maildir.join("new")), 0, "not delivered a second time");
        assert_eq!(count(&maildir.join("cur")), 1);
        // A first attempt does not look: it cannot be a repeat, and the
        // queue never hands out an id twice. (Called here for a used id
        // only to show that the look is skipped.)
        let first = md.deliver(id, None, "kim@adatum.com", body, Attempt::First);
        assert!(matches!(first, DeliveryOutcome::Delivered(_)), "{first:?}");
        assert_eq!(count(&maildir.join("new")), 1);
    }

    #[test]
    fn refuses_path_tricks() {
        assert_eq!(safe_local_part(".."), None);
        assert_eq!(safe_local_part("a/b"), None);
        assert_eq!(safe_local_part(".hidden"), None);
        assert_eq!(safe_local_part("Kim.Akers+tag").as_deref(), Some("kim.akers+tag"));
    }
}
