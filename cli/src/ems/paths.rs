//! Windows paths in a runbook, read on this machine: the drive stands for
//! the working directory (`C:\Certificates\x.req` → `./Certificates/x.req`),
//! backslashes become slashes, and a note says so. No I/O.

use std::path::PathBuf;

/// Why a path cannot be mapped.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PathError {
    /// `\\server\share\…`.
    #[error("{0} is a network (UNC) path; copy the file here and give a local path")]
    Unc(String),
    /// Nothing given.
    #[error("the path is empty")]
    Empty,
}

/// A path as given, mapped to this machine, and the note to print when it
/// was a Windows path.
pub fn map(path: &str) -> Result<(PathBuf, Option<String>), PathError> {
    let trimmed = path.trim();
    if trimmed.is_empty() {
        return Err(PathError::Empty);
    }
    if trimmed.starts_with("\\\\") {
        return Err(PathError::Unc(trimmed.to_owned()));
    }
    let bytes = trimmed.as_bytes();
    let has_drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if !has_drive && !trimmed.contains('\\') {
        return Ok((PathBuf::from(trimmed), None));
    }
    let rest = if has_drive { &trimmed[2..] } else { trimmed };
    let rest = rest.replace('\\', "/");
    let rest = rest.trim_start_matches('/');
    let rest = rest.strip_prefix("./").unwrap_or(rest);
    let mapped = format!("./{rest}");
    let note = if has_drive {
        format!(
            "{trimmed} is read as {mapped} (the working directory stands for {}\\)",
            &trimmed[..2]
        )
    } else {
        format!("{trimmed} is read as {mapped}")
    };
    Ok((PathBuf::from(mapped), Some(note)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_paths_map_to_the_working_directory() {
        let (p, note) = map("C:\\Certificates\\VAN-EX2-request.req").unwrap();
        assert_eq!(p, PathBuf::from("./Certificates/VAN-EX2-request.req"));
        assert!(
            note.unwrap().contains(
                "C:\\Certificates\\VAN-EX2-request.req is read as ./Certificates/VAN-EX2-request.req"
            )
        );
        assert_eq!(map("c:\\example.req").unwrap().0, PathBuf::from("./example.req"));
        assert_eq!(map(".\\x\\y.pfx").unwrap().0, PathBuf::from("./x/y.pfx"));
        assert_eq!(map("D:x.pfx").unwrap().0, PathBuf::from("./x.pfx"));
    }

    #[test]
    fn local_paths_pass_unchanged_and_unc_is_refused() {
        assert_eq!(map("/tmp/a.req").unwrap(), (PathBuf::from("/tmp/a.req"), None));
        assert_eq!(map("a.req").unwrap(), (PathBuf::from("a.req"), None));
        assert!(matches!(map("\\\\srv\\share\\a"), Err(PathError::Unc(_))));
        assert_eq!(map("  "), Err(PathError::Empty));
    }
}
