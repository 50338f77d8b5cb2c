//! `ProtocolLog`: the writer one direction's sessions share.
//!
//! Sessions hand finished lines to a dedicated OS thread over a bounded
//! `std::sync::mpsc` channel; the thread writes them through a `BufWriter`
//! and flushes once per batch (whatever was queued when it woke up).
//!
//! Why a thread and not a `Mutex<BufWriter>` taken by each session: file
//! I/O blocks, and a slow or stalled disk under a mutex would stall every
//! SMTP session and, on a two-core machine, every worker thread of the
//! runtime. With the channel a session never waits on the disk: `try_send`
//! either queues the line or, when the queue is full, drops it and counts
//! it (`dropped_lines`). That is acceptable because the protocol log is a
//! diagnostic, not on the durability path. A plain thread rather than a
//! tokio task keeps the log usable from synchronous code and tests, with
//! no runtime to borrow a blocking thread from.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use time::OffsetDateTime;

use crate::protocol_log::files::{Limits, LogFiles};
use crate::protocol_log::{
    Clock, Direction, Endpoints, ProtocolLogError, ProtocolLoggingLevel, SessionId, SessionLogger,
    SystemClock,
};

/// Limits and time source of a protocol log.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// A new file starts before a line would take a file past this many
    /// bytes (default 10 MB, Exchange's `MaxFileSize`).
    pub max_file_size: u64,
    /// The oldest files are deleted so the directory never holds more than
    /// this many bytes (default 250 MB, Exchange's `MaxDirectorySize`).
    pub max_dir_size: u64,
    /// Lines that may wait for the writer thread before new ones are
    /// dropped (default 8192).
    pub queue_capacity: usize,
    /// Where time comes from; tests pass a clock they can move.
    pub clock: Arc<dyn Clock>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            max_file_size: 10 * 1024 * 1024,
            max_dir_size: 250 * 1024 * 1024,
            queue_capacity: 8192,
            clock: Arc::new(SystemClock),
        }
    }
}

/// Lines written between two flushes, at most.
const MAX_BATCH: usize = 1024;

/// What travels to the writer thread.
enum Message {
    Line { time: OffsetDateTime, line: String },
    Flush(SyncSender<()>),
}

/// The protocol log of one direction (receive or send) of a node, shared
/// by all its sessions.
pub struct ProtocolLog {
    direction: Direction,
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    tx: Option<SyncSender<Message>>,
    thread: Option<JoinHandle<()>>,
    /// Shared with the writer thread, which counts lines it failed to write.
    dropped: Arc<AtomicU64>,
}

impl fmt::Debug for ProtocolLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtocolLog")
            .field("direction", &self.direction)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ProtocolLog {
    /// Opens the log in `dir` (created if missing), starting a new file
    /// numbered after those already there, and starts its writer thread.
    pub fn open(dir: &Path, direction: Direction, config: LogConfig) -> Result<Arc<Self>, ProtocolLogError> {
        if config.max_file_size == 0
            || config.max_dir_size < config.max_file_size
            || config.queue_capacity == 0
        {
            return Err(ProtocolLogError::Config(format!(
                "max_file_size ({}) and queue_capacity ({}) must be positive and max_dir_size ({}) at least max_file_size",
                config.max_file_size, config.queue_capacity, config.max_dir_size
            )));
        }
        let limits = Limits {
            max_file_size: config.max_file_size,
            max_dir_size: config.max_dir_size,
        };
        let files = LogFiles::open(dir, direction, limits, config.clock.now())?;
        let (tx, rx) = mpsc::sync_channel(config.queue_capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let thread_dropped = Arc::clone(&dropped);
        let thread = std::thread::Builder::new()
            .name(format!("protolog-{}", direction.as_str()))
            .spawn(move || write_loop(files, rx, &thread_dropped))
            .map_err(ProtocolLogError::Thread)?;
        Ok(Arc::new(Self {
            direction,
            dir: dir.to_path_buf(),
            clock: config.clock,
            tx: Some(tx),
            thread: Some(thread),
            dropped,
        }))
    }

    /// Opens the log of `direction` in its place under a node's data
    /// directory: `DATA_DIR/logs/protocol/{receive,send}/`.
    pub fn open_in_data_dir(
        data_dir: &Path,
        direction: Direction,
        config: LogConfig,
    ) -> Result<Arc<Self>, ProtocolLogError> {
        Self::open(&direction.dir_in(data_dir), direction, config)
    }

    /// Which direction this log records.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log's clock.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// A logger for one session at `level`: `Verbose` writes to this log,
    /// `None` gives a logger that does nothing.
    pub fn session(
        self: &Arc<Self>,
        level: ProtocolLoggingLevel,
        connector_id: Arc<str>,
        session_id: SessionId,
        endpoints: Endpoints,
    ) -> SessionLogger {
        match level {
            ProtocolLoggingLevel::None => SessionLogger::disabled(),
            ProtocolLoggingLevel::Verbose => {
                SessionLogger::new(Arc::clone(self), connector_id, session_id, endpoints)
            }
        }
    }

    /// Lines dropped because the writer fell behind or a file failed.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every line queued so far is written and flushed. Blocks
    /// the calling thread: for shutdown and tests, not for sessions.
    pub fn flush(&self) -> Result<(), ProtocolLogError> {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let tx = self.tx.as_ref().ok_or(ProtocolLogError::WriterGone)?;
        tx.send(Message::Flush(ack_tx))
            .map_err(|_| ProtocolLogError::WriterGone)?;
        ack_rx.recv().map_err(|_| ProtocolLogError::WriterGone)
    }

    /// Queues one formatted line; never blocks.
    pub(crate) fn push(&self, time: OffsetDateTime, line: String) {
        let Some(tx) = self.tx.as_ref() else { return };
        match tx.try_send(Message::Line { time, line }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for ProtocolLog {
    /// Closing the channel lets the thread write what is queued and stop;
    /// joining it means the last lines are on disk when the log is gone.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread: one batch per wake-up, one flush per batch.
fn write_loop(mut files: LogFiles, rx: Receiver<Message>, dropped: &AtomicU64) {
    let mut failing = false;
    while let Ok(first) = rx.recv() {
        let mut acks = Vec::new();
        let mut result = Ok(());
        // Bounded, so a steady stream of lines still gets flushed.
        for msg in std::iter::once(first).chain(rx.try_iter().take(MAX_BATCH)) {
            match msg {
                Message::Line { time, line } => {
                    if let Err(e) = files.write(time, &line) {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        result = Err(e);
                    }
                }
                Message::Flush(ack) => acks.push(ack),
            }
        }
        if let Err(e) = files.flush() {
            result = Err(e);
        }
        // Warn when writing starts failing, not on every line while it does.
        match result {
            Err(e) if !failing => {
                tracing::warn!("protocol log: {e}");
                failing = true;
            }
            Err(_) => {}
            Ok(()) => failing = false,
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
    if let Err(e) = files.flush() {
        tracing::warn!("protocol log: {e}");
    }
}
