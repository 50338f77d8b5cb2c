//! The files of one direction's log: naming (`RECVyyyymmdd-N.LOG`), the
//! header lines, rotation by UTC date and by size, numbering that continues
//! after the files already there, and the directory size cap.
//!
//! Plain synchronous I/O; the writer thread owns the one `LogFiles`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use time::{Date, OffsetDateTime};

use crate::protocol_log::clock::{file_date, push_timestamp, utc_date};
use crate::protocol_log::csv::FIELDS;
use crate::protocol_log::{Direction, ProtocolLogError};

/// Size limits of the log files.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub max_file_size: u64,
    pub max_dir_size: u64,
}

/// The file being written.
#[derive(Debug)]
struct Current {
    date: Date,
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    header_len: u64,
}

/// The log files of one direction in one directory.
#[derive(Debug)]
pub(crate) struct LogFiles {
    dir: PathBuf,
    direction: Direction,
    limits: Limits,
    current: Option<Current>,
}

/// A file of this log found in the directory.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Existing {
    date: String,
    number: u32,
    path: PathBuf,
}

impl LogFiles {
    /// Creates the directory if needed and a new file for `now`'s date.
    pub fn open(
        dir: &Path,
        direction: Direction,
        limits: Limits,
        now: OffsetDateTime,
    ) -> Result<Self, ProtocolLogError> {
        crate::private_files::create_private_dir_all(dir)
            .map_err(|e| ProtocolLogError::Directory(dir.to_path_buf(), e))?;
        let mut files = Self {
            dir: dir.to_path_buf(),
            direction,
            limits,
            current: None,
        };
        files.rotate(now)?;
        Ok(files)
    }

    /// Appends one line (already formatted) stamped `time`, starting a new
    /// file first if the UTC date moved on or the line would pass the size
    /// limit. A failed file is dropped, and the next line opens a new one.
    pub fn write(&mut self, time: OffsetDateTime, line: &str) -> Result<(), ProtocolLogError> {
        let len = line.len() as u64;
        let date = utc_date(time);
        let rotate = match &self.current {
            None => true,
            Some(c) => date > c.date || (c.size > c.header_len && c.size + len > self.limits.max_file_size),
        };
        if rotate {
            self.rotate(time)?;
        }
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        match current.out.write_all(line.as_bytes()) {
            Ok(()) => {
                current.size += len;
                Ok(())
            }
            Err(e) => {
                let path = current.path.clone();
                self.current = None;
                Err(ProtocolLogError::File(path, e))
            }
        }
    }

    /// Hands buffered lines to the operating system.
    pub fn flush(&mut self) -> Result<(), ProtocolLogError> {
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        if let Err(e) = current.out.flush() {
            let path = current.path.clone();
            self.current = None;
            return Err(ProtocolLogError::File(path, e));
        }
        Ok(())
    }

    /// Closes the current file, opens the next one with its header, then
    /// deletes the oldest files beyond the directory cap.
    fn rotate(&mut self, now: OffsetDateTime) -> Result<(), ProtocolLogError> {
        if let Some(mut old) = self.current.take() {
            old.out
                .flush()
                .map_err(|e| ProtocolLogError::File(old.path.clone(), e))?;
        }
        let date = utc_date(now);
        let stamp = file_date(date);
        let mut number = self
            .existing()?
            .iter()
            .filter(|f| f.date == stamp)
            .map(|f| f.number)
            .max()
            .unwrap_or(0);
        let (path, file) = loop {
            number += 1;
            let path = self
                .dir
                .join(format!("{}{stamp}-{number}.LOG", self.direction.file_prefix()));
            // create_new: never append to a file another run left behind.
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(ProtocolLogError::File(path, e)),
            }
        };
        let header = header(self.direction, now);
        let mut out = BufWriter::new(file);
        out.write_all(header.as_bytes())
            .map_err(|e| ProtocolLogError::File(path.clone(), e))?;
        let header_len = header.len() as u64;
        self.current = Some(Current {
            date,
            path,
            out,
            size: header_len,
            header_len,
        });
        // A file we cannot delete must not cost the line being written.
        if let Err(e) = self.enforce_dir_cap() {
            tracing::warn!("protocol log size cap: {e}");
        }
        Ok(())
    }

    /// Deletes the oldest closed files until they and a full current file
    /// fit in `max_dir_size`, so the directory never holds more than that.
    fn enforce_dir_cap(&mut self) -> Result<(), ProtocolLogError> {
        let current = self.current.as_ref().map(|c| c.path.clone());
        let mut closed = Vec::new();
        for f in self.existing()? {
            if Some(&f.path) == current.as_ref() {
                continue;
            }
            let size = fs::metadata(&f.path).map(|m| m.len()).unwrap_or(0);
            closed.push((f, size));
        }
        let budget = self.limits.max_dir_size.saturating_sub(self.limits.max_file_size);
        let mut total: u64 = closed.iter().map(|(_, size)| size).sum();
        // `existing` is sorted oldest first.
        for (f, size) in closed {
            if total <= budget {
                break;
            }
            match fs::remove_file(&f.path) {
                Ok(()) => total -= size,
                Err(e) if e.kind() == io::ErrorKind::NotFound => total -= size,
                Err(e) => return Err(ProtocolLogError::File(f.path, e)),
            }
        }
        Ok(())
    }

    /// This log's files in the directory, oldest first.
    fn existing(&self) -> Result<Vec<Existing>, ProtocolLogError> {
        let read_err = |e| ProtocolLogError::Directory(self.dir.clone(), e);
        let prefix = self.direction.file_prefix();
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            let name = entry.file_name();
            if let Some((date, number)) = name.to_str().and_then(|n| parse_name(n, prefix)) {
                found.push(Existing {
                    date: date.to_owned(),
                    number,
                    path: entry.path(),
                });
            }
        }
        found.sort();
        Ok(found)
    }
}

/// `RECV20261123-12.LOG` → (`20261123`, 12).
fn parse_name<'a>(name: &'a str, prefix: &str) -> Option<(&'a str, u32)> {
    let rest = name.strip_prefix(prefix)?.strip_suffix(".LOG")?;
    let (date, number) = rest.split_once('-')?;
    let valid_date = date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit());
    let valid_number = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
    if !(valid_date && valid_number) {
        return None;
    }
    Some((date, number.parse().ok()?))
}

/// Exchange's header lines.
pub(crate) fn header(direction: Direction, now: OffsetDateTime) -> String {
    let mut h = String::with_capacity(256);
    h.push_str("#Software: Postern\r\n");
    h.push_str(concat!("#Version: ", env!("CARGO_PKG_VERSION"), "\r\n"));
    h.push_str("#Log-type: ");
    h.push_str(direction.log_type());
    h.push_str("\r\n#Date: ");
    push_timestamp(&mut h, now);
    h.push_str("\r\n#Fields: ");
    h.push_str(FIELDS);
    h.push_str("\r\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_parsed_strictly() {
        assert_eq!(parse_name("RECV20261123-12.LOG", "RECV"), Some(("20261123", 12)));
        for bad in [
            "SEND20261123-1.LOG",
            "RECV20261123-1.log",
            "RECV2026112-1.LOG",
            "RECV20261123-.LOG",
            "RECV20261123-x.LOG",
        ] {
            assert_eq!(parse_name(bad, "RECV"), None, "{bad}");
        }
    }
}
