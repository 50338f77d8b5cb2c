//! Shared `fsync`s of directories: after renaming a file into a
//! directory, a writer needs the directory synced before it may say the
//! file is durable. Writers that rename into the same directory at the
//! same time share one sync (group commit, as the queue does for its
//! store), so a busy mailbox costs one directory sync per group of
//! deliveries instead of one per delivery.
//!
//! The protocol, per directory: a writer renames first, then takes a
//! ticket. One writer at a time syncs, for every ticket taken before its
//! sync began; writers arriving meanwhile wait and are covered by the
//! next sync. A failed sync fails exactly the tickets it was for.
//! Blocking: called from the delivery's blocking task.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};

/// The node's registry of directory syncs.
static SHARED: LazyLock<DirSyncs> = LazyLock::new(DirSyncs::default);

/// Returns once `dir` has been synced after this call began (every rename
/// into it finished before the call is durable), sharing the sync with
/// the node's other writers into `dir`.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    SHARED.sync(dir)
}

/// The directories being synced, each with its writers' tickets.
#[derive(Debug, Default)]
pub(crate) struct DirSyncs {
    dirs: Mutex<HashMap<PathBuf, Arc<DirSync>>>,
}

/// One directory's tickets and syncs.
#[derive(Debug, Default)]
struct DirSync {
    state: Mutex<SyncState>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct SyncState {
    /// Tickets taken so far.
    taken: u64,
    /// Every ticket up to this one is covered by a completed sync.
    synced: u64,
    /// A writer is syncing now.
    running: bool,
    /// The last failed sync: the tickets up to `.0` failed with `.1`.
    failed: Option<(u64, io::ErrorKind, String)>,
    /// Syncs done (successful or not).
    syncs: u64,
}

impl DirSyncs {
    /// Returns once `dir` has been synced after this call began: every
    /// rename into it that finished before the call is durable.
    pub(crate) fn sync(&self, dir: &Path) -> io::Result<()> {
        let entry = {
            let mut dirs = lock(&self.dirs);
            Arc::clone(dirs.entry(dir.to_path_buf()).or_default())
        };
        entry.sync(dir)
    }

    /// Syncs made of `dir` so far (tests: fewer than writers when shared).
    #[cfg(test)]
    pub(crate) fn syncs_of(&self, dir: &Path) -> u64 {
        lock(&self.dirs)
            .get(dir)
            .map_or(0, |entry| lock(&entry.state).syncs)
    }
}

impl DirSync {
    fn sync(&self, dir: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.taken += 1;
        let ticket = state.taken;
        loop {
            if state.synced >= ticket {
                return Ok(());
            }
            if let Some((upto, kind, reason)) = &state.failed
                && *upto >= ticket
            {
                return Err(io::Error::new(*kind, reason.clone()));
            }
            if state.running {
                state = self.done.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // This writer syncs for every ticket taken so far.
            state.running = true;
            let target = state.taken;
            drop(state);
            let result = File::open(dir).and_then(|d| d.sync_all());
            state = lock(&self.state);
            state.running = false;
            state.syncs += 1;
            match result {
                Ok(()) => state.synced = target,
                Err(error) => state.failed = Some((target, error.kind(), error.to_string())),
            }
            self.done.notify_all();
        }
    }
}

/// Locks `mutex`, carrying on after a panic elsewhere (each update of the
/// guarded state is complete before the lock is released).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn concurrent_writers_share_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let syncs = Arc::new(DirSyncs::default());
        let writers: Vec<_> = (0..32)
            .map(|i| {
                let (syncs, path) = (Arc::clone(&syncs), dir.path().to_path_buf());
                std::thread::spawn(move || {
                    std::fs::write(path.join(format!("f{i}")), b"x").unwrap();
                    syncs.sync(&path)
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap().unwrap();
        }
        let made = syncs.syncs_of(dir.path());
        assert!((1..=32).contains(&made), "{made} syncs");
    }

    #[test]
    fn a_failed_sync_fails_its_writer_and_not_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let syncs = DirSyncs::default();
        let missing = dir.path().join("missing");
        let error = syncs.sync(&missing).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        std::fs::create_dir(&missing).unwrap();
        syncs.sync(&missing).unwrap();
        assert_eq!(syncs.syncs_of(&missing), 2);
    }
}
