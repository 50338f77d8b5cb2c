//! Secrets at rest: everything a node (or the CLI on its behalf) writes
//! is readable by its owner only. The process runs with umask 077, so
//! files come out 0600 and directories 0700 whoever creates them (sled,
//! the protocol log, Maildir delivery); the helpers here say so
//! explicitly for the files that matter most (subscription files with
//! their bootstrap secret, certificate requests), and a data directory
//! that others can read is refused at startup with the reason.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode bits a private file or directory must not have (group, other).
pub const SHARED_BITS: u32 = 0o077;

/// Makes every file and directory this process creates from now on
/// private (umask 077). Idempotent; call first thing.
pub fn use_private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(SHARED_BITS));
}

/// Writes `bytes` to `path` as a 0600 file (an existing file is
/// truncated and made 0600 too).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Creates `dir` and its missing parents as 0700 directories.
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Why a data directory is refused.
#[derive(Debug, thiserror::Error)]
pub enum ExposedError {
    /// Group or others may read (or enter) the directory.
    #[error(
        "{dir} has mode {mode:04o}: others can read it, and it holds private keys and queued mail; \
         `chmod 700 {dir}` (and check who could have read it)"
    )]
    Readable {
        /// The directory.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Its metadata could not be read.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// Refuses a directory that group or others can access.
pub fn check_private_dir(dir: &Path) -> Result<(), ExposedError> {
    let meta = std::fs::metadata(dir).map_err(|e| ExposedError::Io(dir.to_path_buf(), e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & SHARED_BITS != 0 {
        return Err(ExposedError::Readable {
            dir: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Takes group and other bits off every file and directory below `dir`
/// (files written before umask 077, by an older version); returns how
/// many were changed. Symbolic links are not followed.
pub fn tighten_below(dir: &Path) -> std::io::Result<usize> {
    let mut changed = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                continue;
            }
            let path = entry.path();
            let mode = entry.metadata()?.permissions().mode();
            if mode & SHARED_BITS != 0 && (kind.is_file() || kind.is_dir()) {
                std::fs::set_permissions(&path, Permissions::from_mode(mode & 0o700))?;
                changed += 1;
            }
            if kind.is_dir() {
                pending.push(path);
            }
        }
    }
    Ok(changed)
}

/// Every file or directory below `dir` that group or others can access,
/// with its mode (sockets and links aside); for tests and `doctor` checks.
pub fn shared_entries(dir: &Path) -> std::io::Result<Vec<(PathBuf, u32)>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let mode = entry.metadata()?.permissions().mode() & 0o7777;
            if (kind.is_file() || kind.is_dir()) && mode & SHARED_BITS != 0 {
                found.push((entry.path(), mode));
            }
            if kind.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn private_writes_checks_and_tightening() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_private_dir_all(&dir).unwrap();
        check_private_dir(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, b"old").unwrap();
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        write_private(&file, b"new").unwrap();
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"new");

        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        let refused = check_private_dir(&dir).unwrap_err().to_string();
        assert!(
            refused.contains("mode 0755") && refused.contains("chmod 700"),
            "{refused}"
        );
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        assert_eq!(shared_entries(tmp.path()).unwrap().len(), 2);
        assert_eq!(tighten_below(tmp.path()).unwrap(), 2);
        assert!(shared_entries(tmp.path()).unwrap().is_empty());
    }
}
