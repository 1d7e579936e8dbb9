//! Objects that several tasks may hold: created once by criu before the tasks are rebuilt, and
//! handed to each task that has them (the task takes its copy with pidfd_getfd).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};

use criu_proto::images::{FdTypes, FownEntry, PipeDataEntry};
use criu_proto::{ImageKind, ImageReader};

use criu_memory::restore::{plan, MapPlan};

use super::images::DumpImages;

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
    Unix(#[from] super::unix::UnixRestoreError),
    #[error("files.img: file {id} has no {kind} entry")]
    Missing { id: u32, kind: &'static str },
    #[error(transparent)]
    Inherit(#[from] super::inherit::InheritError),
    #[error(transparent)]
    Fown(#[from] super::fown::FownError),
    #[error("file {id} ({kind}): {what}")]
    Notify {
        id: u32,
        kind: String,
        what: String,
    },
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
    /// `--skip-file-rwx-check`: a regular file's permission bits may differ from the dump's.
    pub skip_file_rwx_check: bool,
}

/// The shared objects of one restore.
#[derive(Debug, Default)]
pub struct SharedFiles {
    /// Pipes by pipe inode id: (read end, write end).
    pipes: BTreeMap<u32, (OwnedFd, OwnedFd)>,
    /// Open file descriptions by files.img id, with their status flags set: every task that
    /// holds one gets a copy of the same description.
    descriptions: BTreeMap<u32, OwnedFd>,
    /// Shared memory objects by shmid, already filled: every task maps the same one.
    shmem: BTreeMap<u64, OwnedFd>,
    /// ids given criu's fds by --inherit-fd: no kind makes them again (see `inherit`).
    inherited: BTreeSet<u32>,
    /// Owners (F_SETOWN_EX) to set once every task exists (see `fown`).
    owners: Vec<(u32, FownEntry)>,
    /// File locks each task takes again once its fds are in place.
    pub locks: super::locks::TaskLocks,
    /// Controlling terminals the session leaders take again (see `pty`).
    pub ctty: super::pty::Controlling,
    /// epoll targets, registered inside a task once its fds are in place.
    pub epolls: super::epoll::EpollTargets,
}

/// A shared memory object as the dump describes it.
struct ShmemObject {
    /// `None` for anonymous shared memory, else the memfd's name.
    memfd_name: Option<String>,
    size: u64,
    /// 0, or MFD_HUGETLB with the huge page size bits: the object lives on hugetlbfs.
    hugetlb: u32,
}

/// MFD_HUGETLB and the page size bits (MAP_HUGE_SHIFT, as memfd_create takes them) of the
/// mmap flags of a hugetlb mapping; 0 for others.
fn hugetlb_of_mapping(flags: u64) -> u32 {
    const SIZE_BITS: u64 = 0x3f << libc::MAP_HUGE_SHIFT;
    if flags & libc::MAP_HUGETLB as u64 == 0 {
        return 0;
    }
    libc::MFD_HUGETLB | (flags & SIZE_BITS) as u32
}

impl SharedFiles {
    /// Opens every description the tasks' fds name, each kind by its own module, and creates
    /// the shared memory objects.
    pub fn create(
        images: &DumpImages,
        opts: &RestoreFileOptions,
    ) -> Result<SharedFiles, SharedError> {
        let _ = opts;
        let mut shared = SharedFiles::default();
        super::inherit::take_all(images, opts, &mut shared)?;
        super::regular::open_all(images, opts, &mut shared)?;
        super::inotify::open_all(images, &mut shared)?;
        super::fanotify::open_all(images, &mut shared)?;
        super::epoll::open_all(images, &mut shared)?;
        shared.locks = super::locks::TaskLocks::read(images, opts.file_locks)?;
        shared.create_pipes(images)?;
        super::fifo::open_all(images, &mut shared)?;
        shared.create_shmem(images)?;
        super::memfd::open_all(images, &mut shared)?;
        super::eventfd::open_all(images, &mut shared)?;
        super::signalfd::open_all(images, &mut shared)?;
        super::timerfd::open_all(images, &mut shared)?;
        // Last: queued messages may carry any of the files above.
        super::unix::open_all(images, opts, &mut shared)?;
        Ok(shared)
    }

    /// Creates every pipe the dump names and puts back the bytes it held.
    fn create_pipes(&mut self, images: &DumpImages) -> Result<(), SharedError> {
        let shared = self;
        // An inherited pipe is not made again, nor refilled (CRIU leaves its bytes as they are).
        let inherited: BTreeSet<u32> = images
            .files
            .values()
            .filter(|f| shared.inherited.contains(&f.id))
            .filter_map(|f| f.pipe.as_ref().map(|p| p.pipe_id))
            .collect();
        for f in images.files.values() {
            if f.r#type != FdTypes::Pipe as i32 {
                continue;
            }
            let Some(p) = &f.pipe else { continue };
            if shared.pipes.contains_key(&p.pipe_id) || inherited.contains(&p.pipe_id) {
                continue;
            }
            let ends = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|errno| {
                SharedError::Pipe {
                    pipe_id: p.pipe_id,
                    what: "pipe2",
                    errno,
                }
            })?;
            shared.pipes.insert(p.pipe_id, ends);
        }
        shared.open_pipe_descriptions(images, &inherited)?;
        if let Some(mut img) =
            ImageReader::open_if_exists(&images.dir, &ImageKind::PIPES_DATA, None)?
        {
            while let Some(entry) = img.read::<PipeDataEntry>()? {
                let data = img.read_payload(u64::from(entry.bytes))?;
                if inherited.contains(&entry.pipe_id) {
                    continue;
                }
                let (_, w) = shared
                    .pipes
                    .get(&entry.pipe_id)
                    .ok_or(SharedError::UnknownPipe(entry.pipe_id))?;
                if let Some(size) = entry.size {
                    nix::fcntl::fcntl(w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(size as i32)).map_err(
                        |errno| SharedError::Pipe {
                            pipe_id: entry.pipe_id,
                            what: "F_SETPIPE_SZ",
                            errno,
                        },
                    )?;
                }
                std::fs::File::from(w.try_clone().map_err(|source| SharedError::PipeData {
                    pipe_id: entry.pipe_id,
                    len: data.len(),
                    source,
                })?)
                .write_all(&data)
                .map_err(|source| SharedError::PipeData {
                    pipe_id: entry.pipe_id,
                    len: data.len(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// One description per pipe entry: the first entry of each end takes the end pipe2 made,
    /// later ones (the same end opened again through /proc) get a new description of it.
    fn open_pipe_descriptions(
        &mut self,
        images: &DumpImages,
        inherited: &BTreeSet<u32>,
    ) -> Result<(), SharedError> {
        let mut used = std::collections::BTreeSet::new();
        for f in images.files.values() {
            let Some(p) = f.pipe.as_ref().filter(|_| f.r#type == FdTypes::Pipe as i32) else {
                continue;
            };
            if inherited.contains(&p.pipe_id) {
                continue;
            }
            let write = p.flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32;
            let (r, w) = &self.pipes[&p.pipe_id];
            let end = if write { w } else { r };
            let fd = if used.insert((p.pipe_id, write)) {
                end.try_clone()
            } else {
                let path = format!("/proc/self/fd/{}", end.as_raw_fd());
                let access = if write {
                    libc::O_WRONLY
                } else {
                    libc::O_RDONLY
                };
                nix::fcntl::open(
                    path.as_str(),
                    nix::fcntl::OFlag::from_bits_retain(access | libc::O_CLOEXEC),
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(std::io::Error::from)
            }
            .map_err(|source| SharedError::PipeData {
                pipe_id: p.pipe_id,
                len: 0,
                source,
            })?;
            let settable = p.flags as i32
                & (libc::O_NONBLOCK | libc::O_APPEND | libc::O_ASYNC | libc::O_DIRECT);
            nix::fcntl::fcntl(
                &fd,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::from_bits_retain(settable)),
            )
            .map_err(|errno| SharedError::Pipe {
                pipe_id: p.pipe_id,
                what: "F_SETFL",
                errno,
            })?;
            self.restore_fown(f.id, &fd, &p.fown)?;
            self.descriptions.insert(f.id, fd);
        }
        Ok(())
    }

    /// Creates each shared memory object once, in criu, and fills it from its page image.
    fn create_shmem(&mut self, images: &DumpImages) -> Result<(), SharedError> {
        let mut objects: BTreeMap<u64, ShmemObject> = BTreeMap::new();
        for t in &images.tasks {
            for vma in &t.mm.vmas {
                let Ok(MapPlan::Shared {
                    len,
                    flags,
                    memfd_file,
                    shmid,
                    offset,
                    ..
                }) = plan(vma)
                else {
                    continue;
                };
                let (shmid, name, size) = match memfd_file.and_then(|id| images.memfd_inode(id)) {
                    Some(inode) if inode.name != "/dev/zero" => {
                        (u64::from(inode.shmid), Some(inode.name.clone()), inode.size)
                    }
                    Some(inode) => (u64::from(inode.shmid), None, inode.size.max(offset + len)),
                    None => (shmid, None, offset + len),
                };
                let obj = objects.entry(shmid).or_insert(ShmemObject {
                    memfd_name: name,
                    size: 0,
                    hugetlb: hugetlb_of_mapping(flags),
                });
                obj.size = obj.size.max(size);
            }
        }
        // memfds that tasks hold as fds are objects too, mapped or not.
        for inode in super::memfd::inodes_of_fds(images) {
            let anonymous = inode.name == "/dev/zero";
            let obj = objects
                .entry(u64::from(inode.shmid))
                .or_insert(ShmemObject {
                    memfd_name: (!anonymous).then(|| inode.name.clone()),
                    size: 0,
                    hugetlb: inode.hugetlb_flag.unwrap_or(0),
                });
            obj.size = obj.size.max(inode.size);
        }
        for (shmid, obj) in objects {
            let err = |what: &str| {
                let what = what.to_string();
                move |source| SharedError::Shmem {
                    shmid,
                    what,
                    source,
                }
            };
            let file = match &obj.memfd_name {
                Some(name) => {
                    criu_sys::shmem::memfd(name.strip_prefix("memfd:").unwrap_or(name), obj.hugetlb)
                        .map_err(err("memfd_create"))?
                }
                None if obj.hugetlb != 0 => criu_sys::shmem::memfd("", obj.hugetlb)
                    .map_err(err("hugetlb shared memory"))?,
                None => criu_sys::shmem::anonymous_shared(obj.size)
                    .map_err(err("anonymous shared memory"))?,
            };
            let file = std::fs::File::from(file);
            file.set_len(obj.size).map_err(err("set size"))?;
            let (pages_id, runs) = criu_memory::restore::read_shmem_pagemap(&images.dir, shmid)?;
            criu_memory::restore::fill_file(&file, &images.dir, pages_id, &runs)?;
            if obj.memfd_name.is_some() {
                super::memfd::finish_inode(&file, images, shmid)?;
            }
            self.shmem.insert(shmid, OwnedFd::from(file));
        }
        Ok(())
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
        self.descriptions.get(&id).map(|fd| fd.as_raw_fd())
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
        super::fown::set_signal(id, fd, fown)?;
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
    pub fn set_owners(&self) -> Result<(), SharedError> {
        for (id, fown) in &self.owners {
            if let Some(fd) = self.descriptions.get(id) {
                super::fown::set_owner(*id, fd, fown)?;
            }
        }
        Ok(())
    }
}
