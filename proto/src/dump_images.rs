//! Everything a restore needs from the images of one dump, read and checked before any process
//! exists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::images::{
    CoreEntry, FdinfoEntry, FileEntry, FsEntry, InventoryEntry, MemfdInodeEntry, MmEntry,
    PstreeEntry, TaskKobjIdsEntry,
};
use crate::{ImageKind, ImageReader};

#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    #[error(transparent)]
    Image(#[from] crate::Error),
    #[error("{0}: image is empty")]
    Empty(String),
    #[error("pstree.img names no task")]
    NoTasks,
    #[error("pid {pid}: {what}")]
    Task { pid: u32, what: String },
}

/// One process of the tree with its images.
#[derive(Debug, Clone)]
pub struct TaskImages {
    pub pstree: PstreeEntry,
    /// One core per thread, in `pstree.threads` order; the first is the leader's.
    pub cores: Vec<CoreEntry>,
    pub ids: TaskKobjIdsEntry,
    pub mm: MmEntry,
    pub fs: FsEntry,
    pub fds: Vec<FdinfoEntry>,
    /// A zombie (dead, not yet reaped by its parent): its raw wait status. Zombies have only
    /// a core image.
    pub zombie: Option<u32>,
    /// The ids criu sees the restored threads by, in `pstree.threads` order, set as they are
    /// made: inside a pid namespace they differ from the images' ids.
    pub host_tids: Vec<std::sync::OnceLock<i32>>,
}

impl TaskImages {
    /// The pid the task sees itself by (the images' name for it).
    pub fn pid(&self) -> i32 {
        self.pstree.pid as i32
    }

    /// The pid criu sees the restored task by; the image pid until it is known.
    pub fn host_pid(&self) -> i32 {
        self.host_tid(0)
    }

    /// The id criu sees thread `i` (in `pstree.threads` order) by; the image id until known.
    pub fn host_tid(&self, i: usize) -> i32 {
        match self.host_tids.get(i).and_then(|h| h.get()) {
            Some(&h) => h,
            None => self.pstree.threads.get(i).map_or(self.pid(), |&t| t as i32),
        }
    }

    /// Records the id criu sees thread `i` by, once it exists.
    pub fn set_host_tid(&self, i: usize, host: i32) {
        if let Some(slot) = self.host_tids.get(i) {
            let _ = slot.set(host);
        }
    }
}

/// The whole dump.
#[derive(Debug, Clone)]
pub struct DumpImages {
    pub dir: PathBuf,
    pub inventory: InventoryEntry,
    pub tasks: Vec<TaskImages>,
    /// files.img entries by id.
    pub files: BTreeMap<u32, FileEntry>,
    /// memfd.img entries by inode id.
    pub memfd_inodes: BTreeMap<u64, MemfdInodeEntry>,
    /// seccomp.img's filters; thread cores name them by index.
    pub seccomp_filters: Vec<crate::images::SeccompFilter>,
}

impl DumpImages {
    pub fn root(&self) -> &TaskImages {
        &self.tasks[0]
    }

    /// The pid criu sees for the task or thread the images call `pid` (the same number
    /// unless the tree is in a pid namespace of its own; a pid outside the tree stays).
    pub fn host_of(&self, pid: i32) -> i32 {
        for t in &self.tasks {
            if let Some(i) = t.pstree.threads.iter().position(|&tid| tid as i32 == pid) {
                return t.host_tid(i);
            }
            if t.pid() == pid {
                return t.host_pid();
            }
        }
        pid
    }

    /// The memfd inode behind a files.img memfd entry.
    pub fn memfd_inode(&self, file_id: u32) -> Option<&MemfdInodeEntry> {
        let memfd = self.files.get(&file_id)?.memfd.as_ref()?;
        self.memfd_inodes.get(&u64::from(memfd.inode_id))
    }

    /// files.img ids that some task's fd of type `kind` names, each once.
    pub fn fd_ids_of_type(&self, kind: crate::images::FdTypes) -> std::collections::BTreeSet<u32> {
        self.tasks
            .iter()
            .flat_map(|t| &t.fds)
            .filter(|fd| fd.r#type == kind as i32)
            .map(|fd| fd.id)
            .collect()
    }

    /// Whether `t` shares its parent's fd table (same files_id): it is then made with
    /// CLONE_FILES and its parent alone restores the fds.
    pub fn shares_parent_fd_table(&self, t: &TaskImages) -> bool {
        t.zombie.is_none()
            && self.tasks.iter().any(|p| {
                p.pstree.pid == t.pstree.ppid
                    && p.zombie.is_none()
                    && p.ids.files_id == t.ids.files_id
            })
    }

    /// Path of a regular file entry, for opening it again.
    pub fn reg_path(&self, id: u32) -> Option<&str> {
        self.files
            .get(&id)
            .and_then(|f| f.reg.as_ref())
            .map(|r| r.name.as_str())
    }
}

/// `task_core_entry.task_state` values of CRIU's core image.
pub const TASK_ALIVE: u32 = 1;
pub const TASK_DEAD: u32 = 2;
pub const TASK_STOPPED: u32 = 3;

fn read_one<M: prost::Message + Default + prost::Name>(
    dir: &Path,
    kind: &ImageKind,
    id: Option<u64>,
) -> Result<M, ImagesError> {
    let mut img = ImageReader::open(dir, kind, id)?;
    let path = img.path().to_string();
    img.read()?.ok_or(ImagesError::Empty(path))
}

/// Reads and checks every image a restore uses.
pub fn read(dir: &Path) -> Result<DumpImages, ImagesError> {
    let inventory: InventoryEntry = read_one(dir, &ImageKind::INVENTORY, None)?;
    let pstree = ImageReader::open(dir, &ImageKind::PSTREE, None)?.read_all::<PstreeEntry>()?;
    if pstree.is_empty() {
        return Err(ImagesError::NoTasks);
    }
    let mut files = BTreeMap::new();
    if let Some(mut img) = ImageReader::open_if_exists(dir, &ImageKind::FILES, None)? {
        for f in img.read_all::<FileEntry>()? {
            files.insert(f.id, f);
        }
    }
    let mut memfd_inodes = BTreeMap::new();
    if let Some(mut img) = ImageReader::open_if_exists(dir, &ImageKind::MEMFD_INODE, None)? {
        for m in img.read_all::<MemfdInodeEntry>()? {
            memfd_inodes.insert(m.inode_id, m);
        }
    }
    let seccomp_filters = match ImageReader::open_if_exists(dir, &ImageKind::SECCOMP, None)? {
        Some(mut img) => img
            .read::<crate::images::SeccompEntry>()?
            .map(|e| e.seccomp_filters)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let mut tasks = Vec::with_capacity(pstree.len());
    for p in pstree {
        let pid = u64::from(p.pid);
        // A zombie's core is named by its pid (its thread list may be anything).
        let first: CoreEntry = read_one(dir, &ImageKind::CORE, Some(pid))?;
        if let Some(tc) = first.tc.as_ref().filter(|tc| tc.task_state == TASK_DEAD) {
            let zombie = Some(tc.exit_code);
            tasks.push(TaskImages {
                pstree: PstreeEntry {
                    threads: vec![p.pid],
                    ..p
                },
                cores: vec![first],
                ids: TaskKobjIdsEntry::default(),
                mm: MmEntry::default(),
                fs: FsEntry::default(),
                fds: Vec::new(),
                zombie,
                host_tids: vec![Default::default()],
            });
            continue;
        }
        let threads: Vec<u32> = if p.threads.is_empty() {
            vec![p.pid]
        } else {
            p.threads.clone()
        };
        let mut cores = Vec::with_capacity(threads.len());
        for tid in &threads {
            cores.push(read_one::<CoreEntry>(
                dir,
                &ImageKind::CORE,
                Some(u64::from(*tid)),
            )?);
        }
        let ids = match cores[0].ids {
            Some(ids) => ids,
            None => read_one(dir, &ImageKind::IDS, Some(pid))?,
        };
        let mm: MmEntry = read_one(dir, &ImageKind::MM, Some(pid))?;
        let fs: FsEntry = read_one(dir, &ImageKind::FS, Some(pid))?;
        let fds = match ImageReader::open_if_exists(
            dir,
            &ImageKind::FDINFO,
            Some(u64::from(ids.files_id)),
        )? {
            Some(mut img) => img.read_all::<FdinfoEntry>()?,
            None => Vec::new(),
        };
        if cores[0].thread_info.is_none() {
            return Err(ImagesError::Task {
                pid: p.pid,
                what: "core image has no x86 thread info".into(),
            });
        }
        tasks.push(TaskImages {
            host_tids: threads.iter().map(|_| Default::default()).collect(),
            pstree: p,
            cores,
            ids,
            mm,
            fs,
            fds,
            zombie: None,
        });
    }
    Ok(DumpImages {
        dir: dir.to_path_buf(),
        inventory,
        tasks,
        files,
        memfd_inodes,
        seccomp_filters,
    })
}
