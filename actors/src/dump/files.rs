//! Open files of a dump: one table of file ids shared by every task (CRIU numbers all files
//! from one counter), regular files, `/dev/null` and other memory char devices as regular
//! files, and the "special" files (exe, cwd, root, mapped files), which share an id per inode.
//! fds that share one open file description (dup, or inherited across fork) share one id,
//! found with kcmp as CRIU does; pipes are in `pipes`.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use criu_procfs::FdTarget;
use criu_proto::images::{FdTypes, FdinfoEntry, FileEntry, FownEntry, RegFileEntry};

use super::pipes::{self, PipeData};

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("pid {pid}: cannot read {what}: {source}")]
    Proc {
        pid: i32,
        what: String,
        source: criu_procfs::ProcError,
    },
    #[error("pid {pid}: cannot stat {path}: {source}")]
    Stat {
        pid: i32,
        path: String,
        source: std::io::Error,
    },
    #[error("pid {pid}: fd {fd}: {kind} is not supported by this dump")]
    Unsupported { pid: i32, fd: i32, kind: String },
    #[error(transparent)]
    Pipe(#[from] super::pipes::PipeError),
    #[error(transparent)]
    Tty(#[from] super::tty::TtyError),
    #[error(transparent)]
    Epoll(#[from] super::epoll::EpollError),
    #[error(transparent)]
    Inotify(#[from] super::inotify::InotifyError),
    #[error(transparent)]
    Fanotify(#[from] super::fanotify::FanotifyError),
    #[error(transparent)]
    Unix(#[from] super::unix::UnixError),
    #[error(transparent)]
    Locks(#[from] super::locks::LockError),
    #[error(transparent)]
    AnonFd(#[from] super::eventfd::AnonFdError),
    #[error(transparent)]
    Memfd(#[from] super::memfd::MemfdError),
    #[error(transparent)]
    Fifo(#[from] super::fifo::FifoError),
    #[error(transparent)]
    Fown(#[from] super::fown::FownError),
    #[error(transparent)]
    Ghost(#[from] super::ghost::GhostError),
}

/// Char device major of /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom.
const MEM_MAJOR: u32 = 1;

/// An fd already given an id: (pid, fd, id).
type SeenFd = (i32, i32, u32);

/// Every file description of the dump, numbered as CRIU does (from 1).
#[derive(Debug, Default)]
pub struct FileTable {
    next_id: u32,
    special: HashMap<(u64, u64), u32>,
    entries: Vec<FileEntry>,
    /// fds seen so far by (dev, ino) of their file: (pid, fd, id), to find shared descriptions.
    seen: HashMap<(u64, u64), Vec<SeenFd>>,
    /// Pipes whose bytes are already taken, and those bytes.
    pipe_data: Vec<PipeData>,
    /// Terminals (see `tty`).
    pub ttys: super::tty::Terminals,
    /// File locks (see `locks`).
    pub locks: super::locks::Locks,
    /// memfd inodes and their contents (see `memfd`).
    pub memfds: super::memfd::MemfdInodes,
    /// FIFO bytes (see `fifo`).
    pub fifos: super::fifo::Fifos,
    /// Unix sockets (see `unix`).
    pub unix: super::unix::UnixSockets,
    /// What the command line says about files.
    pub opts: DumpFileOptions,
    /// Files whose names no longer lead to them (see `ghost`).
    pub remaps: super::ghost::Remaps,
}

/// The file options of `criu dump`.
#[derive(Debug, Clone)]
pub struct DumpFileOptions {
    /// `--ghost-limit`: the largest unlinked file carried in the images, in bytes.
    pub ghost_limit: u64,
    /// `--link-remap`: unlinked files are linked back instead of copied.
    pub link_remap: bool,
    /// `--ext-unix-sk` (with inode list; empty = any).
    pub ext_unix_sk: Option<Vec<u64>>,
    /// `-l/--file-locks`.
    pub file_locks: bool,
    /// `--evasive-devices`.
    pub evasive_devices: bool,
    /// `--force-irmap`.
    pub force_irmap: bool,
}

impl Default for DumpFileOptions {
    fn default() -> Self {
        DumpFileOptions {
            ghost_limit: 1 << 20,
            link_remap: false,
            ext_unix_sk: None,
            file_locks: false,
            evasive_devices: false,
            force_irmap: false,
        }
    }
}

impl FileTable {
    pub fn new(opts: DumpFileOptions) -> FileTable {
        FileTable {
            next_id: 1,
            opts,
            ..Default::default()
        }
    }

    fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The id of a file reached without an fd (exe, cwd, root, a mapping): one per inode.
    pub fn special(&mut self, path: &Path, st: FileStat) -> u32 {
        let key = (st.dev, st.ino);
        if let Some(&id) = self.special.get(&key) {
            return id;
        }
        let id = self.take_id();
        self.special.insert(key, id);
        self.entries.push(reg_entry(id, path, 0, 0, None, Some(st)));
        id
    }

    /// The id of a file reached without an fd, found through the /proc link of `origin`
    /// (which also opens it); one per inode. A file whose name no longer leads to it is
    /// remapped (see `ghost`).
    pub fn special_at(
        &mut self,
        path: &Path,
        origin: &super::ghost::Origin,
    ) -> Result<u32, FilesError> {
        let meta = std::fs::metadata(&origin.link).map_err(|source| FilesError::Stat {
            pid: origin.pid,
            path: origin.link.display().to_string(),
            source,
        })?;
        let st = FileStat::of(&meta);
        if let Some(&id) = self.special.get(&(st.dev, st.ino)) {
            return Ok(id);
        }
        let id = self.special(path, st);
        super::ghost::check(self, id, path, origin, &meta)?;
        Ok(id)
    }

    /// The id of the description behind `pid`'s `fd` if an fd seen before shares it.
    fn known_description(&self, key: (u64, u64), pid: i32, fd: i32) -> Option<u32> {
        let seen = self.seen.get(&key)?;
        seen.iter()
            .find(|&&(p, f, _)| criu_sys::kcmp::same_file(pid, fd, p, f) == Ok(true))
            .map(|&(_, _, id)| id)
    }

    /// The id of `pid`'s `fd`, and whether it is a description not seen before.
    fn description(&mut self, pid: i32, fd: i32, st: FileStat) -> (u32, bool) {
        let key = (st.dev, st.ino);
        if let Some(id) = self.known_description(key, pid, fd) {
            return (id, false);
        }
        let id = self.take_id();
        self.seen.entry(key).or_default().push((pid, fd, id));
        (id, true)
    }

    /// A regular file (or memory char device) open on `pid`'s `fd`.
    pub fn regular(
        &mut self,
        pid: i32,
        fd: i32,
        path: &Path,
        open: OpenState,
        st: FileStat,
    ) -> u32 {
        let (id, new) = self.description(pid, fd, st);
        if new {
            self.entries.push(reg_entry(
                id,
                path,
                open.flags,
                open.pos,
                Some(open.mnt_id),
                Some(st),
            ));
        }
        id
    }

    /// `regular` for `fd` of `origin.pid`; a new description whose name no longer leads to
    /// its file is remapped (see `ghost`).
    fn regular_checked(
        &mut self,
        fd: i32,
        path: &Path,
        open: OpenState,
        origin: &super::ghost::Origin,
        meta: &std::fs::Metadata,
    ) -> Result<u32, FilesError> {
        let st = FileStat::of(meta);
        let (id, new) = self.description(origin.pid, fd, st);
        if new {
            let entry = reg_entry(id, path, open.flags, open.pos, Some(open.mnt_id), Some(st));
            self.entries.push(entry);
            super::ghost::check(self, id, path, origin, meta)?;
        }
        Ok(id)
    }

    /// A pipe end open on `pid`'s `fd`; `flags` without O_CLOEXEC.
    pub fn pipe(&mut self, pid: i32, fd: i32, flags: u32, st: FileStat) -> u32 {
        let (id, new) = self.description(pid, fd, st);
        if new {
            self.entries.push(pipes::pipe_entry(id, st.ino, flags));
        }
        id
    }

    /// Whether the bytes of pipe `ino` are still to be taken.
    pub fn pipe_data_missing(&self, ino: u64) -> bool {
        !self.pipe_data.iter().any(|d| d.pipe_id == ino as u32)
    }

    pub fn add_pipe_data(&mut self, data: PipeData) {
        if self.pipe_data_missing(u64::from(data.pipe_id)) {
            self.pipe_data.push(data);
        }
    }

    pub fn entries(&self) -> &[FileEntry] {
        &self.entries
    }

    /// A new entry of another module's kind, built from its new id.
    pub fn add(&mut self, make: impl FnOnce(u32) -> FileEntry) -> u32 {
        let id = self.take_id();
        self.entries.push(make(id));
        id
    }

    /// The id of `pid`'s `fd` for a kind of another module: the first fd of a description
    /// gets a new id and `make` builds its entry; later fds sharing it (dup, fork) get the same id.
    pub fn described<E>(
        &mut self,
        pid: i32,
        fd: i32,
        st: FileStat,
        make: impl FnOnce(u32) -> Result<FileEntry, E>,
    ) -> Result<u32, E> {
        let (id, new) = self.description(pid, fd, st);
        if new {
            let entry = make(id)?;
            self.entries.push(entry);
        }
        Ok(id)
    }

    /// The entry with id `id`, to fill in later (newest entries are searched first).
    pub fn entry_mut(&mut self, id: u32) -> Option<&mut FileEntry> {
        self.entries.iter_mut().rev().find(|e| e.id == id)
    }

    pub fn pipe_data(&self) -> &[PipeData] {
        &self.pipe_data
    }
}

/// Where a description stands: its status flags (no O_CLOEXEC), offset and mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenState {
    pub flags: u32,
    pub pos: u64,
    pub mnt_id: i32,
}

/// The parts of `stat` a file entry keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub size: u64,
}

impl FileStat {
    pub fn of(meta: &std::fs::Metadata) -> FileStat {
        FileStat {
            dev: meta.dev(),
            ino: meta.ino(),
            mode: meta.mode(),
            size: meta.size(),
        }
    }
}

/// A regular file entry; `st` is absent for link remaps, which restore only opens by name.
pub(super) fn reg_entry(
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
    let origin = super::ghost::Origin {
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
    let origin = super::ghost::Origin {
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
pub fn dump_fds(
    pid: i32,
    table: &std::sync::Mutex<FileTable>,
) -> Result<Vec<FdinfoEntry>, FilesError> {
    let fds = criu_procfs::read_fds(pid).map_err(|source| FilesError::Proc {
        pid,
        what: "fd list".into(),
        source,
    })?;
    let mut out = Vec::with_capacity(fds.len());
    for (fd, target) in fds {
        let entry = match target {
            FdTarget::Path {
                path,
                deleted: true,
            } if super::memfd::is_memfd_fd(pid, fd, &path) => {
                super::memfd::dump_memfd_fd(pid, fd, &path, table)?
            }
            FdTarget::Path { path, deleted } => dump_path_fd(pid, fd, &path, deleted, table)?,
            FdTarget::Pipe(ino) => dump_pipe_fd(pid, fd, ino, table)?,
            FdTarget::Socket(ino) => super::unix::dump_socket_fd(pid, fd, ino, table)?,
            FdTarget::AnonInode(name) if name == "[eventfd]" => {
                super::eventfd::dump_eventfd_fd(pid, fd, table)?
            }
            FdTarget::AnonInode(name) if name == "[signalfd]" => {
                super::signalfd::dump_signalfd_fd(pid, fd, table)?
            }
            FdTarget::AnonInode(name) if name == "[timerfd]" => {
                super::timerfd::dump_timerfd_fd(pid, fd, table)?
            }
            FdTarget::AnonInode(name) if name == "[eventpoll]" => {
                super::epoll::dump_epoll_fd(pid, fd, table)?
            }
            FdTarget::AnonInode(name) if name == "inotify" => {
                super::inotify::dump_inotify_fd(pid, fd, table)?
            }
            FdTarget::AnonInode(name) if name == "[fanotify]" => {
                super::fanotify::dump_fanotify_fd(pid, fd, table)?
            }
            FdTarget::AnonInode(name) => {
                return Err(FilesError::Unsupported {
                    pid,
                    fd,
                    kind: format!("anon_inode:{name}"),
                })
            }
            FdTarget::Typed { kind, ino } => {
                return Err(FilesError::Unsupported {
                    pid,
                    fd,
                    kind: format!("{kind}:[{ino}]"),
                })
            }
            FdTarget::Other(s) => return Err(FilesError::Unsupported { pid, fd, kind: s }),
        };
        if entry.r#type != FdTypes::Reg as i32 {
            super::locks::note_fd(pid, fd, entry.id, table)?;
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

pub(super) fn dump_path_fd(
    pid: i32,
    fd: i32,
    path: &Path,
    deleted: bool,
    table: &std::sync::Mutex<FileTable>,
) -> Result<FdinfoEntry, FilesError> {
    let meta = fd_meta(pid, fd)?;
    if super::tty::is_terminal(&meta) {
        let info = read_fdinfo(pid, fd)?;
        let (flags, fd_flags) = split_cloexec(&info);
        return Ok(super::tty::dump_tty_fd(
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
        return Ok(super::fifo::dump_fifo_fd(
            pid, fd, path, deleted, &meta, table,
        )?);
    }
    let is_mem_chr = std::os::unix::fs::FileTypeExt::is_char_device(&ft)
        && libc::major(meta.rdev()) == MEM_MAJOR;
    if !(ft.is_file() || ft.is_dir() || is_mem_chr) {
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
    let info = read_fdinfo(pid, fd)?;
    let (flags, fd_flags) = split_cloexec(&info);
    let open = OpenState {
        flags,
        pos: info.pos.max(0) as u64,
        mnt_id: info.mnt_id,
    };
    let fown = super::fown::read(pid, fd, flags)?;
    let origin = super::ghost::Origin {
        pid,
        what: format!("fd {fd}"),
        link: PathBuf::from(format!("/proc/{pid}/fd/{fd}")),
        deleted,
    };
    let id = lock(table).regular_checked(fd, path, open, &origin, &meta)?;
    if let Some(e) = lock(table).entry_mut(id) {
        super::fown::set_in(e, fown);
    }
    let mut t = lock(table);
    let allowed = t.opts.file_locks;
    t.locks.note(pid, fd, id, &info.locks, allowed)?;
    drop(t);
    Ok(FdinfoEntry {
        id,
        flags: fd_flags,
        r#type: FdTypes::Reg as i32,
        fd: fd as u32,
        xattr_security_selinux: None,
    })
}

pub(super) fn dump_pipe_fd(
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
    let fown = super::fown::read(pid, fd, flags)?;
    let mut t = lock(table);
    let id = t.pipe(pid, fd, flags, FileStat::of(&meta));
    if let Some(e) = t.entry_mut(id) {
        super::fown::set_in(e, fown);
    }
    // As CRIU does, the bytes are taken through the first read end seen.
    if pipes::is_read_end(flags) && t.pipe_data_missing(ino) {
        let data = pipes::read_pipe_data(pid, fd, ino)?;
        t.add_pipe_data(data);
    }
    Ok(FdinfoEntry {
        id,
        flags: fd_flags,
        r#type: FdTypes::Pipe as i32,
        fd: fd as u32,
        xattr_security_selinux: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn special_files_share_one_id_per_inode() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"x").unwrap();
        let meta = FileStat::of(&std::fs::metadata(&a).unwrap());
        let mut t = FileTable::new(Default::default());
        let id1 = t.special(&a, meta);
        let id2 = t.special(&a, meta);
        let me = std::process::id() as i32;
        let f = std::fs::File::open(&a).unwrap();
        let id3 = t.regular(
            me,
            f.as_raw_fd(),
            &a,
            OpenState {
                flags: 2,
                pos: 1,
                mnt_id: 5,
            },
            meta,
        );
        assert_eq!((id1, id2, id3), (1, 1, 2));
        assert_eq!(t.entries().len(), 2);
        let reg = t.entries()[1].reg.as_ref().unwrap();
        assert_eq!(
            (reg.flags, reg.pos, reg.mnt_id, reg.size),
            (2, 1, Some(5), Some(1))
        );
    }

    #[test]
    fn fds_of_one_description_share_an_id() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"xy").unwrap();
        let meta = FileStat::of(&std::fs::metadata(&a).unwrap());
        let me = std::process::id() as i32;
        let f = std::fs::File::open(&a).unwrap();
        let dup = f.try_clone().unwrap();
        let again = std::fs::File::open(&a).unwrap();
        let open = OpenState {
            flags: 0,
            pos: 0,
            mnt_id: 1,
        };
        let mut t = FileTable::new(Default::default());
        let id1 = t.regular(me, f.as_raw_fd(), &a, open, meta);
        let id2 = t.regular(me, dup.as_raw_fd(), &a, open, meta);
        let id3 = t.regular(me, again.as_raw_fd(), &a, open, meta);
        assert_eq!(id1, id2);
        assert_ne!(id1, id3);
        assert_eq!(t.entries().len(), 2);
    }

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
