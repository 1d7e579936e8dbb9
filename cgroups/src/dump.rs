//! The dump half: every thread's cgroups as numbered sets, the directories under each set's
//! cgroups with their properties, written as `cgroup.img`.
//!
//! Sets are numbered in the order they are first seen, criu's own first (set 1, the
//! inventory's `root_cg_set`); a task in criu's set is left where the restore puts it. A new
//! set's cgroups are walked (each with its subdirectories, once per hierarchy) when the set
//! is first seen, unless the mode is `ignore`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use criu_proto::images::{
    CgControllerEntry, CgMemberEntry, CgSetEntry, CgroupDirEntry, CgroupEntry, CgroupPerms,
    CgroupPropEntry,
};
use criu_proto::{ImageKind, ImageWriter};

use crate::hierarchy::{Hierarchies, HierarchyError};
use crate::parse::{self, Member, ParseError};
use crate::props::{PropTable, GLOBAL_V1, GLOBAL_V2};
use crate::Mode;

#[derive(Debug, thiserror::Error)]
pub enum CgroupDumpError {
    #[error("pid {pid}: cgroups: {source}")]
    Parse { pid: i32, source: ParseError },
    #[error("pid {pid}: cgroup controller {name:?} is not one of criu's hierarchies")]
    UnknownController { pid: i32, name: String },
    #[error("pid {pid}: {source}")]
    Hierarchy { pid: i32, source: HierarchyError },
    #[error("cgroup {path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("cgroup property {path}: cannot parse {value:?}")]
    Value { path: PathBuf, value: String },
    #[error(
        "pid {pid}: cgroup {name}:{path} is above the tree's cgroup namespace root (its first \
         {prefix} bytes)"
    )]
    AboveNsRoot {
        pid: i32,
        name: String,
        path: String,
        prefix: u32,
    },
    #[error("writing cgroup.img: {0}")]
    Image(#[from] criu_proto::Error),
}

type Result<T> = std::result::Result<T, CgroupDumpError>;

/// What the dump is told.
#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    /// `--manage-cgroups`: with `ignore` no directory is walked.
    pub mode: Mode,
    /// `--cgroup-props`, `--cgroup-props-file`.
    pub props: PropTable,
    /// `--cgroup-dump-controller`: only these controller names (all when empty).
    pub controllers: Vec<String>,
    /// `--cgroup-root [controller:]/path`: where the walk of a hierarchy starts instead of
    /// the set's cgroup.
    pub roots: Vec<(Option<String>, String)>,
    /// `--cgroup-yard`.
    pub yard: Option<PathBuf>,
    /// `--freeze-cgroup`: the freezer's state before criu froze it (`THAWED` or `FROZEN`),
    /// saved on the freezer hierarchy's first directory.
    pub freezer_state: Option<String>,
}

#[derive(Debug, Clone)]
struct Prop {
    name: String,
    value: String,
    perms: CgroupPerms,
}

#[derive(Debug, Clone)]
struct Dir {
    /// From the hierarchy's root: "/" or "/a/b".
    path: String,
    perms: CgroupPerms,
    props: Vec<Prop>,
    children: Vec<Dir>,
}

#[derive(Debug, Clone)]
struct Controller {
    cnames: Vec<String>,
    heads: Vec<Dir>,
    is_threaded: bool,
}

#[derive(Debug, Clone)]
struct Set {
    id: u32,
    members: Vec<Member>,
}

/// Collects the tree's cgroup sets; the supervisor asks for each thread in pstree order.
pub struct CgroupDump {
    opts: DumpOptions,
    sets: Vec<Set>,
    criu_set: u32,
    root_set: Option<u32>,
    controllers: Vec<Controller>,
    hier: Hierarchies,
}

impl CgroupDump {
    /// Reads criu's own cgroups: its set is set 1, and its hierarchies are the controllers.
    pub fn new(opts: DumpOptions) -> Result<CgroupDump> {
        let me = std::process::id() as i32;
        let path = Path::new("/proc/self/cgroup");
        let text = std::fs::read_to_string(path).map_err(|source| CgroupDumpError::Io {
            path: path.into(),
            what: "cannot read",
            source,
        })?;
        let only = opts.controllers.clone();
        let keep = keep_fn(&only);
        let controllers = parse::hierarchies(&text, &keep)
            .into_iter()
            .map(|cnames| Controller {
                cnames,
                heads: Vec::new(),
                is_threaded: false,
            })
            .collect();
        let members = parse::parse_cgroup_file("/proc/self/cgroup", &text, &keep)
            .map_err(|source| CgroupDumpError::Parse { pid: me, source })?;
        let hier = Hierarchies::new(opts.yard.clone());
        Ok(CgroupDump {
            opts,
            sets: vec![Set { id: 1, members }],
            criu_set: 1,
            root_set: None,
            controllers,
            hier,
        })
    }

    /// criu's set: the inventory's `root_cg_set`.
    pub fn criu_set(&self) -> u32 {
        self.criu_set
    }

    /// The set of thread `tid` of process `pid` (the first call is for the root task's
    /// leader); a new set's cgroups are walked now.
    pub fn thread(&mut self, pid: i32, tid: i32) -> Result<u32> {
        self.thread_seen(pid, tid, None)
    }

    /// As [`Self::thread`], for a thread of the root task in a cgroup namespace of its own:
    /// `inside` is its cgroup file as read from inside that namespace, which gives each
    /// member's namespace root (`cgns_prefix`). The other tasks' members take the root's
    /// prefixes (the tree has one cgroup namespace), as CRIU does.
    pub fn thread_seen(&mut self, pid: i32, tid: i32, inside: Option<&str>) -> Result<u32> {
        let only = self.opts.controllers.clone();
        let keep = keep_fn(&only);
        let mut members = parse::read_thread(pid, tid, &keep)
            .map_err(|source| CgroupDumpError::Parse { pid, source })?;
        let parse_err = |source| CgroupDumpError::Parse { pid, source };
        if let Some(text) = inside {
            let seen = parse::parse_cgroup_file("cgroup file seen inside", text, &keep)
                .map_err(parse_err)?;
            parse::set_cgns_prefixes(&mut members, &seen).map_err(parse_err)?;
        } else if let Some(root) = self.root_set {
            self.copy_root_prefixes(pid, root, &mut members)?;
        }
        if let Some(s) = self.sets.iter().find(|s| s.members == members) {
            self.root_set.get_or_insert(s.id);
            return Ok(s.id);
        }
        let id = self.sets.iter().map(|s| s.id).max().unwrap_or(0) + 1;
        tracing::info!("cgroups: pid {pid} tid {tid}: new set {id}");
        self.collect(pid, &members)?;
        self.sets.push(Set { id, members });
        self.root_set.get_or_insert(id);
        Ok(id)
    }

    fn copy_root_prefixes(&self, pid: i32, root: u32, members: &mut [Member]) -> Result<()> {
        let Some(set) = self.sets.iter().find(|s| s.id == root) else {
            return Ok(());
        };
        for m in members.iter_mut() {
            let Some(r) = set.members.iter().find(|r| r.name == m.name) else {
                continue;
            };
            if (m.path.len() as u64) < u64::from(r.cgns_prefix) {
                return Err(CgroupDumpError::AboveNsRoot {
                    pid,
                    name: m.name.clone(),
                    path: m.path.clone(),
                    prefix: r.cgns_prefix,
                });
            }
            m.cgns_prefix = r.cgns_prefix;
        }
        Ok(())
    }

    /// Walks the cgroups of a new set.
    fn collect(&mut self, pid: i32, members: &[Member]) -> Result<()> {
        for m in members {
            let idx = match self
                .controllers
                .iter()
                .position(|c| parse::contains(&c.cnames, &m.name))
            {
                Some(i) => i,
                None if m.name.starts_with("name=") => {
                    self.controllers.push(Controller {
                        cnames: vec![m.name.clone()],
                        heads: Vec::new(),
                        is_threaded: false,
                    });
                    self.controllers.len() - 1
                }
                None => {
                    return Err(CgroupDumpError::UnknownController {
                        pid,
                        name: m.name.clone(),
                    })
                }
            };
            if self.opts.mode == Mode::Ignore {
                continue;
            }
            let cnames = self.controllers[idx].cnames.clone();
            let base = self
                .hier
                .root(&cnames)
                .map_err(|source| CgroupDumpError::Hierarchy { pid, source })?;
            let mut start = m.path.clone();
            for (ctl, root) in &self.opts.roots {
                match ctl {
                    None => start = root.clone(),
                    Some(c) if *c == m.name => start = root.clone(),
                    Some(_) => {}
                }
            }
            let opts = &self.opts;
            let ctl = &mut self.controllers[idx];
            walk(&base, &start, ctl, &opts.props)?;
            if m.name == "freezer" {
                if let (Some(state), Some(head)) = (&opts.freezer_state, ctl.heads.first_mut()) {
                    let file = base
                        .join(head.path.trim_start_matches('/'))
                        .join("freezer.state");
                    let perms =
                        std::fs::metadata(&file)
                            .map(|md| perms_of(&md))
                            .unwrap_or(CgroupPerms {
                                mode: 0o100644,
                                uid: 0,
                                gid: 0,
                            });
                    head.props.retain(|p| p.name != "freezer.state");
                    head.props.push(Prop {
                        name: "freezer.state".into(),
                        value: state.clone(),
                        perms,
                    });
                }
            }
        }
        Ok(())
    }

    /// The image: every set but criu's, every controller with its directories. When every
    /// task is in criu's set, an image without entries (as CRIU leaves it).
    pub fn image(&self) -> Option<CgroupEntry> {
        if self.root_set.is_none_or(|r| r == self.criu_set) && self.sets.len() == 1 {
            return None;
        }
        Some(CgroupEntry {
            sets: self
                .sets
                .iter()
                .filter(|s| s.id != self.criu_set)
                .map(|s| CgSetEntry {
                    id: s.id,
                    ctls: s
                        .members
                        .iter()
                        .map(|m| CgMemberEntry {
                            name: m.name.clone(),
                            path: m.path.clone(),
                            cgns_prefix: (m.cgns_prefix > 0).then_some(m.cgns_prefix),
                        })
                        .collect(),
                })
                .collect(),
            controllers: self
                .controllers
                .iter()
                .map(|c| CgControllerEntry {
                    cnames: c.cnames.clone(),
                    dirs: dir_entries(&c.heads, 0),
                    is_threaded: Some(c.is_threaded),
                })
                .collect(),
        })
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let mut w = ImageWriter::create(dir, &ImageKind::CGROUP, None)?;
        if let Some(e) = self.image() {
            w.write(&e)?;
        }
        w.finish()?;
        Ok(())
    }
}

fn keep_fn(only: &[String]) -> impl Fn(&str) -> bool + '_ {
    move |name: &str| only.is_empty() || only.iter().any(|c| c == name)
}

fn perms_of(md: &std::fs::Metadata) -> CgroupPerms {
    CgroupPerms {
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
    }
}

/// Image entries of `dirs` whose parent's path has `poff` bytes: names relative to it.
fn dir_entries(dirs: &[Dir], poff: usize) -> Vec<CgroupDirEntry> {
    dirs.iter()
        .map(|d| {
            let mut name = &d.path[poff.min(d.path.len())..];
            if poff != 1 {
                name = name.strip_prefix('/').unwrap_or(name);
            }
            CgroupDirEntry {
                dir_name: name.to_string(),
                children: dir_entries(&d.children, d.path.len()),
                properties: d
                    .props
                    .iter()
                    .map(|p| CgroupPropEntry {
                        name: p.name.clone(),
                        value: p.value.clone(),
                        perms: Some(p.perms),
                    })
                    .collect(),
                dir_perms: Some(d.perms),
            }
        })
        .collect()
}

/// `path` is `dir` or below it.
fn is_sub(path: &str, dir: &str) -> bool {
    dir == "/"
        || path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

enum Found {
    Exact,
    Parent(Vec<usize>),
    None,
}

/// Where `path` goes among `dirs`: already there, under a directory (by index path), or a
/// new head.
fn find_dir(path: &str, dirs: &[Dir]) -> Found {
    for (i, d) in dirs.iter().enumerate() {
        if d.path == path {
            return Found::Exact;
        }
        if is_sub(path, &d.path) {
            return match find_dir(path, &d.children) {
                Found::None => Found::Parent(vec![i]),
                Found::Parent(mut rest) => {
                    rest.insert(0, i);
                    Found::Parent(rest)
                }
                Found::Exact => Found::Exact,
            };
        }
    }
    Found::None
}

fn dir_at<'a>(dirs: &'a mut [Dir], at: &[usize]) -> &'a mut Dir {
    let (first, rest) = at.split_first().expect("a non-empty index path");
    let d = &mut dirs[*first];
    if rest.is_empty() {
        d
    } else {
        dir_at(&mut d.children, rest)
    }
}

/// Adds the directory `start` of the hierarchy at `base` and everything under it (parents
/// before children, names sorted) to `ctl`, with properties.
fn walk(base: &Path, start: &str, ctl: &mut Controller, props: &PropTable) -> Result<()> {
    let mut todo = vec![start.to_string()];
    while let Some(rel) = todo.pop() {
        let rel = if rel.is_empty() { "/".to_string() } else { rel };
        let full = base.join(rel.trim_start_matches('/'));
        let md = match std::fs::metadata(&full) {
            Ok(md) => md,
            // Gone since it was listed (or a --cgroup-root that does not exist): nothing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(CgroupDumpError::Io {
                    path: full,
                    what: "cannot stat",
                    source,
                })
            }
        };
        let found = find_dir(&rel, &ctl.heads);
        if !matches!(found, Found::Exact) {
            let dir = Dir {
                path: rel.clone(),
                perms: perms_of(&md),
                props: read_props(&full, ctl, props)?,
                children: Vec::new(),
            };
            match found {
                Found::Parent(at) => dir_at(&mut ctl.heads, &at).children.push(dir),
                _ => ctl.heads.push(dir),
            }
        }
        let mut subdirs: Vec<String> = match std::fs::read_dir(&full) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(CgroupDumpError::Io {
                    path: full,
                    what: "cannot list",
                    source,
                })
            }
        };
        subdirs.sort();
        for name in subdirs.into_iter().rev() {
            todo.push(if rel == "/" {
                format!("/{name}")
            } else {
                format!("{rel}/{name}")
            });
        }
    }
    Ok(())
}

/// The properties saved for a directory of `ctl`'s hierarchy: each controller's list, then
/// the global ones; files this kernel does not have are left out.
fn read_props(dir: &Path, ctl: &mut Controller, table: &PropTable) -> Result<Vec<Prop>> {
    let v2 = ctl.cnames.first().is_some_and(String::is_empty);
    let mut names: Vec<&str> = Vec::new();
    for c in &ctl.cnames {
        names.extend(table.of(c).iter().map(String::as_str));
    }
    names.extend(if v2 { GLOBAL_V2 } else { GLOBAL_V1 });
    let mut out = Vec::new();
    for name in names {
        let path = dir.join(name);
        let md = match std::fs::metadata(&path) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!("cgroups: no {}: not on this kernel", path.display());
                continue;
            }
            Err(source) => {
                return Err(CgroupDumpError::Io {
                    path,
                    what: "cannot stat",
                    source,
                })
            }
        };
        let value = if name == "cgroup.procs" || name == "tasks" {
            String::new()
        } else {
            read_value(&path)?
        };
        let value = if name == "memory.oom_control" {
            oom_kill_disable(&value).ok_or_else(|| CgroupDumpError::Value {
                path: path.clone(),
                value: value.clone(),
            })?
        } else {
            value
        };
        if (name == "cgroup.type" && value == "threaded") || name == "tasks" {
            ctl.is_threaded = true;
        }
        out.push(Prop {
            name: name.to_string(),
            value,
            perms: perms_of(&md),
        });
    }
    Ok(out)
}

/// A property's value as CRIU saves it: at most 1023 bytes, one trailing newline dropped, a
/// number at or past i64::MAX as "-1".
fn read_value(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|source| CgroupDumpError::Io {
        path: path.into(),
        what: "cannot open",
        source,
    })?;
    let mut buf = vec![0u8; 1023];
    let n = f.read(&mut buf).map_err(|source| CgroupDumpError::Io {
        path: path.into(),
        what: "cannot read",
        source,
    })?;
    buf.truncate(n);
    let mut s = String::from_utf8_lossy(&buf).into_owned();
    if s.ends_with('\n') {
        s.pop();
    }
    if parse::strtoll_is_max(&s) {
        s = "-1".into();
    }
    Ok(s)
}

/// `memory.oom_control` is saved as its `oom_kill_disable` number.
fn oom_kill_disable(text: &str) -> Option<String> {
    let rest = text.strip_prefix("oom_kill_disable ")?;
    let n: i64 = rest.split_whitespace().next()?.parse().ok()?;
    Some(n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms() -> CgroupPerms {
        CgroupPerms {
            mode: 0o40755,
            uid: 0,
            gid: 0,
        }
    }

    fn d(path: &str) -> Dir {
        Dir {
            path: path.into(),
            perms: perms(),
            props: Vec::new(),
            children: Vec::new(),
        }
    }

    #[test]
    fn dirs_nest_like_criu() {
        let mut heads = vec![d("/a")];
        match find_dir("/a/b", &heads) {
            Found::Parent(at) => dir_at(&mut heads, &at).children.push(d("/a/b")),
            _ => panic!(),
        }
        match find_dir("/a/b/c", &heads) {
            Found::Parent(at) => {
                assert_eq!(at, [0, 0]);
                dir_at(&mut heads, &at).children.push(d("/a/b/c"))
            }
            _ => panic!(),
        }
        assert!(matches!(find_dir("/a/b", &heads), Found::Exact));
        assert!(matches!(find_dir("/ab", &heads), Found::None));
        heads.push(d("/"));
        let e = dir_entries(&heads, 0);
        assert_eq!(e[0].dir_name, "a");
        assert_eq!(e[0].children[0].dir_name, "b");
        assert_eq!(e[0].children[0].children[0].dir_name, "c");
        assert_eq!(e[1].dir_name, "");
        let mut root = d("/");
        root.children.push(d("/x"));
        let e = dir_entries(&[root], 0);
        assert_eq!(e[0].children[0].dir_name, "x");
    }

    #[test]
    fn values_as_criu_saves_them() {
        assert_eq!(
            oom_kill_disable("oom_kill_disable 1\nunder_oom 0\n").as_deref(),
            Some("1")
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("memory.limit_in_bytes");
        std::fs::write(&p, "9223372036854775807\n").unwrap();
        assert_eq!(read_value(&p).unwrap(), "-1");
        std::fs::write(&p, "max\n").unwrap();
        assert_eq!(read_value(&p).unwrap(), "max");
    }

    #[test]
    fn walk_reads_props_and_subdirs() {
        let base = tempfile::tempdir().unwrap();
        let cg = base.path().join("t");
        std::fs::create_dir_all(cg.join("sub/deeper")).unwrap();
        for dir in [cg.clone(), cg.join("sub"), cg.join("sub/deeper")] {
            std::fs::write(dir.join("pids.max"), "max\n").unwrap();
            std::fs::write(dir.join("tasks"), "1\n2\n").unwrap();
        }
        std::fs::write(cg.join("pids.max"), "7\n").unwrap();
        let mut ctl = Controller {
            cnames: vec!["pids".into()],
            heads: Vec::new(),
            is_threaded: false,
        };
        walk(base.path(), "/t", &mut ctl, &PropTable::default()).unwrap();
        assert!(ctl.is_threaded);
        assert_eq!(ctl.heads.len(), 1);
        let h = &ctl.heads[0];
        assert_eq!(h.path, "/t");
        let names: Vec<(&str, &str)> = h
            .props
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(names, [("pids.max", "7"), ("tasks", "")]);
        assert_eq!(h.children[0].path, "/t/sub");
        assert_eq!(h.children[0].children[0].path, "/t/sub/deeper");
        // A second walk of a directory already there adds nothing.
        walk(base.path(), "/t/sub", &mut ctl, &PropTable::default()).unwrap();
        assert_eq!(ctl.heads.len(), 1);
        let e = dir_entries(&ctl.heads, 0);
        assert_eq!(e[0].dir_name, "t");
        assert_eq!(e[0].children[0].dir_name, "sub");
    }
}
