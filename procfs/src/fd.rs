//! `/proc/PID/fd`: the open descriptors and what their links name.

use crate::error::Result;
use crate::read::{numeric_dir, pid_path, read_link};
use crate::text;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What an fd link points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdTarget {
    /// A path; " (deleted)" is removed and reported in `deleted`.
    Path { path: PathBuf, deleted: bool },
    /// `pipe:[INO]`.
    Pipe(u64),
    /// `socket:[INO]`.
    Socket(u64),
    /// `anon_inode:NAME`, NAME as written: `[eventfd]`, `[eventpoll]`, `inotify`, `bpf-map`...
    AnonInode(String),
    /// Any other `TYPE:[INO]` link, e.g. a namespace file `net:[4026531833]`.
    Typed { kind: String, ino: u64 },
    /// Anything else, kept as written.
    Other(String),
}

/// Classify a readlink result of `/proc/PID/fd/N`.
pub fn parse_fd_target(link: &Path) -> FdTarget {
    let b = link.as_os_str().as_bytes();
    if b.starts_with(b"/") {
        return match b.strip_suffix(b" (deleted)") {
            Some(p) => FdTarget::Path {
                path: text::to_path(p),
                deleted: true,
            },
            None => FdTarget::Path {
                path: link.to_path_buf(),
                deleted: false,
            },
        };
    }
    if let Some(name) = b.strip_prefix(b"anon_inode:") {
        return FdTarget::AnonInode(text::lossy(name));
    }
    if let Some((kind, ino)) = parse_typed(b) {
        return match kind {
            b"pipe" => FdTarget::Pipe(ino),
            b"socket" => FdTarget::Socket(ino),
            _ => FdTarget::Typed {
                kind: text::lossy(kind),
                ino,
            },
        };
    }
    FdTarget::Other(text::lossy(b))
}

/// `kind:[123]` -> (kind, 123).
pub(crate) fn parse_typed(b: &[u8]) -> Option<(&[u8], u64)> {
    let colon = b.iter().position(|&c| c == b':')?;
    let ino = b[colon + 1..].strip_prefix(b"[")?.strip_suffix(b"]")?;
    Some((&b[..colon], text::dec(ino, 0, "").ok()?))
}

/// Open fd numbers, sorted.
pub fn read_fd_numbers(pid: i32) -> Result<Vec<i32>> {
    numeric_dir(&pid_path(pid, "fd"))
}

/// The raw link of one fd.
pub fn read_fd_link(pid: i32, fd: i32) -> Result<PathBuf> {
    read_link(&pid_path(pid, &format!("fd/{fd}")))
}

/// Every fd with its link target, sorted by fd. An fd closed between listing and reading
/// its link is an error (the task should be stopped while this runs).
pub fn read_fds(pid: i32) -> Result<Vec<(i32, FdTarget)>> {
    read_fd_numbers(pid)?
        .into_iter()
        .map(|fd| Ok((fd, parse_fd_target(&read_fd_link(pid, fd)?))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_captured_links() {
        let t = |s: &str| parse_fd_target(Path::new(s));
        assert_eq!(t("pipe:[17521]"), FdTarget::Pipe(17521));
        assert_eq!(t("socket:[17522]"), FdTarget::Socket(17522));
        assert_eq!(
            t("anon_inode:[eventpoll]"),
            FdTarget::AnonInode("[eventpoll]".into())
        );
        assert_eq!(
            t("anon_inode:inotify"),
            FdTarget::AnonInode("inotify".into())
        );
        assert_eq!(
            t("/memfd:mf x (deleted)"),
            FdTarget::Path {
                path: "/memfd:mf x".into(),
                deleted: true
            }
        );
        assert_eq!(
            t("/tmp/procfs-cap/gone (deleted)"),
            FdTarget::Path {
                path: "/tmp/procfs-cap/gone".into(),
                deleted: true
            }
        );
        assert_eq!(
            t("/dev/null"),
            FdTarget::Path {
                path: "/dev/null".into(),
                deleted: false
            }
        );
        assert_eq!(
            t("net:[4026531833]"),
            FdTarget::Typed {
                kind: "net".into(),
                ino: 4026531833
            }
        );
        assert_eq!(t("pipe:[x]"), FdTarget::Other("pipe:[x]".into()));
        assert_eq!(t("weird"), FdTarget::Other("weird".into()));
    }
}
