//! One task's fds as `fdinfo` entries: each fd is classified and handed to its kind, which
//! numbers its description in the shared [`FileTable`]. Also the "special" files (exe, cwd,
//! root, mapped files) and regular files and memory char devices, kept as regular files.

use std::path::{Path, PathBuf};

use criu_procfs::FdTarget;
use criu_proto::images::{FdTypes, FdinfoEntry, FileEntry, FownEntry, RegFileEntry};

use crate::pipes::dump as pipes;
use crate::table::{fdinfo, FileStat, FileTable, FilesError, OpenState, MEM_MAJOR};
use std::os::unix::fs::MetadataExt;
/// A regular file entry; `st` is absent for link remaps, which restore only opens by name.
pub(crate) fn reg_entry(
    id: u32,
    path: &Path,
    flags: u32,
    pos: u64,
    mnt_id: Option<i32>,
    st: Option<FileStat>,
) -> FileEntry {
    // As CRIU: the size of a regular file is checked at restore, except for files written
    // only by appending (logs), which may grow meanwhile.
    let append_only = flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32
        && flags & libc::O_APPEND as u32 != 0;
    let size = st
        .filter(|st| st.mode & libc::S_IFMT == libc::S_IFREG && !append_only)
        .map(|st| st.size);
    let reg = RegFileEntry {
        id,
        flags,
        pos,
        fown: FownEntry::default(),
        name: path.to_string_lossy().into_owned(),
        mnt_id,
        size,
        mode: st.map(|st| st.mode),
        ..Default::default()
    };
    FileEntry {
        r#type: FdTypes::Reg as i32,
        id,
        reg: Some(reg),
        ..Default::default()
    }
}

/// The id of what `/proc/PID/<name>` (exe, cwd, root) points at, remapped if its name no
/// longer leads to it.
pub fn proc_special(
    pid: i32,
    name: &str,
    table: &std::sync::Mutex<FileTable>,
) -> Result<u32, FilesError> {
    let link = PathBuf::from(format!("/proc/{pid}/{name}"));
    let target = std::fs::read_link(&link).map_err(|source| FilesError::Stat {
        pid,
        path: link.display().to_string(),
        source,
    })?;
    let (path, deleted) = strip_deleted(target);
    let origin = crate::ghost::dump::Origin {
        pid,
        what: name.to_string(),
        link,
        deleted,
    };
    lock(table).special_at(&path, &origin)
}

/// The id of the file mapped at `start`-`end` of `pid` (its name as /proc shows it, without
/// " (deleted)"), remapped if that name no longer leads to it.
pub fn mapped_special(
    pid: i32,
    start: u64,
    end: u64,
    path: &Path,
    deleted: bool,
    table: &std::sync::Mutex<FileTable>,
) -> Result<u32, FilesError> {
    let origin = crate::ghost::dump::Origin {
        pid,
        what: format!("mapping at {start:#x}"),
        link: criu_procfs::maps::map_file_path(pid, start, end),
        deleted,
    };
    lock(table).special_at(path, &origin)
}

/// A /proc link target without its " (deleted)" mark, and whether it had one.
fn strip_deleted(target: PathBuf) -> (PathBuf, bool) {
    match target.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(s) => (PathBuf::from(s), true),
        None => (target, false),
    }
}

/// What a task's fd table becomes: `fdinfo` entries referring to ids in the table.
/// Every fd of `pid` but those `skip` names (criu's memory trackers, see
/// criu_memory::track; asked as each fd is found, since a task sharing the table may make
/// one meanwhile).
pub fn dump_fds(
    pid: i32,
    table: &std::sync::Mutex<FileTable>,
    skip: impl Fn(i32) -> bool,
) -> Result<Vec<FdinfoEntry>, FilesError> {
    let fds = criu_procfs::read_fds(pid).map_err(|source| FilesError::Proc {
        pid,
        what: "fd list".into(),
        source,
    })?;
    let mut out = Vec::with_capacity(fds.len());
    for (fd, target) in fds.into_iter().filter(|(fd, _)| !skip(*fd)) {
        let entry = match target {
            FdTarget::Path {
                path,
                deleted: true,
            } if crate::memfd::dump::is_memfd_fd(pid, fd, &path) => {
                crate::memfd::dump::dump_memfd_fd(pid, fd, &path, table)?
            }
            FdTarget::Path { path, deleted } => dump_path_fd(pid, fd, &path, deleted, table)?,
            FdTarget::Pipe(ino) => dump_pipe_fd(pid, fd, ino, table)?,
            FdTarget::Socket(ino) => crate::socket::dump_socket_fd(pid, fd, ino, table)?,
            FdTarget::AnonInode(name) if name == "[eventfd]" => {
                crate::eventfd::dump::dump_eventfd_fd(pid, fd, table)?
            }
            FdTarget::AnonInode(name) if name == "[signalfd]" => {
                crate::signalfd::dump::dump_signalfd_fd(pid, fd, table)?
            }
            FdTarget::AnonInode(name) if name == "[timerfd]" => {
                crate::timerfd::dump::dump_timerfd_fd(pid, fd, table)?
            }
            FdTarget::AnonInode(name) if name == "[eventpoll]" => {
                crate::epoll::dump::dump_epoll_fd(pid, fd, table)?
            }
            FdTarget::AnonInode(name) if name == "inotify" => {
                crate::inotify::dump::dump_inotify_fd(pid, fd, table)?
            }
            FdTarget::AnonInode(name) if name == "[pidfd]" => {
                crate::pidfd::dump::dump_pidfd_fd(pid, fd, table)?
            }
            FdTarget::AnonInode(name) if name == "[fanotify]" => {
                crate::fanotify::dump::dump_fanotify_fd(pid, fd, table)?
            }
            FdTarget::AnonInode(name) => {
                return Err(FilesError::Unsupported {
                    pid,
                    fd,
                    kind: format!("anon_inode:{name}"),
                })
            }
            FdTarget::Typed { kind, ino } => match criu_procfs::NsKind::from_name(&kind) {
                Some(ns) => crate::nsfile::dump::dump_ns_fd(pid, fd, ns, ino, table)?,
                None => {
                    return Err(FilesError::Unsupported {
                        pid,
                        fd,
                        kind: format!("{kind}:[{ino}]"),
                    })
                }
            },
            FdTarget::Other(s) => return Err(FilesError::Unsupported { pid, fd, kind: s }),
        };
        if entry.r#type != FdTypes::Reg as i32 {
            crate::locks::dump::note_fd(pid, fd, entry.id, table)?;
        }
        out.push(entry);
    }
    out.sort_by_key(|e| e.fd);
    Ok(out)
}

fn fd_meta(pid: i32, fd: i32) -> Result<std::fs::Metadata, FilesError> {
    let link = format!("/proc/{pid}/fd/{fd}");
    std::fs::metadata(&link).map_err(|source| FilesError::Stat {
        pid,
        path: link,
        source,
    })
}

/// fdinfo flags split into (status flags, FD_CLOEXEC for the fdinfo entry).
fn split_cloexec(info: &criu_procfs::FdInfo) -> (u32, u32) {
    let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
    (info.flags & !(libc::O_CLOEXEC as u32), u32::from(cloexec))
}

fn read_fdinfo(pid: i32, fd: i32) -> Result<criu_procfs::FdInfo, FilesError> {
    criu_procfs::read_fdinfo(pid, fd).map_err(|source| FilesError::Proc {
        pid,
        what: format!("fdinfo of fd {fd}"),
        source,
    })
}

fn lock(table: &std::sync::Mutex<FileTable>) -> std::sync::MutexGuard<'_, FileTable> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn dump_path_fd(
    pid: i32,
    fd: i32,
    path: &Path,
    deleted: bool,
    table: &std::sync::Mutex<FileTable>,
) -> Result<FdinfoEntry, FilesError> {
    let meta = fd_meta(pid, fd)?;
    if crate::mqueue::dump::is_mqueue(pid, fd) {
        return crate::mqueue::dump::dump_mqueue_fd(pid, fd, path, deleted, table);
    }
    if crate::tty::dump::is_terminal(&meta) {
        let info = read_fdinfo(pid, fd)?;
        let (flags, fd_flags) = split_cloexec(&info);
        return Ok(crate::tty::dump::dump_tty_fd(
            pid,
            fd,
            path,
            &meta,
            (flags, fd_flags, info.mnt_id),
            &mut lock(table),
        )?);
    }
    let ft = meta.file_type();
    if std::os::unix::fs::FileTypeExt::is_fifo(&ft) {
        return Ok(crate::fifo::dump::dump_fifo_fd(
            pid, fd, path, deleted, &meta, table,
        )?);
    }
    let is_mem_chr = std::os::unix::fs::FileTypeExt::is_char_device(&ft)
        && libc::major(meta.rdev()) == MEM_MAJOR;
    let info = read_fdinfo(pid, fd)?;
    let (flags, fd_flags) = split_cloexec(&info);
    if crate::tun::dump::is_tun(&meta) {
        let open = OpenState {
            flags,
            pos: 0,
            mnt_id: info.mnt_id,
        };
        return crate::tun::dump::dump_tun_fd(pid, fd, path, &meta, open, fd_flags, table);
    }
    // A symlink itself is held only with O_PATH|O_NOFOLLOW; it is opened again the same way.
    let symlink_itself = ft.is_symlink() && flags & libc::O_PATH as u32 != 0;
    if !(ft.is_file() || ft.is_dir() || is_mem_chr || symlink_itself) {
        let kind = if std::os::unix::fs::FileTypeExt::is_char_device(&ft) {
            format!(
                "character device {} ({}:{})",
                path.display(),
                libc::major(meta.rdev()),
                libc::minor(meta.rdev())
            )
        } else {
            format!("special file {}", path.display())
        };
        return Err(FilesError::Unsupported { pid, fd, kind });
    }
    let open = OpenState {
        flags,
        pos: info.pos.max(0) as u64,
        mnt_id: info.mnt_id,
    };
    let fown = crate::fown::dump::read(pid, fd, flags)?;
    let origin = crate::ghost::dump::Origin {
        pid,
        what: format!("fd {fd}"),
        link: PathBuf::from(format!("/proc/{pid}/fd/{fd}")),
        deleted,
    };
    let id = lock(table).regular_checked(fd, path, open, &origin, &meta)?;
    if let Some(e) = lock(table).entry_mut(id) {
        crate::fown::dump::set_in(e, fown);
    }
    let mut t = lock(table);
    let allowed = t.opts.file_locks;
    t.locks.note(pid, fd, id, &info.locks, allowed)?;
    drop(t);
    Ok(fdinfo(id, fd, fd_flags, FdTypes::Reg))
}

pub(crate) fn dump_pipe_fd(
    pid: i32,
    fd: i32,
    ino: u64,
    table: &std::sync::Mutex<FileTable>,
) -> Result<FdinfoEntry, FilesError> {
    let meta = fd_meta(pid, fd)?;
    let info = read_fdinfo(pid, fd)?;
    let (flags, fd_flags) = split_cloexec(&info);
    if flags & libc::O_DIRECT as u32 != 0 {
        return Err(FilesError::Unsupported {
            pid,
            fd,
            kind: format!("packet-mode (O_DIRECT) pipe:[{ino}]"),
        });
    }
    let fown = crate::fown::dump::read(pid, fd, flags)?;
    let mut t = lock(table);
    let id = t.pipe(pid, fd, flags, FileStat::of(&meta));
    if let Some(e) = t.entry_mut(id) {
        crate::fown::dump::set_in(e, fown);
    }
    // As CRIU does, the bytes are taken through the first read end seen.
    if pipes::is_read_end(flags) && t.pipe_data_missing(ino) {
        let data = pipes::read_pipe_data(pid, fd, ino)?;
        t.add_pipe_data(data);
    }
    Ok(fdinfo(id, fd, fd_flags, FdTypes::Pipe))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::FileTable;
    use std::os::fd::AsRawFd;

    #[test]
    fn pipes_are_dumped_with_their_bytes_once() {
        use std::io::Write;
        let (r, w) = nix::unistd::pipe().unwrap();
        std::fs::File::from(w.try_clone().unwrap())
            .write_all(b"abc")
            .unwrap();
        let r2 = r.try_clone().unwrap();
        let me = std::process::id() as i32;
        let table = std::sync::Mutex::new(FileTable::new(Default::default()));
        let er = dump_pipe_fd(me, r.as_raw_fd(), ino_of(&r), &table).unwrap();
        let ew = dump_pipe_fd(me, w.as_raw_fd(), ino_of(&w), &table).unwrap();
        let er2 = dump_pipe_fd(me, r2.as_raw_fd(), ino_of(&r2), &table).unwrap();
        assert_eq!(er.r#type, FdTypes::Pipe as i32);
        assert_eq!(er.id, er2.id);
        assert_ne!(er.id, ew.id);
        let t = table.into_inner().unwrap();
        assert_eq!(t.entries().len(), 2);
        let flags: Vec<u32> = t
            .entries()
            .iter()
            .map(|e| e.pipe.as_ref().unwrap().flags & libc::O_ACCMODE as u32)
            .collect();
        assert_eq!(flags, [libc::O_RDONLY as u32, libc::O_WRONLY as u32]);
        assert_eq!(t.pipe_data().len(), 1);
        assert_eq!(t.pipe_data()[0].bytes, b"abc");
        assert_eq!(
            u64::from(t.pipe_data()[0].pipe_id),
            ino_of(&r) & 0xffff_ffff
        );
    }

    fn ino_of(fd: &impl AsRawFd) -> u64 {
        std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .ino()
    }
}
