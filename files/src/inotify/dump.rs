//! inotify fds: one files.img entry per inotify description, with its watches (wd, mask,
//! watched inode). A watched inode is found again at restore by path: the exported file handle
//! the kernel shows is opened (open_by_handle_at) on each mount of its filesystem and the path
//! it has there kept if it leads back to the same inode. As CRIU does, when no mount opens the
//! handle, or with `--force-irmap` when it opens but shows no usable path, the filesystem is
//! searched for the inode ("irmap"). Events still queued are dropped, as in CRIU.

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use criu_procfs::fdinfo::{split_kernel_dev, FileHandle};
use criu_procfs::MountInfo;
use criu_proto::images::{
    FdTypes, FdinfoEntry, FhEntry, FileEntry, InotifyFileEntry, InotifyWdEntry,
};

use crate::root::FsRoot;
use crate::table::{fdinfo, FileStat, FileTable};

#[derive(Debug, thiserror::Error)]
pub enum InotifyError {
    #[error("pid {pid}: fd {fd}: {kind}: {what}")]
    Fd {
        pid: i32,
        fd: i32,
        kind: &'static str,
        what: String,
    },
    #[error(transparent)]
    Fown(#[from] crate::fown::dump::FownError),
}

/// fh_entry holds the handle as this many u64 words (fh_entry_sizes.min_entries).
const FH_WORDS: usize = 16;

/// Most directory entries an irmap search looks at on one filesystem.
const IRMAP_LIMIT: usize = 200_000;

/// What the inotify, fanotify and epoll dumps read first: stat, fdinfo, flags, cloexec.
pub(crate) struct NotifyFd {
    pub st: FileStat,
    pub info: criu_procfs::FdInfo,
    pub flags: u32,
    pub cloexec: bool,
}

pub(crate) fn read_notify_fd(pid: i32, fd: i32) -> Result<NotifyFd, String> {
    let link = format!("/proc/{pid}/fd/{fd}");
    let meta = std::fs::metadata(&link).map_err(|e| format!("stat: {e}"))?;
    let info = criu_procfs::read_fdinfo(pid, fd).map_err(|e| format!("cannot read fdinfo: {e}"))?;
    Ok(NotifyFd {
        st: FileStat::of(&meta),
        cloexec: info.flags & libc::O_CLOEXEC as u32 != 0,
        flags: info.flags & !(libc::O_CLOEXEC as u32),
        info,
    })
}

/// The fdinfo entry of `pid`'s inotify `fd`; its description's entry is added on first sight.
pub fn dump_inotify_fd(
    pid: i32,
    fd: i32,
    table: &std::sync::Mutex<FileTable>,
) -> Result<FdinfoEntry, InotifyError> {
    let err = |what: String| InotifyError::Fd {
        pid,
        fd,
        kind: "inotify",
        what,
    };
    let n = read_notify_fd(pid, fd).map_err(err)?;
    let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
    let force_irmap = t.opts.force_irmap;
    let root = t.root.clone();
    let id = t.described(pid, fd, n.st, |id| {
        let mounts = root.mounts().map_err(err)?;
        let mut wd = Vec::with_capacity(n.info.inotify_watches.len());
        for w in &n.info.inotify_watches {
            let found = (force_irmap, &mounts[..], &root);
            let f_handle = find_inode(w.sdev, w.ino, w.fhandle.as_ref(), found)
                .map_err(|e| err(format!("watch {}: {e}", w.wd)))?;
            wd.push(InotifyWdEntry {
                id,
                i_ino: w.ino,
                mask: w.mask,
                ignored_mask: w.ignored_mask,
                s_dev: w.sdev,
                wd: w.wd as u32,
                f_handle,
            });
        }
        Ok::<_, InotifyError>(FileEntry {
            r#type: FdTypes::Inotify as i32,
            id,
            ify: Some(InotifyFileEntry {
                id,
                flags: n.flags,
                fown: crate::fown::dump::read(pid, fd, n.flags)?,
                wd,
            }),
            ..Default::default()
        })
    })?;
    Ok(fdinfo(id, fd, u32::from(n.cloexec), FdTypes::Inotify))
}

/// The handle as fh_entry keeps it: its bytes in little-endian u64 words, zero-padded.
fn handle_words(bytes: &[u8]) -> Vec<u64> {
    let mut words = vec![0u64; FH_WORDS.max(bytes.len().div_ceil(8))];
    for (i, b) in bytes.iter().enumerate() {
        words[i / 8] |= u64::from(*b) << (8 * (i % 8));
    }
    words
}

/// Where `find_inode` looks: `--force-irmap`, the tree's mounts (`FsRoot::mounts`), and the
/// root their mount points are seen from.
pub(crate) type Search<'a> = (bool, &'a [MountInfo], &'a FsRoot);

/// How the inode `ino` on `sdev` is found at restore: its handle and, when one is found, a path
/// (the task's).
pub(crate) fn find_inode(
    sdev: u32,
    ino: u64,
    fh: Option<&FileHandle>,
    (force_irmap, mounts, root): Search,
) -> Result<FhEntry, String> {
    let (bytes, handle_type, handle) = match fh {
        Some(h) => (h.bytes, h.handle_type as u32, handle_words(&h.handle)),
        None => (0, 0, vec![0; FH_WORDS]),
    };
    let on_dev: Vec<&MountInfo> = mounts
        .iter()
        .filter(|m| (m.major, m.minor) == split_kernel_dev(sdev))
        .collect();
    let mut opened = false;
    let mut path = None;
    let mut deleted = None;
    if let Some(h) = fh {
        for m in &on_dev {
            match path_by_handle(root, m, h, sdev, ino) {
                ByHandle::Path(p) => {
                    opened = true;
                    path = Some(p);
                    break;
                }
                ByHandle::Deleted(p) => {
                    opened = true;
                    deleted = Some(p);
                }
                ByHandle::NoPath => opened = true,
                ByHandle::NotOpened => {}
            }
        }
    }
    // An unlinked file is kept by the task through an fd, so the dump remaps it (ghost or
    // link) under its old name, which the restore makes again before watches are added.
    if path.is_none() && deleted.is_some() {
        path = deleted;
    }
    if path.is_none() && (!opened || force_irmap) {
        if opened
            && on_dev
                .iter()
                .any(|m| m.fstype == "tmpfs" || m.fstype == "devtmpfs")
        {
            return Err(format!(
                "inode {ino} on tmpfs has no path (tmpfs inodes cannot be opened by handle later)"
            ));
        }
        path = irmap(root, sdev, ino, &on_dev);
    }
    if path.is_none() && !opened {
        return Err(format!(
            "inode {ino} (device {sdev:#x}): no path found for it (neither by its file handle nor by a search)"
        ));
    }
    Ok(FhEntry {
        bytes,
        r#type: handle_type,
        handle,
        path: path.map(|p| p.to_string_lossy().into_owned()),
        mnt_id: None,
    })
}

/// What opening a file handle on one mount gave.
enum ByHandle {
    /// It opened, at a path that leads back to the inode.
    Path(PathBuf),
    /// It opened, and the inode is unlinked; its last name.
    Deleted(PathBuf),
    /// It opened, with no usable path.
    NoPath,
    NotOpened,
}

fn path_by_handle(root: &FsRoot, m: &MountInfo, h: &FileHandle, sdev: u32, ino: u64) -> ByHandle {
    let Ok(mnt) = std::fs::File::open(root.resolve(&m.mount_point)) else {
        return ByHandle::NotOpened;
    };
    let len = (h.bytes as usize).min(h.handle.len());
    let Ok(fd) = criu_sys::notify::open_by_handle(
        mnt.as_fd(),
        h.handle_type,
        &h.handle[..len],
        libc::O_PATH,
    ) else {
        return ByHandle::NotOpened;
    };
    let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    let Ok(p) = std::fs::read_link(&link) else {
        return ByHandle::NoPath;
    };
    // The link shows the task's path: the mount is not reachable from criu's root.
    if is_inode(&root.resolve(&p), sdev, ino) {
        return ByHandle::Path(p);
    }
    let unlinked = std::fs::metadata(&link).is_ok_and(|m| m.nlink() == 0);
    match p.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(old) if unlinked => ByHandle::Deleted(PathBuf::from(old)),
        _ => ByHandle::NoPath,
    }
}

/// Whether `path` names inode `ino` on kernel device `sdev` (without following a last symlink).
fn is_inode(path: &Path, sdev: u32, ino: u64) -> bool {
    std::fs::symlink_metadata(path)
        .map(|m| m.ino() == ino && crate::epoll::dump::kernel_dev(&m) == sdev)
        .unwrap_or(false)
}

/// Searches the mounts of the inode's filesystem, breadth first, for a path to it (the task's).
fn irmap(root: &FsRoot, sdev: u32, ino: u64, on_dev: &[&MountInfo]) -> Option<PathBuf> {
    let mut seen = 0usize;
    for m in on_dev {
        let top = root.resolve(&m.mount_point);
        if is_inode(&top, sdev, ino) {
            return Some(m.mount_point.clone());
        }
        let mut dirs = VecDeque::from([top]);
        while let Some(dir) = dirs.pop_front() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                seen += 1;
                if seen > IRMAP_LIMIT {
                    return None;
                }
                let Ok(meta) = e.metadata() else { continue };
                if crate::epoll::dump::kernel_dev(&meta) != sdev {
                    continue;
                }
                if meta.ino() == ino {
                    return Some(root.unresolve(&e.path()));
                }
                if meta.is_dir() {
                    dirs.push_back(e.path());
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_words_are_little_endian_and_padded() {
        let w = handle_words(&[1, 2, 0, 0, 0, 0, 0, 0, 3]);
        assert_eq!(w.len(), FH_WORDS);
        assert_eq!((w[0], w[1], w[2]), (0x0201, 3, 0));
    }

    #[test]
    fn watches_are_dumped_with_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("watched");
        std::fs::write(&file, b"x").unwrap();
        let fd = criu_sys::notify::inotify_init(libc::IN_NONBLOCK).unwrap();
        let a =
            criu_sys::notify::inotify_add_watch(fd.as_fd(), dir.path(), libc::IN_CREATE).unwrap();
        let b = criu_sys::notify::inotify_add_watch(fd.as_fd(), &file, libc::IN_MODIFY).unwrap();
        let me = std::process::id() as i32;
        let table = std::sync::Mutex::new(FileTable::new(Default::default()));
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let e = dump_inotify_fd(me, raw, &table).unwrap();
        assert_eq!(e.r#type, FdTypes::Inotify as i32);
        let t = table.into_inner().unwrap();
        let ify = t.entries()[0].ify.as_ref().unwrap();
        assert_eq!(ify.flags & libc::O_NONBLOCK as u32, libc::O_NONBLOCK as u32);
        let mut got: Vec<(u32, u32, Option<String>)> = ify
            .wd
            .iter()
            .map(|w| (w.wd, w.mask, w.f_handle.path.clone()))
            .collect();
        got.sort();
        let path = |p: &Path| Some(p.to_string_lossy().into_owned());
        assert_eq!(
            got,
            [
                (a as u32, libc::IN_CREATE, path(dir.path())),
                (b as u32, libc::IN_MODIFY, path(&file)),
            ]
        );
    }
}
