//! Objects that several tasks may hold: created once by criu before the tasks are rebuilt, and
//! handed to each task that has them (the task takes its copy with pidfd_getfd).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsRawFd, OwnedFd};

use criu_proto::images::{FdTypes, FileEntry, FownEntry};

use criu_proto::dump_images::DumpImages;

#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error(transparent)]
    Image(#[from] criu_proto::Error),
    #[error("pipe {pipe_id}: {what}: {errno}")]
    Pipe {
        pipe_id: u32,
        what: &'static str,
        errno: nix::errno::Errno,
    },
    #[error("pipe {pipe_id}: cannot refill {len} bytes: {source}")]
    PipeData {
        pipe_id: u32,
        len: usize,
        source: std::io::Error,
    },
    #[error("pipes-data.img: pipe {0} holds data but no task has it open")]
    UnknownPipe(u32),
    #[error("shared memory {shmid}: {what}: {source}")]
    Shmem {
        shmid: u64,
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Memory(#[from] criu_memory::restore::RestoreMemError),
    #[error(transparent)]
    Unix(#[from] crate::unix::restore::UnixRestoreError),
    #[error(transparent)]
    Inet(#[from] crate::inet::restore::InetRestoreError),
    #[error(transparent)]
    Packet(#[from] crate::packet::restore::PacketRestoreError),
    #[error(transparent)]
    Netlink(#[from] crate::netlink::restore::NetlinkRestoreError),
    #[error("files.img: file {id} has no {kind} entry")]
    Missing { id: u32, kind: &'static str },
    #[error(transparent)]
    Inherit(#[from] crate::inherit::InheritError),
    #[error(transparent)]
    Fown(#[from] crate::fown::restore::FownError),
    #[error("file {id} (tun file): {what}")]
    Tun { id: u32, what: String },
    #[error("file {id} ({kind}): {what}")]
    Notify { id: u32, kind: String, what: String },
    #[error("file {id} ({path}): {what}: {errno}")]
    File {
        id: u32,
        path: String,
        what: &'static str,
        errno: nix::errno::Errno,
    },
    #[error("file {id} ({path}) changed since the dump: {what}")]
    Changed { id: u32, path: String, what: String },
}

/// What the command line says about files on restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreFileOptions {
    /// `--inherit-fd fd[N]:RESOURCE`: criu's fd N stands for the dumped RESOURCE.
    pub inherit_fds: Vec<(i32, String)>,
    /// `--ext-unix-sk`.
    pub ext_unix_sk: bool,
    /// `-l/--file-locks`.
    pub file_locks: bool,
    /// `--tcp-established`: the images may hold TCP connections.
    pub tcp_established: bool,
    /// `--tcp-close`: TCP connections come back as closed sockets.
    pub tcp_close: bool,
    /// `--skip-file-rwx-check`: a regular file's permission bits may differ from the dump's.
    pub skip_file_rwx_check: bool,
    /// The tree's root when it has a mount namespace of its own (`/proc/PID/root` of the
    /// restored root task): the dumped paths criu opens or makes are reached through it.
    pub root: Option<std::path::PathBuf>,
    /// RPC `orphan_pts_master`: a pty slave whose master was outside the tree gets a new
    /// master, handed to this (the RPC client's NOTIFY).
    pub orphan_pts_master: Option<OrphanPtsMaster>,
}

/// Takes the master criu made for a pty slave whose master was outside the tree.
#[derive(Clone)]
pub struct OrphanPtsMaster(pub std::sync::Arc<dyn Fn(OwnedFd) -> Result<(), String> + Send + Sync>);

impl std::fmt::Debug for OrphanPtsMaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OrphanPtsMaster")
    }
}

/// The shared objects of one restore.
#[derive(Debug, Default)]
pub struct SharedFiles {
    /// Open file descriptions by files.img id, with their status flags set: every task that
    /// holds one gets a copy of the same description.
    descriptions: BTreeMap<u32, OwnedFd>,
    /// pty masters made before the files (for slaves the mount tree binds), by index.
    pub(crate) held_ptys: BTreeMap<u32, OwnedFd>,
    /// The tree's network namespaces, where its sockets are made and its tasks go.
    pub netns: crate::netns::NetNamespaces,
    /// Descriptions that can be made only once the tasks exist (pidfds of tasks), added while
    /// the registry is already shared.
    late: std::sync::Mutex<BTreeMap<u32, OwnedFd>>,
    /// Shared memory objects by shmid, already filled: every task maps the same one.
    shmem: BTreeMap<u64, OwnedFd>,
    /// ids given criu's fds by --inherit-fd: no kind makes them again (see `inherit`).
    inherited: BTreeSet<u32>,
    /// Owners (F_SETOWN_EX) to set once every task exists (see `fown`).
    owners: Vec<(u32, FownEntry)>,
    /// File locks each task takes again once its fds are in place.
    pub locks: crate::locks::restore::TaskLocks,
    /// Controlling terminals the session leaders take again (see `pty`).
    pub ctty: crate::tty::pty::Controlling,
    /// epoll targets, registered inside a task once its fds are in place.
    pub epolls: crate::epoll::restore::EpollTargets,
    /// Where the dumped paths are seen from (`RestoreFileOptions::root`).
    pub root: crate::root::FsRoot,
    /// TCP connections in repair mode until every task is back.
    pub tcp_repair: crate::inet::restore::TcpRepair,
    /// POSIX message queues made in criu's namespace, removed if the restore fails.
    pub mq_made: crate::mqueue::restore::MadeQueues,
}

impl SharedFiles {
    /// Opens every description the tasks' fds name, each kind by its own module, and creates
    /// the shared memory objects.
    pub fn create(
        images: &DumpImages,
        opts: &RestoreFileOptions,
        netns: crate::netns::NetNamespaces,
    ) -> Result<SharedFiles, SharedError> {
        let mut shared = SharedFiles {
            root: crate::root::FsRoot::new(opts.root.clone()),
            netns,
            ..Default::default()
        };
        crate::inherit::take_all(images, opts, &mut shared)?;
        crate::regular::restore::open_all(images, opts, &mut shared)?;
        crate::inotify::restore::open_all(images, &mut shared)?;
        crate::fanotify::restore::open_all(images, &mut shared)?;
        crate::epoll::restore::open_all(images, &mut shared)?;
        shared.locks = crate::locks::restore::TaskLocks::read(images, opts.file_locks)?;
        crate::pipes::restore::open_all(images, &mut shared)?;
        crate::fifo::restore::open_all(images, &mut shared)?;
        shared.shmem = crate::memfd::shmem::create_all(images)?;
        crate::memfd::restore::open_all(images, &mut shared)?;
        crate::eventfd::restore::open_all(images, &mut shared)?;
        crate::signalfd::restore::open_all(images, &mut shared)?;
        crate::timerfd::restore::open_all(images, &mut shared)?;
        crate::pidfd::restore::open_dead(images, &mut shared)?;
        crate::nsfile::restore::open_all(images, &mut shared)?;
        crate::mqueue::restore::open_all(images, &mut shared)?;
        crate::tun::restore::open_all(images, &mut shared)?;
        crate::inet::restore::open_all(images, opts, &mut shared)?;
        crate::packet::restore::open_all(images, &mut shared)?;
        crate::netlink::restore::open_all(images, &mut shared)?;
        // Last: queued messages may carry any of the files above.
        crate::unix::restore::open_all(images, opts, &mut shared)?;
        Ok(shared)
    }

    /// The entries of every description of type `kind` that some task holds and criu must make
    /// (inherited ones are given), with their files.img ids; `pick` takes the kind's part of a
    /// file entry, `name` names it in errors.
    pub fn to_make<'a, T>(
        &self,
        images: &'a DumpImages,
        kind: FdTypes,
        name: &'static str,
        pick: impl Fn(&'a FileEntry) -> Option<&'a T>,
    ) -> Result<Vec<(u32, &'a T)>, SharedError> {
        images
            .fd_ids_of_type(kind)
            .into_iter()
            .filter(|id| !self.is_inherited(*id))
            .map(|id| {
                let entry = images.files.get(&id).and_then(&pick);
                entry
                    .map(|e| (id, e))
                    .ok_or(SharedError::Missing { id, kind: name })
            })
            .collect()
    }

    /// criu's fd of the shared memory object `shmid`.
    pub fn shmem(&self, shmid: u64) -> Option<i32> {
        self.shmem.get(&shmid).map(|fd| fd.as_raw_fd())
    }

    /// The shared memory object `shmid` itself (a memfd's description is handed to a task).
    pub fn shmem_object(&self, shmid: u64) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.shmem
            .get(&shmid)
            .map(|fd| std::os::fd::AsFd::as_fd(fd))
    }

    /// criu's fd of the open file description with files.img id `id`.
    pub fn description(&self, id: u32) -> Option<i32> {
        let late = || {
            let late = self.late.lock().unwrap_or_else(|e| e.into_inner());
            late.get(&id).map(|fd| fd.as_raw_fd())
        };
        self.descriptions
            .get(&id)
            .map(|fd| fd.as_raw_fd())
            .or_else(late)
    }

    /// Gives `id` a description made once the tasks exist; criu keeps it open until the end.
    pub fn add_late_description(&self, id: u32, fd: OwnedFd) {
        if !self.is_inherited(id) {
            let mut late = self.late.lock().unwrap_or_else(|e| e.into_inner());
            late.insert(id, fd);
        }
    }

    /// Gives files.img id `id` an open file description made elsewhere (a terminal). An id
    /// taken from --inherit-fd keeps criu's inherited fd.
    pub fn add_description(&mut self, id: u32, fd: OwnedFd) {
        if !self.inherited.contains(&id) {
            self.descriptions.insert(id, fd);
        }
    }

    /// Whether `id` is one of criu's inherited fds (kinds skip making those).
    pub fn is_inherited(&self, id: u32) -> bool {
        self.inherited.contains(&id)
    }

    /// Gives `id` a description taken from an --inherit-fd fd; it wins over any other kind.
    pub fn add_inherited(&mut self, id: u32, fd: OwnedFd) {
        self.inherited.insert(id);
        self.descriptions.insert(id, fd);
    }

    /// Puts back the owner of description `id`: its signal now, the owner itself in
    /// `set_owners` once the owning task exists.
    pub fn restore_fown(
        &mut self,
        id: u32,
        fd: &OwnedFd,
        fown: &FownEntry,
    ) -> Result<(), SharedError> {
        // An inherited description keeps the owner its provider gave it.
        if self.is_inherited(id) {
            return Ok(());
        }
        crate::fown::restore::set_signal(id, fd, fown)?;
        if fown.pid != 0 {
            self.owners.push((id, *fown));
        }
        Ok(())
    }

    /// `restore_fown` for a description already added (terminals, made outside `create`).
    pub fn restore_fown_of(&mut self, id: u32, fown: &FownEntry) -> Result<(), SharedError> {
        if let Some(fd) = self.descriptions.remove(&id) {
            let done = self.restore_fown(id, &fd, fown);
            self.descriptions.insert(id, fd);
            done?;
        }
        Ok(())
    }

    /// Sets every owner noted by `restore_fown`; call once every task is made.
    pub fn set_owners(&self, images: &DumpImages) -> Result<(), SharedError> {
        for (id, fown) in &self.owners {
            if let Some(fd) = self.descriptions.get(id) {
                // criu names the owner by its own view of the pid.
                let fown = FownEntry {
                    pid: images.host_of(fown.pid as i32) as u32,
                    ..*fown
                };
                crate::fown::restore::set_owner(*id, fd, &fown)?;
            }
        }
        Ok(())
    }
}
