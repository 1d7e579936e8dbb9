//! The restore half: `--manage-cgroups` modes, as CRIU means them.
//!
//! | mode | missing directory | existing directory |
//! | --- | --- | --- |
//! | `ignore` | nothing is done at all: tasks stay where criu is | |
//! | `none` | error | used; properties and permissions untouched |
//! | `props` | error | used; properties and permissions restored |
//! | `soft` (default) | created with its properties | used; permissions only |
//! | `full` | created with its properties | used; properties and permissions restored |
//! | `strict` | created with its properties | error |
//!
//! Order (CRIU's): [`CgroupRestore::prepare`] creates directories before any task exists,
//! setting at once the properties that cannot be set later (cpuset, devices, some memory
//! ones, `cgroup.type`); [`CgroupRestore::move_process`] puts each task in its set's cgroups
//! as soon as it exists (its children inherit them); [`CgroupRestore::move_thread`] puts a
//! thread whose set differs into the threaded hierarchies; [`CgroupRestore::set_properties`]
//! sets the rest once every task is in; [`CgroupRestore::restore_freezer_state`] comes last.
//! On failure [`CgroupRestore::abort`] removes the directories criu created.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criu_proto::images::{
    CgControllerEntry, CgMemberEntry, CgroupDirEntry, CgroupEntry, CgroupPerms, CgroupPropEntry,
    CoreEntry,
};
use criu_proto::{ImageKind, ImageReader};

use crate::hierarchy::{Hierarchies, HierarchyError};
use crate::parse;
use crate::props::is_special;
use crate::Mode;

#[derive(Debug, thiserror::Error)]
pub enum CgroupRestoreError {
    #[error("cgroup.img: {0}")]
    Image(#[from] criu_proto::Error),
    #[error(transparent)]
    Hierarchy(#[from] HierarchyError),
    #[error("cgroup set {set} of pid {pid} is not in cgroup.img")]
    NoSet { pid: i32, set: u32 },
    #[error("cgroup {name}:{path}: no controller entry in cgroup.img for it")]
    NoController { name: String, path: String },
    #[error("cgroup dir {path} does not exist (--manage-cgroups={mode} creates none)")]
    Missing { path: PathBuf, mode: &'static str },
    #[error("cgroup dir {path} already exists (--manage-cgroups=strict)")]
    Exists { path: PathBuf },
    #[error("cgroup dir {path}: {what}: {source}")]
    Dir {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("cgroup property {path}: cannot set {value:?}: {source}")]
    Prop {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("cgroup property {path}: bad value {value:?}")]
    BadValue { path: PathBuf, value: String },
    #[error("cannot move {what} {id} into {path}: {source}")]
    Move {
        what: &'static str,
        id: i32,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--cgroup-root: controller {cnames} is given two roots: {a} and {b}")]
    Roots {
        cnames: String,
        a: String,
        b: String,
    },
    #[error("cgroup {name}:{path}: bad cgroup namespace prefix length {prefix}")]
    BadPrefix {
        name: String,
        path: String,
        prefix: u32,
    },
    #[error("cannot read criu's own cgroups: {0}")]
    Own(#[from] parse::ParseError),
}

type Result<T> = std::result::Result<T, CgroupRestoreError>;

/// What the restore is told.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub mode: Mode,
    /// `--cgroup-root [controller:]/path`.
    pub roots: Vec<(Option<String>, String)>,
    /// `--cgroup-yard`.
    pub yard: Option<PathBuf>,
}

/// The set a task's core names (0: none, as zombies and helpers have).
pub fn core_set(core: &CoreEntry) -> u32 {
    core.thread_core
        .as_ref()
        .and_then(|t| t.cg_set)
        .or_else(|| core.tc.as_ref().and_then(|t| t.cg_set))
        .unwrap_or(0)
}

pub struct CgroupRestore {
    mode: Mode,
    sets: BTreeMap<u32, Vec<CgMemberEntry>>,
    controllers: Vec<CgControllerEntry>,
    /// criu's set at dump (the inventory's root_cg_set): tasks in it stay in criu's cgroups.
    root_set: u32,
    /// criu's own cgroups now, for a task that was in criu's set while its parent was not.
    own: Vec<parse::Member>,
    hier: Hierarchies,
    created: Vec<PathBuf>,
    freezer: Option<(PathBuf, CgroupPropEntry)>,
    /// (controller, directory) of hierarchy roots `--cgroup-root` moved: their saved
    /// properties are a root cgroup's, not set on the new one.
    moved_roots: Vec<(usize, usize)>,
}

impl CgroupRestore {
    /// Reads `cgroup.img` and, unless the mode is `ignore`, makes the directories.
    pub fn prepare(
        images_dir: &Path,
        root_set: Option<u32>,
        opts: &RestoreOptions,
    ) -> Result<CgroupRestore> {
        let entry = match ImageReader::open_if_exists(images_dir, &ImageKind::CGROUP, None)? {
            Some(mut r) => r.read::<CgroupEntry>()?.unwrap_or_default(),
            None => CgroupEntry::default(),
        };
        let own = parse::read_file(Path::new("/proc/self/cgroup"), |_| true)?;
        Self::prepare_entry(entry, root_set, own, opts)
    }

    fn prepare_entry(
        mut entry: CgroupEntry,
        root_set: Option<u32>,
        own: Vec<parse::Member>,
        opts: &RestoreOptions,
    ) -> Result<CgroupRestore> {
        let moved_roots = rewrite_roots(&mut entry, &opts.roots)?;
        let mut me = CgroupRestore {
            mode: opts.mode,
            sets: entry.sets.into_iter().map(|s| (s.id, s.ctls)).collect(),
            controllers: entry.controllers,
            root_set: root_set.unwrap_or(0),
            own,
            hier: Hierarchies::new(opts.yard.clone()),
            created: Vec::new(),
            freezer: None,
            moved_roots,
        };
        if me.mode == Mode::Ignore || me.sets.is_empty() {
            return Ok(me);
        }
        tracing::info!(
            "cgroups: {} set(s), {} controller(s), mode {}",
            me.sets.len(),
            me.controllers.len(),
            me.mode.name()
        );
        let mut controllers = std::mem::take(&mut me.controllers);
        let result = controllers.iter_mut().try_for_each(|c| {
            let base = me.hier.root(&c.cnames)?;
            me.prepare_dirs(&base, &mut c.dirs)
        });
        me.controllers = controllers;
        if let Err(e) = result {
            me.abort();
            return Err(e);
        }
        Ok(me)
    }

    /// Whether anything is to be done for tasks.
    pub fn active(&self) -> bool {
        self.mode != Mode::Ignore && !self.sets.is_empty()
    }

    pub fn root_set(&self) -> u32 {
        self.root_set
    }

    fn prepare_dirs(&mut self, parent: &Path, dirs: &mut [CgroupDirEntry]) -> Result<()> {
        for e in dirs {
            let path = join(parent, &e.dir_name);
            let exists = match std::fs::symlink_metadata(&path) {
                Ok(_) => true,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => false,
                Err(source) => {
                    return Err(CgroupRestoreError::Dir {
                        path,
                        what: "cannot stat",
                        source,
                    })
                }
            };
            if !exists {
                if matches!(self.mode, Mode::None | Mode::Props) {
                    return Err(CgroupRestoreError::Missing {
                        path,
                        mode: self.mode.name(),
                    });
                }
                self.mkdir_p(&path)?;
                tracing::info!("cgroups: created {}", path.display());
                set_perms(&path, e.dir_perms.as_ref())?;
                for p in e.properties.iter_mut().filter(|p| is_special(&p.name)) {
                    restore_special(&path, p)?;
                }
            } else {
                tracing::info!("cgroups: {} exists", path.display());
                if self.mode == Mode::Strict {
                    return Err(CgroupRestoreError::Exists { path });
                }
                if matches!(self.mode, Mode::Soft | Mode::None) {
                    e.properties.clear();
                }
                if self.mode != Mode::None {
                    set_perms(&path, e.dir_perms.as_ref())?;
                }
            }
            self.prepare_dirs(&path, &mut e.children)?;
        }
        Ok(())
    }

    fn mkdir_p(&mut self, path: &Path) -> Result<()> {
        let mut missing = Vec::new();
        let mut p = path;
        while !p.exists() {
            missing.push(p.to_path_buf());
            match p.parent() {
                Some(up) => p = up,
                None => break,
            }
        }
        for dir in missing.into_iter().rev() {
            std::fs::create_dir(&dir).map_err(|source| CgroupRestoreError::Dir {
                path: dir.clone(),
                what: "cannot create",
                source,
            })?;
            self.created.push(dir);
        }
        Ok(())
    }

    fn controller_of(&self, name: &str) -> Option<&CgControllerEntry> {
        self.controllers
            .iter()
            .find(|c| parse::contains(&c.cnames, name))
    }

    /// The members of set `set`; criu's set at dump means criu's cgroups now.
    /// Where the hierarchy of member `m`'s controller has its root here.
    fn hierarchy_root(&mut self, m: &CgMemberEntry) -> Result<PathBuf> {
        let c = self
            .controller_of(&m.name)
            .ok_or_else(|| CgroupRestoreError::NoController {
                name: m.name.clone(),
                path: m.path.clone(),
            })?;
        let cnames = c.cnames.clone();
        Ok(self.hier.root(&cnames)?)
    }

    fn members(&self, pid: i32, set: u32) -> Result<Vec<CgMemberEntry>> {
        if let Some(m) = self.sets.get(&set) {
            return Ok(m.clone());
        }
        if set == self.root_set {
            return Ok(self
                .own
                .iter()
                .filter(|m| self.controller_of(&m.name).is_some())
                .map(|m| CgMemberEntry {
                    name: m.name.clone(),
                    path: m.path.clone(),
                    cgns_prefix: None,
                })
                .collect());
        }
        Err(CgroupRestoreError::NoSet { pid, set })
    }

    /// Moves process `pid` (all its threads) into set `set`'s cgroups, unless it is already
    /// in them: `inherited` is the set of the task that made it (criu's set for the root).
    pub fn move_process(&mut self, pid: i32, set: u32, inherited: u32) -> Result<()> {
        if !self.active() || set == 0 || set == inherited {
            return Ok(());
        }
        tracing::info!("cgroups: moving {pid} into set {set}");
        for m in self.members(pid, set)? {
            let base = self.hierarchy_root(&m)?;
            let file = join(&base, &m.path).join("cgroup.procs");
            write_id(&file, pid, "pid")?;
        }
        Ok(())
    }

    /// For a root task that had a cgroup namespace of its own, before it unshares one: moves
    /// process `pid` into the cgroups that were the namespace's root (each member's path up
    /// to its `cgns_prefix`; the hierarchy's root for a member seen the same from inside), so
    /// that [`Self::move_process`] afterwards puts it below that root. Nothing when the set is
    /// criu's (the namespace's root is where criu puts the task, as it was at dump).
    pub fn move_to_ns_root(&mut self, pid: i32, set: u32, inherited: u32) -> Result<()> {
        if !self.active() || set == 0 || set == inherited {
            return Ok(());
        }
        for m in self.members(pid, set)? {
            let root = ns_root_of(&m).ok_or_else(|| CgroupRestoreError::BadPrefix {
                name: m.name.clone(),
                path: m.path.clone(),
                prefix: m.cgns_prefix.unwrap_or(0),
            })?;
            let base = self.hierarchy_root(&m)?;
            tracing::info!("cgroups: {pid}: cgroup namespace root {}:{root}", m.name);
            write_id(&join(&base, root).join("cgroup.procs"), pid, "pid")?;
        }
        Ok(())
    }

    /// Moves thread `tid` into set `set`'s threaded hierarchies (v1 `tasks`, v2
    /// `cgroup.threads`) when its set differs from its process's.
    pub fn move_thread(&mut self, tid: i32, set: u32, process_set: u32) -> Result<()> {
        if !self.active() || set == 0 || set == process_set {
            return Ok(());
        }
        tracing::info!("cgroups: moving thread {tid} into set {set}");
        for m in self.members(tid, set)? {
            let Some(c) = self.controller_of(&m.name) else {
                return Err(CgroupRestoreError::NoController {
                    name: m.name.clone(),
                    path: m.path.clone(),
                });
            };
            if c.is_threaded != Some(true) {
                continue;
            }
            let cnames = c.cnames.clone();
            let v2 = cnames.first().is_some_and(String::is_empty);
            let base = self.hier.root(&cnames)?;
            let file = join(&base, &m.path).join(if v2 { "cgroup.threads" } else { "tasks" });
            write_id(&file, tid, "thread")?;
        }
        Ok(())
    }

    /// The properties that wait until every task is in (CRIU: before the post-restore
    /// scripts); `freezer.state` is kept for [`Self::restore_freezer_state`].
    pub fn set_properties(&mut self) -> Result<()> {
        if !self.active() {
            return Ok(());
        }
        let controllers = std::mem::take(&mut self.controllers);
        let result = controllers.iter().enumerate().try_for_each(|(i, c)| {
            let base = self.hier.root(&c.cnames)?;
            for (j, d) in c.dirs.iter().enumerate() {
                if self.moved_roots.contains(&(i, j)) {
                    tracing::info!(
                        "cgroups: {}: a hierarchy root's properties are not set on {}",
                        c.cnames.join(","),
                        d.dir_name
                    );
                    self.dir_properties(&join(&base, &d.dir_name), &d.children)?;
                } else {
                    self.dir_properties(&base, std::slice::from_ref(d))?;
                }
            }
            Ok(())
        });
        self.controllers = controllers;
        result
    }

    fn dir_properties(&mut self, parent: &Path, dirs: &[CgroupDirEntry]) -> Result<()> {
        for e in dirs {
            // The hierarchy's root keeps its properties.
            let path = if e.dir_name.is_empty() {
                parent.to_path_buf()
            } else {
                let path = join(parent, &e.dir_name);
                for p in &e.properties {
                    if p.name == "freezer.state" {
                        self.freezer.get_or_insert((path.clone(), p.clone()));
                    } else if is_special(&p.name) {
                    } else if p.name == "net_prio.ifpriomap" {
                        restore_ifpriomap(&path, p)?;
                    } else {
                        restore_prop(&path, p, false, false)?;
                    }
                }
                path
            };
            self.dir_properties(&path, &e.children)?;
        }
        Ok(())
    }

    /// Puts back the freezer state saved with `--freeze-cgroup`.
    pub fn restore_freezer_state(&mut self) -> Result<()> {
        match self.freezer.take() {
            Some((dir, p)) if self.active() => restore_prop(&dir, &p, false, false),
            _ => Ok(()),
        }
    }

    /// Removes the directories criu created (deepest first); the restore failed. Tasks just
    /// killed may keep a cgroup busy a moment.
    pub fn abort(&mut self) {
        for dir in self.created.drain(..).rev() {
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => {
                        tracing::info!("cgroups: removed {}", dir.display());
                        break;
                    }
                    Err(e)
                        if e.raw_os_error() == Some(libc_ebusy()) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => {
                        tracing::warn!("cgroups: cannot remove {}: {e}", dir.display());
                        break;
                    }
                }
            }
        }
    }
}

/// The part of a member's path above its cgroup namespace's root ("/" without a prefix);
/// None for a prefix longer than the path or not ending at a path component.
fn ns_root_of(m: &CgMemberEntry) -> Option<&str> {
    let n = m.cgns_prefix.unwrap_or(0) as usize;
    if n == 0 {
        return Some("/");
    }
    let root = m.path.get(..n)?;
    let rest = &m.path[n..];
    (rest.is_empty() || rest.starts_with('/')).then_some(root)
}

fn libc_ebusy() -> i32 {
    nix::errno::Errno::EBUSY as i32
}

/// `base` joined with a path from the image (which may start with '/').
fn join(base: &Path, rel: &str) -> PathBuf {
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

fn write_id(file: &Path, id: i32, what: &'static str) -> Result<()> {
    std::fs::write(file, id.to_string()).map_err(|source| CgroupRestoreError::Move {
        what,
        id,
        path: file.to_path_buf(),
        source,
    })
}

fn set_perms(path: &Path, perms: Option<&CgroupPerms>) -> Result<()> {
    let Some(p) = perms else { return Ok(()) };
    let err = |what| {
        move |source| CgroupRestoreError::Dir {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    std::os::unix::fs::chown(path, Some(p.uid), Some(p.gid)).map_err(err("cannot chown"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(p.mode & 0o7777))
        .map_err(err("cannot chmod"))
}

/// Writes one property of the directory `dir` (with the file's permissions first).
/// `split_lines` writes each line on its own (the kernel reads one rule per write);
/// `skip_fails` goes on past lines the kernel refuses.
fn restore_prop(
    dir: &Path,
    p: &CgroupPropEntry,
    split_lines: bool,
    skip_fails: bool,
) -> Result<()> {
    use std::io::{Read, Write};
    let path = dir.join(&p.name);
    let perr = |source| CgroupRestoreError::Prop {
        path: path.clone(),
        value: p.value.clone(),
        source,
    };
    tracing::info!("cgroups: {} = {:?}", path.display(), p.value);
    let subtree = p.name == "cgroup.subtree_control";
    let mut f = std::fs::OpenOptions::new()
        .read(subtree)
        .write(true)
        .open(&path)
        .map_err(perr)?;
    if let Some(perms) = &p.perms {
        std::os::unix::fs::fchown(&f, Some(perms.uid), Some(perms.gid)).map_err(perr)?;
        f.set_permissions(std::fs::Permissions::from_mode(perms.mode & 0o7777))
            .map_err(perr)?;
    }
    if p.name == "cgroup.procs" || p.name == "tasks" {
        return Ok(());
    }
    if subtree {
        // Disable what is enabled now, enable what was.
        let mut now = String::new();
        f.read_to_string(&mut now).map_err(perr)?;
        let mut words: Vec<String> = now.split_whitespace().map(|w| format!("-{w}")).collect();
        words.extend(p.value.split_whitespace().map(|w| format!("+{w}")));
        if words.is_empty() {
            return Ok(());
        }
        return f.write_all(words.join(" ").as_bytes()).map_err(perr);
    }
    if p.name == "cgroup.type" && p.value != "threaded" {
        return Ok(());
    }
    if split_lines {
        for line in p.value.split('\n') {
            if let Err(e) = f.write_all(line.as_bytes()) {
                if !skip_fails {
                    return Err(CgroupRestoreError::Prop {
                        path: path.clone(),
                        value: line.to_string(),
                        source: e,
                    });
                }
            }
        }
        return Ok(());
    }
    match f.write_all(p.value.as_bytes()) {
        Ok(()) => Ok(()),
        // Deprecated by the kernel (58056f77502f3): writes fail with EOPNOTSUPP.
        Err(e)
            if p.name == "memory.kmem.limit_in_bytes"
                && e.raw_os_error() == Some(nix::errno::Errno::EOPNOTSUPP as i32) =>
        {
            Ok(())
        }
        Err(e) => Err(perr(e)),
    }
}

/// The properties set as soon as a directory is created.
fn restore_special(dir: &Path, p: &mut CgroupPropEntry) -> Result<()> {
    match (p.name.as_str(), p.value.as_str()) {
        ("memory.swappiness", "60") | ("memory.oom_control", "0") => Ok(()),
        ("devices.list", _) => {
            // Only the allow list can be read: deny everything, then allow each rule.
            if let Some(perms) = p.perms.as_mut() {
                perms.mode = 0o200;
            }
            let deny = CgroupPropEntry {
                name: "devices.deny".into(),
                value: "a".into(),
                perms: p.perms,
            };
            restore_prop(dir, &deny, false, false)?;
            if p.value.is_empty() {
                return Ok(());
            }
            let allow = CgroupPropEntry {
                name: "devices.allow".into(),
                value: p.value.clone(),
                perms: p.perms,
            };
            restore_prop(dir, &allow, true, false)
        }
        _ => restore_prop(dir, p, false, false),
    }
}

/// `net_prio.ifpriomap`: only interfaces with a priority (0 is every new cgroup's), one per
/// write; devices this host lacks are skipped.
fn restore_ifpriomap(dir: &Path, p: &CgroupPropEntry) -> Result<()> {
    let mut keep = Vec::new();
    for line in p.value.split('\n').filter(|l| !l.is_empty()) {
        let Some((_, prio)) = line.split_once(' ') else {
            return Err(CgroupRestoreError::BadValue {
                path: dir.join(&p.name),
                value: line.to_string(),
            });
        };
        if prio.trim().parse::<i64>().unwrap_or(0) != 0 {
            keep.push(line);
        }
    }
    if keep.is_empty() {
        return Ok(());
    }
    let filtered = CgroupPropEntry {
        value: keep.join("\n"),
        ..p.clone()
    };
    restore_prop(dir, &filtered, true, true)
}

/// `--cgroup-root`: the sets' paths and the top directories move under the new roots (as
/// CRIU rewrites them). Returns the (controller, directory) indices of hierarchy roots that
/// moved.
fn rewrite_roots(
    entry: &mut CgroupEntry,
    roots: &[(Option<String>, String)],
) -> Result<Vec<(usize, usize)>> {
    let mut moved = Vec::new();
    if roots.is_empty() {
        return Ok(moved);
    }
    let global = roots
        .iter()
        .rev()
        .find(|(c, _)| c.is_none())
        .map(|(_, r)| r.clone());
    let CgroupEntry { sets, controllers } = entry;
    for (i, ctrl) in controllers.iter_mut().enumerate() {
        let mut newroot: Option<String> = None;
        for (c, r) in roots {
            let Some(c) = c else { continue };
            if parse::contains(&ctrl.cnames, c)
                || ctrl.cnames.iter().any(|n| c.split(',').any(|x| x == n))
            {
                if let Some(prev) = newroot.as_ref().filter(|p| *p != r) {
                    return Err(CgroupRestoreError::Roots {
                        cnames: ctrl.cnames.join(","),
                        a: prev.clone(),
                        b: r.clone(),
                    });
                }
                newroot = Some(r.clone());
            }
        }
        let Some(newroot) = newroot.or_else(|| global.clone()) else {
            continue;
        };
        for (j, dir) in ctrl.dirs.iter_mut().enumerate() {
            let old = dir.dir_name.clone();
            let mut renamed: Option<String> = None;
            for set in sets.iter_mut() {
                for m in set.ctls.iter_mut() {
                    let sub = m.path.get(1..).unwrap_or("");
                    if !parse::contains(&ctrl.cnames, &m.name) || !sub.starts_with(&old) {
                        continue;
                    }
                    // In a cgroup namespace the new root replaces the namespace's root.
                    let prefix = m.cgns_prefix.unwrap_or(0) as usize;
                    if prefix > 0 {
                        let rest = m.path.get(prefix..).unwrap_or("");
                        m.path = format!("{newroot}{rest}");
                        m.cgns_prefix = Some(newroot.len() as u32);
                        renamed.get_or_insert_with(|| {
                            format!("{newroot}{}", old.get(prefix - 1..).unwrap_or(""))
                        });
                        continue;
                    }
                    let rest = m.path.get(old.len() + 1..).unwrap_or("");
                    m.path = format!("{newroot}{rest}");
                    renamed.get_or_insert_with(|| newroot.clone());
                }
            }
            if let Some(new_name) = renamed {
                if old.is_empty() {
                    moved.push((i, j));
                }
                dir.dir_name = new_name;
            }
        }
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use criu_proto::images::CgSetEntry;

    fn member(name: &str, path: &str) -> CgMemberEntry {
        CgMemberEntry {
            name: name.into(),
            path: path.into(),
            cgns_prefix: None,
        }
    }

    fn dir(name: &str, children: Vec<CgroupDirEntry>) -> CgroupDirEntry {
        CgroupDirEntry {
            dir_name: name.into(),
            children,
            properties: Vec::new(),
            dir_perms: None,
        }
    }

    fn entry() -> CgroupEntry {
        CgroupEntry {
            sets: vec![CgSetEntry {
                id: 2,
                ctls: vec![
                    member("name=zdtmtst", "/prefix/oldroot"),
                    member("name=zdtmtst.defaultroot", "/prefix/oldroot"),
                    member("pids", "/"),
                ],
            }],
            controllers: vec![
                CgControllerEntry {
                    cnames: vec!["pids".into()],
                    dirs: vec![dir("", vec![dir("x", vec![])])],
                    is_threaded: Some(true),
                },
                CgControllerEntry {
                    cnames: vec!["name=zdtmtst".into()],
                    dirs: vec![dir("prefix", vec![dir("oldroot", vec![])])],
                    is_threaded: Some(true),
                },
                CgControllerEntry {
                    cnames: vec!["name=zdtmtst.defaultroot".into()],
                    dirs: vec![dir("prefix/oldroot", vec![])],
                    is_threaded: Some(true),
                },
            ],
        }
    }

    #[test]
    fn cgroup_root_rewrites_like_criu() {
        // zdtm's cgroup02: --cgroup-root /newroot --cgroup-root name=zdtmtst:/prefix
        let mut e = entry();
        let moved = rewrite_roots(
            &mut e,
            &[
                (None, "/newroot".into()),
                (Some("name=zdtmtst".into()), "/prefix".into()),
            ],
        )
        .unwrap();
        assert_eq!(moved, [(0, 0)]);
        let ctls = &e.sets[0].ctls;
        assert_eq!(ctls[0].path, "/prefix/oldroot");
        assert_eq!(ctls[1].path, "/newroot");
        assert_eq!(ctls[2].path, "/newroot");
        assert_eq!(e.controllers[1].dirs[0].dir_name, "/prefix");
        assert_eq!(e.controllers[2].dirs[0].dir_name, "/newroot");
        assert_eq!(e.controllers[0].dirs[0].dir_name, "/newroot");
        assert_eq!(e.controllers[0].dirs[0].children[0].dir_name, "x");
    }

    #[test]
    fn cgroup_namespace_roots() {
        let mut m = member("pids", "/test/in");
        assert_eq!(ns_root_of(&m), Some("/"));
        m.cgns_prefix = Some(5);
        assert_eq!(ns_root_of(&m), Some("/test"));
        m.cgns_prefix = Some(3);
        assert_eq!(ns_root_of(&m), None);
        m.cgns_prefix = Some(99);
        assert_eq!(ns_root_of(&m), None);
        m.cgns_prefix = Some(8);
        assert_eq!(ns_root_of(&m), Some("/test/in"));
        // --cgroup-root puts the new root where the namespace's root was.
        let mut e = CgroupEntry {
            sets: vec![CgSetEntry {
                id: 2,
                ctls: vec![CgMemberEntry {
                    cgns_prefix: Some(5),
                    ..member("pids", "/test/in")
                }],
            }],
            controllers: vec![CgControllerEntry {
                cnames: vec!["pids".into()],
                dirs: vec![dir("test/in", vec![])],
                is_threaded: Some(false),
            }],
        };
        rewrite_roots(&mut e, &[(None, "/new/root".into())]).unwrap();
        let m = &e.sets[0].ctls[0];
        assert_eq!(m.path, "/new/root/in");
        assert_eq!(m.cgns_prefix, Some(9));
        assert_eq!(ns_root_of(m), Some("/new/root"));
        assert_eq!(e.controllers[0].dirs[0].dir_name, "/new/root/in");
    }

    #[test]
    fn conflicting_roots_fail() {
        let mut e = entry();
        let err = rewrite_roots(
            &mut e,
            &[
                (Some("pids".into()), "/a".into()),
                (Some("pids".into()), "/b".into()),
            ],
        )
        .unwrap_err();
        assert!(err.to_string().contains("pids"), "{err}");
    }

    #[test]
    fn properties_written_as_criu_writes_them() {
        let d = tempfile::tempdir().unwrap();
        let p = |name: &str, value: &str| CgroupPropEntry {
            name: name.into(),
            value: value.into(),
            perms: None,
        };
        std::fs::write(d.path().join("cgroup.subtree_control"), "memory pids").unwrap();
        restore_prop(
            d.path(),
            &p("cgroup.subtree_control", "cpu pids"),
            false,
            false,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("cgroup.subtree_control")).unwrap(),
            "memory pids-memory -pids +cpu +pids"
        );
        std::fs::write(d.path().join("cgroup.type"), "").unwrap();
        restore_prop(d.path(), &p("cgroup.type", "domain"), false, false).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("cgroup.type")).unwrap(),
            ""
        );
        std::fs::write(d.path().join("net_prio.ifpriomap"), "").unwrap();
        restore_ifpriomap(d.path(), &p("net_prio.ifpriomap", "lo 0\neth0 5\neth1 0")).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("net_prio.ifpriomap")).unwrap(),
            "eth0 5"
        );
        let err = restore_prop(d.path(), &p("pids.max", "3"), false, false).unwrap_err();
        assert!(err.to_string().contains("pids.max"), "{err}");
    }

    #[test]
    fn modes_on_plain_directories() {
        let base = tempfile::tempdir().unwrap();
        let yard = base.path().to_path_buf();
        std::fs::create_dir_all(yard.join("pids/exists")).unwrap();
        let e = |name: &str| CgroupEntry {
            sets: vec![CgSetEntry {
                id: 2,
                ctls: vec![member("pids", &format!("/{name}"))],
            }],
            controllers: vec![CgControllerEntry {
                cnames: vec!["pids".into()],
                dirs: vec![dir(name, vec![dir("sub", vec![])])],
                is_threaded: Some(true),
            }],
        };
        let opts = |mode| RestoreOptions {
            mode,
            roots: Vec::new(),
            yard: Some(yard.clone()),
        };
        // none and props need the directories.
        let err = CgroupRestore::prepare_entry(e("new"), Some(1), Vec::new(), &opts(Mode::Props))
            .err()
            .unwrap();
        assert!(matches!(err, CgroupRestoreError::Missing { .. }), "{err}");
        // strict refuses an existing one.
        let err =
            CgroupRestore::prepare_entry(e("exists"), Some(1), Vec::new(), &opts(Mode::Strict))
                .err()
                .unwrap();
        assert!(matches!(err, CgroupRestoreError::Exists { .. }), "{err}");
        // soft creates, and abort removes what it created.
        let mut r =
            CgroupRestore::prepare_entry(e("new"), Some(1), Vec::new(), &opts(Mode::Soft)).unwrap();
        assert!(yard.join("pids/new/sub").is_dir());
        r.abort();
        assert!(!yard.join("pids/new").exists());
        assert!(yard.join("pids/exists").is_dir());
        // ignore does nothing.
        let r = CgroupRestore::prepare_entry(e("new"), Some(1), Vec::new(), &opts(Mode::Ignore))
            .unwrap();
        assert!(!r.active());
        assert!(!yard.join("pids/new").exists());
    }
}
