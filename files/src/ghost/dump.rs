//! Files whose name no longer leads to them (unlinked while open, mapped, or a removed cwd).
//! As CRIU does, such a file is "remapped": a file with no link left becomes a ghost file whose
//! contents go into `ghost-file-N.img` (holes kept), one with links left elsewhere is linked
//! back under a new name with `--link-remap`; `remap-fpath.img` ties each file id to its remap.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use criu_proto::images::{GhostChunkEntry, GhostFileEntry, RemapFilePathEntry, RemapType, Timeval};
use criu_proto::{ImageKind, ImageWriter};

use crate::root::FsRoot;
use crate::table::FileTable;

/// CRIU stores files of this size and more as chunks of data, skipping holes.
const CHUNKS_FROM: u64 = 3 * 4096;

/// st_blocks counts 512-byte units.
const BLOCK_UNIT: u64 = 512;

#[derive(Debug, thiserror::Error)]
pub enum GhostError {
    #[error(
        "pid {pid}: {what}: unlinked file {path} uses {size} bytes, over the ghost limit of \
         {limit} bytes (raise it with --ghost-limit)"
    )]
    TooBig {
        pid: i32,
        what: String,
        path: String,
        size: u64,
        limit: u64,
    },
    #[error(
        "pid {pid}: {what}: {path} was unlinked but the file has other links; \
         dump with --link-remap to link it back under a new name"
    )]
    NeedLinkRemap {
        pid: i32,
        what: String,
        path: String,
    },
    #[error("pid {pid}: {what}: {path} now names another file (the open one is {dev}:{ino})")]
    Replaced {
        pid: i32,
        what: String,
        path: String,
        dev: u64,
        ino: u64,
    },
    #[error("pid {pid}: {what}: unlinked {kind} {path} cannot be carried in the dump")]
    Kind {
        pid: i32,
        what: String,
        path: String,
        kind: &'static str,
    },
    #[error("pid {pid}: {what}: {path}: {op}: {source}")]
    Io {
        pid: i32,
        what: String,
        path: String,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("ghost file {id}: cannot copy its contents: {source}")]
    Copy { id: u32, source: std::io::Error },
    #[error(transparent)]
    Image(#[from] criu_proto::Error),
}

/// Where a file was found in a task: the /proc link that opens it, and words for messages.
#[derive(Debug, Clone)]
pub struct Origin {
    pub pid: i32,
    /// "fd 5", "exe", "cwd", "mapping at 0x7f...".
    pub what: String,
    /// `/proc/PID/fd/N`, `/proc/PID/cwd`, `/proc/PID/map_files/A-B`...
    pub link: PathBuf,
    /// /proc showed the name with " (deleted)".
    pub deleted: bool,
}

struct Ghost {
    id: u32,
    entry: GhostFileEntry,
    /// Regular files: an fd to copy the contents from when the images are written.
    contents: Option<File>,
    size: u64,
}

impl std::fmt::Debug for Ghost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ghost({}, mode {:o})", self.id, self.entry.mode)
    }
}

/// Every remap of the dump.
#[derive(Debug, Default)]
pub struct Remaps {
    entries: Vec<RemapFilePathEntry>,
    ghosts: Vec<Ghost>,
    by_inode: HashMap<(u64, u64), u32>,
    /// Links made by `--link-remap` (as criu reaches them): removed again unless the images are
    /// written.
    links: Vec<PathBuf>,
    written: bool,
}

impl Drop for Remaps {
    fn drop(&mut self) {
        if !self.written {
            for l in &self.links {
                let _ = std::fs::remove_file(l);
            }
        }
    }
}

fn io_err(o: &Origin, path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> GhostError {
    let (pid, what, path) = (o.pid, o.what.clone(), path.display().to_string());
    move |source| GhostError::Io {
        pid,
        what,
        path,
        op,
        source,
    }
}

/// The pid of a `/proc/PID[/...]` path (the task's /proc) whose process no longer exists.
fn dead_proc_pid(root: &FsRoot, path: &Path) -> Option<i32> {
    let first = path.strip_prefix("/proc").ok()?.components().next()?;
    let pid: i32 = first.as_os_str().to_str()?.parse().ok()?;
    (!root.resolve(format!("/proc/{pid}")).exists()).then_some(pid)
}

/// Checks that file `id`, opened at `path`, can be found again at restore, and remaps it
/// when its name no longer leads to it. `meta` is the stat of the open file.
pub fn check(
    table: &mut FileTable,
    id: u32,
    path: &Path,
    origin: &Origin,
    meta: &Metadata,
) -> Result<(), GhostError> {
    // /proc/PID of a process that is gone: restore makes a short-lived process with that pid
    // to open it (CRIU's procfs remap).
    if let Some(dead) = dead_proc_pid(&table.root, path) {
        table.remaps.entries.push(RemapFilePathEntry {
            orig_id: id,
            remap_id: dead as u32,
            remap_type: Some(RemapType::Procfs as i32),
        });
        return Ok(());
    }
    // Other kernel-made names (/proc, terminals) are not files a remap could bring back.
    if !path.is_absolute() || path.starts_with("/proc") || path.starts_with("/dev/pts") {
        return Ok(());
    }
    if meta.nlink() == 0 {
        let limit = table.opts.ghost_limit;
        return table.remaps.ghost(limit, id, path, origin, meta);
    }
    if origin.deleted {
        return link_remap(table, id, path, origin);
    }
    let seen = table.root.resolve(path);
    let now = if meta.file_type().is_symlink() {
        std::fs::symlink_metadata(&seen)
    } else {
        std::fs::metadata(&seen)
    };
    match now {
        Ok(now) if (now.dev(), now.ino()) == (meta.dev(), meta.ino()) => Ok(()),
        Ok(now)
            if table.opts.evasive_devices
                && (meta.file_type().is_char_device() || meta.file_type().is_block_device())
                && now.rdev() == meta.rdev() =>
        {
            Ok(())
        }
        Ok(_) => Err(GhostError::Replaced {
            pid: origin.pid,
            what: origin.what.clone(),
            path: path.display().to_string(),
            dev: meta.dev(),
            ino: meta.ino(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => link_remap(table, id, path, origin),
        Err(e) => Err(io_err(origin, path, "stat")(e)),
    }
}

impl Remaps {
    /// File `id`, with no link left: its contents travel in the images, unless its blocks
    /// use more than `limit` bytes.
    fn ghost(
        &mut self,
        limit: u64,
        id: u32,
        path: &Path,
        origin: &Origin,
        meta: &Metadata,
    ) -> Result<(), GhostError> {
        let used = meta.blocks() * BLOCK_UNIT;
        if used > limit {
            return Err(GhostError::TooBig {
                pid: origin.pid,
                what: origin.what.clone(),
                path: path.display().to_string(),
                size: used,
                limit,
            });
        }
        let key = (meta.dev(), meta.ino());
        let ghost_id = match self.by_inode.get(&key) {
            Some(&g) => g,
            None => {
                let ft = meta.file_type();
                let contents = if ft.is_file() {
                    // Opened again through /proc: the task's fd may be write-only or O_PATH.
                    Some(File::open(&origin.link).map_err(io_err(origin, &origin.link, "open"))?)
                } else if ft.is_dir()
                    || ft.is_fifo()
                    || ft.is_char_device()
                    || ft.is_block_device()
                    || ft.is_symlink()
                {
                    None
                } else {
                    return Err(GhostError::Kind {
                        pid: origin.pid,
                        what: origin.what.clone(),
                        path: path.display().to_string(),
                        kind: "socket",
                    });
                };
                let mut entry = ghost_entry(meta);
                if ft.is_symlink() {
                    entry.symlnk_target = Some(symlink_target(origin, path)?);
                }
                let g = self.ghosts.len() as u32 + 1;
                self.ghosts.push(Ghost {
                    id: g,
                    entry,
                    contents,
                    size: meta.size(),
                });
                self.by_inode.insert(key, g);
                g
            }
        };
        self.entries.push(RemapFilePathEntry {
            orig_id: id,
            remap_id: ghost_id,
            remap_type: Some(RemapType::Ghost as i32),
        });
        Ok(())
    }
}

/// What an unlinked symlink the task holds (O_PATH|O_NOFOLLOW) points at: read through a copy
/// of the task's fd, since its name is gone.
fn symlink_target(origin: &Origin, path: &Path) -> Result<String, GhostError> {
    let kind = || GhostError::Kind {
        pid: origin.pid,
        what: origin.what.clone(),
        path: path.display().to_string(),
        kind: "symlink (not held by an fd)",
    };
    let fd = origin
        .link
        .strip_prefix(format!("/proc/{}/fd", origin.pid))
        .ok()
        .and_then(|n| n.to_str()?.parse::<i32>().ok())
        .ok_or_else(kind)?;
    let copy = criu_sys::pidfd::take_fd(origin.pid, fd)
        .map_err(|e| io_err(origin, &origin.link, "take its fd")(e.into()))?;
    let target = nix::fcntl::readlinkat(&copy, "")
        .map_err(|e| io_err(origin, &origin.link, "readlink")(e.into()))?;
    Ok(target.to_string_lossy().into_owned())
}

fn ghost_entry(meta: &Metadata) -> GhostFileEntry {
    let time = |sec: i64, nsec: i64| Timeval {
        tv_sec: sec as u64,
        tv_usec: (nsec / 1000) as u64,
    };
    let ft = meta.file_type();
    let chunks = ft.is_file() && meta.size() >= CHUNKS_FROM;
    GhostFileEntry {
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode(),
        dev: Some(meta.dev() as u32),
        ino: Some(meta.ino()),
        rdev: (ft.is_char_device() || ft.is_block_device()).then_some(meta.rdev() as u32),
        atim: Some(time(meta.atime(), meta.atime_nsec())),
        mtim: Some(time(meta.mtime(), meta.mtime_nsec())),
        chunks: chunks.then_some(true),
        size: chunks.then_some(meta.size()),
        symlnk_target: None,
    }
}

/// Runs `work` in a thread of criu whose fs uid and gid are those of `pid` (as criu sees them).
fn as_task_fs_ids<T: Send>(
    pid: i32,
    work: impl FnOnce() -> nix::Result<T> + Send,
) -> nix::Result<T> {
    let st = criu_procfs::read_status(pid).map_err(|_| nix::errno::Errno::ESRCH)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // Per thread: setfsuid and setfsgid are not shared by criu's other threads.
            nix::unistd::setfsgid(nix::unistd::Gid::from_raw(st.gid[3]));
            nix::unistd::setfsuid(nix::unistd::Uid::from_raw(st.uid[3]));
            work()
        })
        .join()
        .unwrap_or(Err(nix::errno::Errno::EINTR))
    })
}

/// A file unlinked from `path` but linked elsewhere: linked back next to where it was, under a
/// name of its own, which the restore opens it by and then removes.
fn link_remap(
    table: &mut FileTable,
    id: u32,
    path: &Path,
    origin: &Origin,
) -> Result<(), GhostError> {
    if !table.opts.link_remap {
        return Err(GhostError::NeedLinkRemap {
            pid: origin.pid,
            what: origin.what.clone(),
            path: path.display().to_string(),
        });
    }
    // The nearest directory that still exists, as CRIU climbs when the parent is gone.
    let root = table.root.clone();
    let mut dir = path.parent().unwrap_or(Path::new("/"));
    while !root.resolve(dir).is_dir() {
        dir = dir.parent().unwrap_or(Path::new("/"));
    }
    let dir = dir.to_path_buf();
    let mut made = PathBuf::new();
    let link_id = table.add(|lid| {
        made = dir.join(format!("link_remap.{lid}"));
        crate::collect::reg_entry(lid, &made, 0, 0, None, None)
    });
    // The entry keeps the task's name; criu makes (and may remove) it through the root.
    let made = root.resolve(&made);
    let link = || {
        nix::unistd::linkat(
            nix::fcntl::AT_FDCWD,
            &origin.link,
            nix::fcntl::AT_FDCWD,
            &made,
            nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
        )
    };
    let linked = match link() {
        // A filesystem of a user namespace takes new names only from ids it maps: criu's own
        // are not, the task's are. The link is made again by a thread with the task's fs ids.
        Err(nix::errno::Errno::EOVERFLOW) => as_task_fs_ids(origin.pid, link),
        // An earlier dump of the running tree (--leave-running) linked the same file there.
        Err(nix::errno::Errno::EEXIST) if same_file(&made, &origin.link) => Ok(()),
        other => other,
    };
    linked.map_err(|e| io_err(origin, &made, "link back")(e.into()))?;
    table.remaps.links.push(made);
    table.remaps.entries.push(RemapFilePathEntry {
        orig_id: id,
        remap_id: link_id,
        remap_type: Some(RemapType::Linked as i32),
    });
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

impl Remaps {
    /// Writes remap-fpath.img and one ghost-file image per ghost; the link remaps stay.
    pub fn write(&mut self, dir: &Path) -> Result<(), GhostError> {
        let mut w = ImageWriter::create(dir, &ImageKind::REMAP_FPATH, None)?;
        for e in &self.entries {
            w.write(e)?;
        }
        w.finish()?;
        for g in &self.ghosts {
            write_ghost(dir, g)?;
        }
        self.written = true;
        Ok(())
    }
}

fn write_ghost(dir: &Path, g: &Ghost) -> Result<(), GhostError> {
    let mut w = ImageWriter::create(dir, &ImageKind::GHOST_FILE, Some(u64::from(g.id)))?;
    w.write(&g.entry)?;
    if let Some(file) = &g.contents {
        let copy = |source| GhostError::Copy { id: g.id, source };
        if g.entry.chunks == Some(true) {
            for (off, len) in data_runs(file, g.size).map_err(copy)? {
                w.write(&GhostChunkEntry { len, off })?;
                copy_range(file, off, len, &mut w).map_err(copy)?;
            }
        } else {
            copy_range(file, 0, g.size, &mut w).map_err(copy)?;
        }
    }
    w.finish()?;
    Ok(())
}

/// The (offset, length) runs of data in the first `size` bytes of `file`, found with
/// SEEK_DATA/SEEK_HOLE; the whole file where the filesystem cannot tell.
pub fn data_runs(file: &File, size: u64) -> std::io::Result<Vec<(u64, u64)>> {
    use nix::unistd::{lseek, Whence};
    let mut runs = Vec::new();
    let mut at = 0u64;
    while at < size {
        let data = match lseek(file, at as i64, Whence::SeekData) {
            Ok(d) => d as u64,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(_) if at == 0 => {
                runs.push((0, size));
                break;
            }
            Err(e) => return Err(e.into()),
        };
        if data >= size {
            break;
        }
        let hole = (lseek(file, data as i64, Whence::SeekHole)? as u64).min(size);
        runs.push((data, hole - data));
        at = hole;
    }
    Ok(runs)
}

/// Copies `len` bytes at `off` of `file` into the image as raw payload.
fn copy_range<W: std::io::Write>(
    file: &File,
    off: u64,
    len: u64,
    w: &mut ImageWriter<W>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        let n = file.read_at(&mut buf[..want], off + done)?;
        if n == 0 {
            // The file shrank since its stat: keep the promised length, as zeros.
            buf[..want].fill(0);
            w.write_payload(&buf[..want])
                .map_err(std::io::Error::other)?;
            done += want as u64;
            continue;
        }
        w.write_payload(&buf[..n]).map_err(std::io::Error::other)?;
        done += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};

    #[test]
    fn data_runs_skip_holes() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = File::create(dir.path().join("sparse")).unwrap();
        f.write_all(b"head").unwrap();
        f.seek(std::io::SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(b"tail").unwrap();
        let size = (1 << 20) + 4;
        let runs = data_runs(&f, size).unwrap();
        assert!(runs.len() >= 2 || runs == [(0, size)], "{runs:?}");
        assert_eq!(runs[0].0, 0);
        let last = runs.last().unwrap();
        assert_eq!(last.0 + last.1, size);
        let covered: u64 = runs.iter().map(|r| r.1).sum();
        assert!(covered < size || runs == [(0, size)]);
    }

    #[test]
    fn a_device_path_that_now_names_another_node_needs_evasive_devices() {
        use nix::sys::stat::{mknod, Mode, SFlag};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("null");
        let node = || {
            mknod(
                &p,
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                libc::makedev(1, 3),
            )
        };
        if let Err(e) = node() {
            panic!(
                "this test needs root: it makes a device node (mknod: {e}; run the tests as \
                 root, see README)"
            );
        }
        let open = File::open(&p).unwrap();
        let meta = open.metadata().unwrap();
        std::fs::remove_file(&p).unwrap();
        node().unwrap();
        let o = Origin {
            pid: 1,
            what: "fd 3".into(),
            link: PathBuf::from("/nonexistent"),
            deleted: false,
        };
        let mut strict = FileTable::new(Default::default());
        let e = check(&mut strict, 1, &p, &o, &meta).unwrap_err();
        assert!(matches!(e, GhostError::Replaced { .. }), "{e}");
        let mut evasive = FileTable::new(crate::table::DumpFileOptions {
            evasive_devices: true,
            ..Default::default()
        });
        check(&mut evasive, 1, &p, &o, &meta).unwrap();
    }

    #[test]
    fn ghost_over_the_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        let mut f = File::create(&p).unwrap();
        f.write_all(&vec![7u8; 64 * 1024]).unwrap();
        f.sync_all().unwrap();
        std::fs::remove_file(&p).unwrap();
        let meta = f.metadata().unwrap();
        let mut t = FileTable::new(crate::table::DumpFileOptions {
            ghost_limit: 4096,
            ..Default::default()
        });
        let o = Origin {
            pid: 1,
            what: "fd 3".into(),
            link: PathBuf::from("/nonexistent"),
            deleted: true,
        };
        let e = check(&mut t, 1, &p, &o, &meta).unwrap_err();
        assert!(e.to_string().contains("--ghost-limit"), "{e}");
    }
}
