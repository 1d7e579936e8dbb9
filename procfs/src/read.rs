//! Opening the real files: path building and whole-file reads that name the path on error.

use crate::error::{ParseError, ProcError, Result};
use std::path::{Path, PathBuf};

/// `/proc/PID/NAME`.
pub fn pid_path(pid: i32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{name}"))
}

/// `/proc/PID/task/TID/NAME`.
pub fn tid_path(pid: i32, tid: i32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/task/{tid}/{name}"))
}

/// Read a whole file; /proc files report size 0, so this reads until end of file.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| ProcError::read(path, e))
}

/// Read a file and run a parser over it, naming the path in any error.
pub fn read_parsed<T>(
    path: PathBuf,
    parse: impl FnOnce(&[u8]) -> Result<T, ParseError>,
) -> Result<T> {
    let bytes = read_bytes(&path)?;
    parse(&bytes).map_err(|e| e.at(path))
}

pub fn read_link(path: &Path) -> Result<PathBuf> {
    std::fs::read_link(path).map_err(|e| ProcError::read(path, e))
}

/// Names of the entries of a /proc directory (without "." and "..").
pub fn dir_names(path: &Path) -> Result<Vec<std::ffi::OsString>> {
    let rd = std::fs::read_dir(path).map_err(|e| ProcError::read(path, e))?;
    let mut names = Vec::new();
    for ent in rd {
        names.push(ent.map_err(|e| ProcError::read(path, e))?.file_name());
    }
    Ok(names)
}

/// Entries of a directory whose names are numbers (fd, task), sorted.
pub fn numeric_dir(path: &Path) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    for name in dir_names(path)? {
        let n = name
            .to_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ParseError::whole(format!("unexpected entry {:?}", name)).at(path))?;
        out.push(n);
    }
    out.sort_unstable();
    Ok(out)
}
