//! Everything a restore needs from the images of one dump, read and checked before any process
//! exists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::images::{
    CoreEntry, FdTypes, FdinfoEntry, FileEntry, FsEntry, InventoryEntry, MemfdInodeEntry, MmEntry,
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
    #[error("pstree.img: {0}")]
    Tree(String),
    #[error("files.img: {0}")]
    Files(String),
}

/// The most fds a process may have here (fs.nr_open; the kernel's default if unreadable).
fn nr_open() -> u32 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1 << 20)
}

/// A task's fds each below `limit` and named once.
fn check_fds(pid: u32, fds: &[FdinfoEntry], limit: u32) -> Result<(), ImagesError> {
    let mut seen = std::collections::BTreeSet::new();
    for f in fds {
        let what = if f.fd >= limit {
            format!("fd {} is past the limit of {limit} (fs.nr_open)", f.fd)
        } else if !seen.insert(f.fd) {
            format!("fd {} is named twice", f.fd)
        } else {
            continue;
        };
        return Err(ImagesError::Task { pid, what });
    }
    Ok(())
}

/// The largest pid Linux can give (PID_MAX_LIMIT on 64-bit).
pub(crate) const PID_MAX_LIMIT: u32 = 1 << 22;

/// Every pid and thread id of the tree in the kernel's range and named once (a thread's id is
/// a pid too), each process's own pid among its threads: a hostile or damaged pstree.img stops
/// here, before any task exists.
fn check_ids(pstree: &[PstreeEntry]) -> Result<(), ImagesError> {
    let mut seen = std::collections::BTreeSet::new();
    for p in pstree {
        let named = |id: u32| ImagesError::Tree(format!("task {}: {id} named twice", p.pid));
        // A group or session led from outside the tree's pid namespace reads as 0.
        for (what, id, least) in [("pid", p.pid, 1), ("pgid", p.pgid, 0), ("sid", p.sid, 0)] {
            if id < least || id > PID_MAX_LIMIT {
                return Err(ImagesError::Tree(format!(
                    "task {}: {what} {id} is out of range ({least}..={PID_MAX_LIMIT})",
                    p.pid
                )));
            }
        }
        if !p.threads.is_empty() && !p.threads.contains(&p.pid) {
            return Err(ImagesError::Tree(format!(
                "task {}: its threads {:?} do not include it",
                p.pid, p.threads
            )));
        }
        if p.threads.is_empty() && !seen.insert(p.pid) {
            return Err(named(p.pid));
        }
        for &tid in &p.threads {
            if tid == 0 || tid > PID_MAX_LIMIT {
                return Err(ImagesError::Tree(format!(
                    "task {}: thread {tid} is out of range (1..={PID_MAX_LIMIT})",
                    p.pid
                )));
            }
            if !seen.insert(tid) {
                return Err(named(tid));
            }
        }
    }
    Ok(())
}

/// Every task but the first (the root) has its parent listed before it: a pstree.img with a
/// cycle or a task whose parent is not in the tree stops here.
fn check_parents(pstree: &[PstreeEntry]) -> Result<(), ImagesError> {
    let mut listed = std::collections::BTreeSet::new();
    for (i, p) in pstree.iter().enumerate() {
        if i > 0 && !listed.contains(&p.ppid) {
            return Err(ImagesError::Tree(format!(
                "task {}: its parent {} is not listed before it",
                p.pid, p.ppid
            )));
        }
        listed.insert(p.pid);
    }
    Ok(())
}

/// A file's path as a dump records it: absolute, each component a real name. A path with
/// `.` or `..` (which no dump writes) could reach past the tree's root once joined to it.
fn check_path(id: u32, path: &str) -> Result<(), ImagesError> {
    let plain = path.starts_with('/')
        && !path.contains('\0')
        && path.split('/').all(|c| c != "." && c != "..");
    if plain {
        return Ok(());
    }
    Err(ImagesError::Files(format!(
        "file {id}: path {path:?} is not a plain absolute path"
    )))
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
    /// Ids of tasks in pid namespaces nested below the root's.
    pub pids: crate::pid_levels::PidLevels,
}

impl DumpImages {
    pub fn root(&self) -> &TaskImages {
        &self.tasks[0]
    }

    /// The id `observer` (a task of the tree) sees task or thread `id` by: the images' own
    /// unless they live in pid namespaces nested below the root's.
    pub fn seen_by(&self, id: i32, observer: i32) -> i32 {
        self.pids
            .seen_at(id, self.pids.depth(observer))
            .unwrap_or(id)
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
    check_ids(&pstree)?;
    check_parents(&pstree)?;
    let pids = crate::pid_levels::PidLevels::read(dir, &pstree)?;
    let fd_limit = nr_open();
    let mut files = BTreeMap::new();
    if let Some(mut img) = ImageReader::open_if_exists(dir, &ImageKind::FILES, None)? {
        for f in img.read_all::<FileEntry>()? {
            if let Some(reg) = &f.reg {
                check_path(f.id, &reg.name)?;
            }
            match files.entry(f.id) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(f);
                }
                // CRIU keeps a tun file twice: as the regular file it opens and as itself.
                std::collections::btree_map::Entry::Occupied(mut o) => {
                    let e = o.get_mut();
                    if f.r#type == FdTypes::Reg as i32 {
                        e.reg = f.reg;
                    } else {
                        let reg = e.reg.take();
                        *e = f;
                        e.reg = reg;
                    }
                }
            }
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
        check_fds(p.pid, &fds, fd_limit)?;
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
        pids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(pid: u32, threads: &[u32]) -> PstreeEntry {
        PstreeEntry {
            pid,
            ppid: 0,
            pgid: pid,
            sid: pid,
            threads: threads.to_vec(),
        }
    }

    #[test]
    fn hostile_trees_are_refused_naming_what_is_wrong() {
        assert!(check_ids(&[task(10, &[10, 11]), task(12, &[])]).is_ok());
        let outside = PstreeEntry {
            sid: 0,
            pgid: 0,
            ..task(1, &[1])
        };
        assert!(
            check_ids(&[outside]).is_ok(),
            "session led from outside the pid ns"
        );
        let err = |tree: &[PstreeEntry]| check_ids(tree).unwrap_err().to_string();
        assert!(err(&[task(0, &[0])]).contains("pid 0 is out of range"));
        assert!(err(&[task(4_000_000_000, &[])]).contains("out of range"));
        assert!(err(&[task(10, &[10, 1 << 23])]).contains("thread 8388608 is out of range"));
        assert!(err(&[task(10, &[10, 10])]).contains("10 named twice"));
        assert!(err(&[task(10, &[10, 11]), task(11, &[])]).contains("11 named twice"));
        assert!(err(&[task(10, &[11])]).contains("do not include it"));
    }

    #[test]
    fn a_tree_with_a_cycle_or_a_parent_outside_it_is_refused() {
        let child = |pid, ppid| PstreeEntry {
            ppid,
            ..task(pid, &[])
        };
        assert!(check_parents(&[task(10, &[]), child(11, 10), child(12, 11)]).is_ok());
        let err = |tree: &[PstreeEntry]| check_parents(tree).unwrap_err().to_string();
        // 11 and 12 are each other's parent.
        let cycle = err(&[task(10, &[]), child(11, 12), child(12, 11)]);
        assert!(
            cycle.contains("task 11: its parent 12 is not listed before it"),
            "{cycle}"
        );
        assert!(err(&[task(10, &[]), child(11, 99)]).contains("parent 99"));
    }

    #[test]
    fn paths_that_could_leave_the_root_are_refused() {
        for good in ["/", "/etc/passwd", "/tmp/a..b/.hidden", "/x/...", "/dir/"] {
            assert!(check_path(1, good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "etc/passwd",
            "/../etc/shadow",
            "/tmp/../../etc",
            "/a/./b",
            "/a/..",
            "/a\0b",
        ] {
            let e = check_path(5, bad).unwrap_err().to_string();
            assert!(
                e.contains("file 5") && e.contains("not a plain absolute path"),
                "{e}"
            );
        }
    }

    #[test]
    fn fds_past_the_limit_or_named_twice_are_refused() {
        let fd = |fd: u32| FdinfoEntry {
            fd,
            ..Default::default()
        };
        assert!(check_fds(7, &[fd(0), fd(1), fd(1023)], 1024).is_ok());
        let err = |fds: &[FdinfoEntry]| check_fds(7, fds, 1024).unwrap_err().to_string();
        assert!(err(&[fd(0), fd(1024)]).contains("pid 7: fd 1024 is past the limit of 1024"));
        assert!(err(&[fd(3), fd(3)]).contains("fd 3 is named twice"));
    }
}
