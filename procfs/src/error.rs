//! Errors for every /proc reader and parser in this crate.

use std::io;
use std::path::PathBuf;

/// What went wrong while parsing the text of one /proc file. Parsers return this; readers
/// attach the file's path and turn it into [`ProcError::Parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{msg}", line_prefix(*.line))]
pub struct ParseError {
    /// 1-based line number, or 0 when the problem is not tied to a line.
    pub line: usize,
    pub msg: String,
}

fn line_prefix(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!("line {line}: ")
    }
}

impl ParseError {
    pub fn new(line: usize, msg: impl Into<String>) -> Self {
        ParseError {
            line,
            msg: msg.into(),
        }
    }

    /// A problem with the file as a whole (a missing line, a bad length).
    pub fn whole(msg: impl Into<String>) -> Self {
        ParseError {
            line: 0,
            msg: msg.into(),
        }
    }

    /// Attach the path of the file the text came from.
    pub fn at(self, path: impl Into<PathBuf>) -> ProcError {
        ProcError::Parse {
            path: path.into(),
            err: self,
        }
    }
}

/// An error from reading or parsing a /proc file; it always names the file.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: {err}", path.display())]
    Parse { path: PathBuf, err: ParseError },
}

impl ProcError {
    pub fn read(path: impl Into<PathBuf>, source: io::Error) -> Self {
        ProcError::Read {
            path: path.into(),
            source,
        }
    }

    pub fn path(&self) -> &std::path::Path {
        match self {
            ProcError::Read { path, .. } | ProcError::Parse { path, .. } => path,
        }
    }

    /// True when the file (or the whole task) is gone: the task exited, or the kernel lacks
    /// the file. Dump code uses this to tell a vanished task from a real failure.
    pub fn is_not_found(&self) -> bool {
        match self {
            ProcError::Read { source, .. } => {
                matches!(
                    source.raw_os_error(),
                    Some(libc::ENOENT) | Some(libc::ESRCH)
                )
            }
            ProcError::Parse { .. } => false,
        }
    }
}

pub type Result<T, E = ProcError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_file_line_and_problem() {
        let e = ParseError::new(3, "bad address range \"zz\"").at("/proc/4242/maps");
        assert_eq!(
            e.to_string(),
            "/proc/4242/maps: line 3: bad address range \"zz\""
        );
        let e = ParseError::whole("no Uid line").at("/proc/1/status");
        assert_eq!(e.to_string(), "/proc/1/status: no Uid line");
        let e = ProcError::read(
            "/proc/4242/maps",
            io::Error::from_raw_os_error(libc::ENOENT),
        );
        assert!(e
            .to_string()
            .starts_with("cannot read /proc/4242/maps: No such file"));
        assert!(e.is_not_found());
        assert!(!ProcError::read("/x", io::Error::from_raw_os_error(libc::EACCES)).is_not_found());
    }
}
