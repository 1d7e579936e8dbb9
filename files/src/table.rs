//! The open files of a dump: one table of file ids shared by every task (CRIU numbers all
//! files from one counter). fds that share one open file description (dup, or inherited across
//! fork) share one id, found with kcmp as CRIU does; the special files (exe, cwd, root, mapped
//! files) share an id per inode.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use criu_proto::images::{FdTypes, FdinfoEntry, FileEntry, TaskKobjIdsEntry};

use crate::collect::reg_entry;
use crate::pipes::dump::{self as pipes, PipeData};

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
    #[error(transparent)]
    Image(#[from] criu_proto::Error),
    #[error("pid {pid}: {what}")]
    Other { pid: i32, what: String },
    #[error("pid {pid}: fd {fd}: {kind} is not supported by this dump")]
    Unsupported { pid: i32, fd: i32, kind: String },
    #[error(transparent)]
    Pipe(#[from] crate::pipes::dump::PipeError),
    #[error(transparent)]
    Tty(#[from] crate::tty::dump::TtyError),
    #[error(transparent)]
    Epoll(#[from] crate::epoll::dump::EpollError),
    #[error(transparent)]
    Inotify(#[from] crate::inotify::dump::InotifyError),
    #[error(transparent)]
    Fanotify(#[from] crate::fanotify::dump::FanotifyError),
    #[error(transparent)]
    Unix(#[from] crate::unix::dump::UnixError),
    #[error(transparent)]
    Socket(#[from] crate::socket::SocketError),
    #[error(transparent)]
    Locks(#[from] crate::locks::dump::LockError),
    #[error(transparent)]
    AnonFd(#[from] crate::eventfd::dump::AnonFdError),
    #[error(transparent)]
    Memfd(#[from] crate::memfd::dump::MemfdError),
    #[error(transparent)]
    Fifo(#[from] crate::fifo::dump::FifoError),
    #[error(transparent)]
    Fown(#[from] crate::fown::dump::FownError),
    #[error(transparent)]
    Ghost(#[from] crate::ghost::dump::GhostError),
    #[error(transparent)]
    Pidfd(#[from] crate::pidfd::dump::PidfdError),
}

/// Char device major of /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom.
pub(crate) const MEM_MAJOR: u32 = 1;

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
    pub ttys: crate::tty::dump::Terminals,
    /// File locks (see `locks`).
    pub locks: crate::locks::dump::Locks,
    /// memfd inodes and their contents (see `memfd`).
    pub memfds: crate::memfd::dump::MemfdInodes,
    /// FIFO bytes (see `fifo`).
    pub fifos: crate::fifo::dump::Fifos,
    /// Unix sockets (see `unix`).
    pub unix: crate::unix::dump::UnixSockets,
    /// Inet sockets (see `inet`).
    pub inet: crate::inet::dump::InetSockets,
    /// Packet sockets (see `packet`).
    pub packet: crate::packet::dump::PacketSockets,
    /// Netlink sockets (see `netlink`).
    pub netlink: crate::netlink::dump::NetlinkSockets,
    /// POSIX message queues (see `mqueue`).
    pub mqueues: crate::mqueue::dump::Queues,
    /// tun files and the devices they hold (see `tun`).
    pub tun: crate::tun::dump::TunFiles,
    /// What the command line says about files.
    pub opts: DumpFileOptions,
    /// criu's own namespace ids (`ids-*.img` numbering), for namespace files (see `nsfile`).
    pub own_ns_ids: TaskKobjIdsEntry,
    /// The namespace ids of the tree (its root's; every task shares them).
    pub tree_ns_ids: TaskKobjIdsEntry,
    /// The ids of the network namespaces the tree's tasks are in, by inode: a socket or tun
    /// file names its own (`ns_id`), made again there.
    pub netns_ids: BTreeMap<u64, u32>,
    /// Live processes pidfds name (see `pidfd`).
    pub pidfds: crate::pidfd::dump::PidfdTargets,
    /// Files whose names no longer lead to them (see `ghost`).
    pub remaps: crate::ghost::dump::Remaps,
    /// Where the dumped paths are seen from (`opts.root`).
    pub root: crate::root::FsRoot,
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
    /// What becomes of TCP connections.
    pub tcp: crate::inet::dump::TcpOptions,
    /// `-l/--file-locks`.
    pub file_locks: bool,
    /// `--evasive-devices`.
    pub evasive_devices: bool,
    /// `--force-irmap`.
    pub force_irmap: bool,
    /// `--shell-job`: fds on the shell's terminal are recorded, to be given criu's terminal at
    /// restore.
    pub shell_job: bool,
    /// RPC `orphan_pts_master`: one pty slave whose master is outside the tree (a container
    /// runtime's console) is recorded, for the restore to make it a new master.
    pub orphan_pts_master: bool,
    /// The tree's root when it has a mount namespace of its own (`/proc/PID/root`): the
    /// dumped paths are looked at through it.
    pub root: Option<PathBuf>,
}

impl Default for DumpFileOptions {
    fn default() -> Self {
        DumpFileOptions {
            ghost_limit: 1 << 20,
            link_remap: false,
            ext_unix_sk: None,
            tcp: Default::default(),
            file_locks: false,
            evasive_devices: false,
            force_irmap: false,
            shell_job: false,
            orphan_pts_master: false,
            root: None,
        }
    }
}

impl FileTable {
    /// The table of a dump whose criu has the namespace ids `own_ns_ids`.
    pub fn for_dump(opts: DumpFileOptions, own_ns_ids: TaskKobjIdsEntry) -> FileTable {
        let mut table = FileTable::new(opts);
        table.own_ns_ids = own_ns_ids;
        table
    }

    pub fn new(opts: DumpFileOptions) -> FileTable {
        let mut table = FileTable {
            next_id: 1,
            opts,
            ..Default::default()
        };
        table.ttys.shell_job = table.opts.shell_job;
        table.ttys.orphan_pts_master = table.opts.orphan_pts_master;
        table.root = crate::root::FsRoot::new(table.opts.root.clone());
        table
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
        origin: &crate::ghost::dump::Origin,
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
        crate::ghost::dump::check(self, id, path, origin, &meta)?;
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
    pub(crate) fn regular_checked(
        &mut self,
        fd: i32,
        path: &Path,
        open: OpenState,
        origin: &crate::ghost::dump::Origin,
        meta: &std::fs::Metadata,
    ) -> Result<u32, FilesError> {
        let st = FileStat::of(meta);
        let (id, new) = self.description(origin.pid, fd, st);
        if new {
            let entry = reg_entry(id, path, open.flags, open.pos, Some(open.mnt_id), Some(st));
            self.entries.push(entry);
            crate::ghost::dump::check(self, id, path, origin, meta)?;
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

    /// A second entry for an id that has one (CRIU keeps a tun file as its path and as itself).
    pub(crate) fn push(&mut self, entry: FileEntry) {
        self.entries.push(entry);
    }

    /// A new id for a description of `kind` that the caller fills in later (`entry_mut`):
    /// claimed before a description is read, so that a task read in parallel that shares it
    /// gets the same id instead of reading it again.
    pub fn claim(&mut self, kind: FdTypes) -> u32 {
        self.add(|id| FileEntry {
            r#type: kind as i32,
            id,
            ..Default::default()
        })
    }

    /// The id of socket `ino` of `kind`, whose module keeps its ids in the map `ids` picks:
    /// (id, true) when this call claimed it and the caller reads the socket, (id, false)
    /// when another task's fd did already.
    pub(crate) fn claim_socket(
        &mut self,
        ino: u64,
        kind: FdTypes,
        ids: impl Fn(&mut FileTable) -> &mut HashMap<u64, u32>,
    ) -> (u32, bool) {
        if let Some(&id) = ids(self).get(&ino) {
            return (id, false);
        }
        let id = self.claim(kind);
        ids(self).insert(ino, id);
        (id, true)
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

/// The fdinfo entry of fd `fd` naming file `id`; `fd_flags` is its FD_CLOEXEC bit.
pub fn fdinfo(id: u32, fd: i32, fd_flags: u32, kind: FdTypes) -> FdinfoEntry {
    FdinfoEntry {
        id,
        flags: fd_flags,
        r#type: kind as i32,
        fd: fd as u32,
        xattr_security_selinux: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// A file holding `contents` in a fresh directory (kept while the test runs), and its stat.
    fn temp_file(contents: &[u8]) -> (tempfile::TempDir, std::path::PathBuf, FileStat) {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, contents).unwrap();
        let meta = FileStat::of(&std::fs::metadata(&a).unwrap());
        (dir, a, meta)
    }

    #[test]
    fn special_files_share_one_id_per_inode() {
        let (_dir, a, meta) = temp_file(b"x");
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
        let (_dir, a, meta) = temp_file(b"xy");
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
}
