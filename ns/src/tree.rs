//! Which namespaces a tree has of its own, and the rules a dump checks before it touches a
//! task. A kind whose namespace the root shares with criu is the host's: left alone, as
//! CRIU does. Otherwise the tree owns that namespace and it is dumped, which needs every task
//! of the tree to share the root's (CRIU restores one namespace of each kind per tree).
//! Pid namespaces are the exception: a task may live in one nested below the root's, as
//! long as that namespace's init (its pid 1) is in the tree too (see [`crate::pid`]); so are
//! network namespaces when the tree's own is dumped: each one a task is in is dumped too.

use std::collections::{BTreeMap, BTreeSet};

use criu_procfs::{read_ns_links, NsKind, NsLink};

#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("pid {pid}: cannot read its namespaces: {source}")]
    Read {
        pid: i32,
        source: criu_procfs::ProcError,
    },
    #[error(
        "pid {pid}: {what} differs from the root's ({theirs} vs {root}); a tree that mixes \
         {kind} namespaces is not supported"
    )]
    Mixed {
        pid: i32,
        kind: &'static str,
        what: String,
        theirs: String,
        root: String,
    },
    #[error("pid {pid}: it is pid {vpid} in its own pid namespace; CRIU dumps a pid namespace from its init (pid 1) only")]
    NotInit { pid: i32, vpid: i32 },
    #[error("pid {pid}: its pid namespace is neither the root's nor one nested below it")]
    PidOutside { pid: i32 },
    #[error(
        "pid {pid}: {what} pid:[{ino}] has no init (pid 1) in the tree; a nested pid namespace \
         is dumped with its init"
    )]
    NoPidInit { pid: i32, what: String, ino: u64 },
    #[error(
        "pid {pid}: the pid namespace of its children has no init yet (it unshared one and has \
         not forked since); such a namespace is not dumped"
    )]
    EmptyPidNs { pid: i32 },
    #[error("pid {pid}: its network namespace has {what}")]
    Net { pid: i32, what: String },
    #[error("pid {pid}: {source}")]
    Mount {
        pid: i32,
        source: criu_mounts::MountError,
    },
    #[error("pid {pid}: {source}")]
    Image {
        pid: i32,
        source: crate::NsImageError,
    },
}

/// The root's namespaces, what the tree owns, and the tasks already checked.
#[derive(Debug)]
pub struct TreeNamespaces {
    root_pid: i32,
    /// `--empty-ns net` and `--external net[INODE]:KEY`.
    opts: crate::DumpOptions,
    /// The key of the tree's network namespace, if it is external.
    ext_net: Option<String>,
    root: Vec<NsLink>,
    own: Vec<NsKind>,
    checked: BTreeSet<i32>,
    /// Sysctls and firewall of the tree's own network namespace, read before any lock.
    net: Option<crate::net::NetState>,
    /// Where the root's pid namespace is in the NSpid lists criu reads.
    pid_depth: usize,
    /// Pid namespaces nested below the root's.
    nested: NestedPids,
    /// Network namespaces of tasks other than the root's, below a network namespace the tree
    /// owns: by inode, the first task seen in each and what it holds besides devices.
    sub_nets: BTreeMap<u64, (i32, crate::net::NetState)>,
}

/// Pid namespaces below the root's that tasks of the tree live in or fork into.
#[derive(Debug, Default)]
pub(crate) struct NestedPids {
    /// Each namespace (inode) and its init (criu's pid), once seen.
    pub(crate) inits: BTreeMap<u64, Option<i32>>,
    /// Tasks in a nested namespace (criu's pid -> namespace).
    members: BTreeMap<i32, u64>,
    /// Tasks whose children are born in another pid namespace than their own.
    pub(crate) children_in: BTreeMap<i32, u64>,
}

impl TreeNamespaces {
    /// What the tree's own network namespace holds besides `lo`, when it is dumped.
    pub fn net_state(&self) -> Option<&crate::net::NetState> {
        self.net.as_ref()
    }

    /// Reads criu's and the root's namespaces and refuses a root whose own namespaces this
    /// crate cannot dump; the content of a network namespace that `opts` leaves empty or
    /// names external is not dumped.
    pub fn of_root(root_pid: i32, opts: &crate::DumpOptions) -> Result<TreeNamespaces, NsError> {
        let me = std::process::id() as i32;
        let ours = read_ns_links(me).map_err(|source| NsError::Read { pid: me, source })?;
        let root = read_ns_links(root_pid).map_err(|source| NsError::Read {
            pid: root_pid,
            source,
        })?;
        let mut own = Vec::new();
        for l in root.iter().filter(|l| !l.for_children) {
            let host = ours.iter().find(|o| o.kind == l.kind && !o.for_children);
            if host.is_some_and(|o| o.ino == l.ino) {
                continue;
            }
            own.push(l.kind);
        }
        let status = criu_procfs::read_status(root_pid).map_err(|source| NsError::Read {
            pid: root_pid,
            source,
        })?;
        if own.contains(&NsKind::Pid) && status.vpid() != 1 {
            return Err(NsError::NotInit {
                pid: root_pid,
                vpid: status.vpid(),
            });
        }
        let net_ino = root
            .iter()
            .find(|l| l.kind == NsKind::Net && !l.for_children);
        let ext_net = net_ino.and_then(|l| {
            opts.ext_net
                .iter()
                .find(|(ino, _)| *ino == l.ino)
                .map(|(_, key)| key.clone())
        });
        let mut net = None;
        if own.contains(&NsKind::Net) && !opts.empty_net && ext_net.is_none() && !opts.memory_only {
            let image = |source| NsError::Image {
                pid: root_pid,
                source,
            };
            if let Some(what) = crate::net::check(root_pid).map_err(image)? {
                return Err(NsError::Net {
                    pid: root_pid,
                    what,
                });
            }
            net = Some(crate::net::snapshot(root_pid).map_err(image)?);
        }
        if own.contains(&NsKind::Mnt) && !opts.memory_only {
            criu_mounts::check(root_pid, &opts.mounts).map_err(|source| NsError::Mount {
                pid: root_pid,
                source,
            })?;
        }
        let tree = TreeNamespaces {
            root_pid,
            opts: opts.clone(),
            ext_net,
            root,
            own,
            checked: BTreeSet::new(),
            net,
            pid_depth: status.ns_pid.len().saturating_sub(1),
            nested: NestedPids::default(),
            sub_nets: BTreeMap::new(),
        };
        // The root's *_for_children must be its own namespace too (nested ones are not kept),
        // but for pid_for_children (see check_task).
        compare(root_pid, &tree.root, &tree.root)?;
        Ok(tree)
    }

    /// How the dump names tasks: by their ids in the root's pid namespace, and with their ids
    /// in nested ones too where the tree has any.
    pub fn pid_view(&self) -> crate::pid::PidView {
        crate::pid::PidView {
            depth: self.pid_depth,
            nested: !self.nested.inits.is_empty(),
        }
    }

    pub(crate) fn nested_pids(&self) -> &NestedPids {
        &self.nested
    }

    /// Fails naming a task of a nested pid namespace (or one whose children would be born
    /// in it) whose init is not in the tree. Called once every task was checked.
    pub fn check_pid_inits(&self) -> Result<(), NsError> {
        let n = &self.nested;
        let Some((&ino, _)) = n.inits.iter().find(|(_, init)| init.is_none()) else {
            return Ok(());
        };
        let member = n.members.iter().find(|(_, &i)| i == ino).map(|(&p, _)| p);
        let (pid, what) = match member {
            Some(pid) => (pid, "its pid namespace"),
            None => {
                let pid = n
                    .children_in
                    .iter()
                    .find(|(_, &i)| i == ino)
                    .map(|(&p, _)| p);
                (
                    pid.unwrap_or(self.root_pid),
                    "the pid namespace of its children",
                )
            }
        };
        Err(NsError::NoPidInit {
            pid,
            what: what.into(),
            ino,
        })
    }

    /// The kinds whose namespace the tree owns (dumped and made again at restore).
    pub fn own(&self) -> &[NsKind] {
        &self.own
    }

    pub fn owns(&self, kind: NsKind) -> bool {
        self.own.contains(&kind)
    }

    pub fn root_pid(&self) -> i32 {
        self.root_pid
    }

    /// Whether the content of kind `kind`'s namespace is dumped (owned, and not left empty).
    pub fn dumps(&self, kind: NsKind) -> bool {
        let net_left = self.opts.empty_net || self.ext_net.is_some();
        self.owns(kind) && !(kind == NsKind::Net && net_left)
    }

    /// External mounts, for the mount tree's dump.
    pub fn mount_options(&self) -> &criu_mounts::MountOptions {
        &self.opts.mounts
    }

    /// The key `--external net[INODE]:KEY` gave the tree's network namespace.
    pub fn ext_net(&self) -> Option<&str> {
        self.ext_net.as_deref()
    }

    /// Fails naming the first namespace of `pid` that is not the root's. Links the kernel
    /// does not show (a zombie's) are not compared, nor a task that is gone; a task already
    /// checked is not read again.
    pub fn check_task(&mut self, pid: i32) -> Result<(), NsError> {
        if self.checked.contains(&pid) {
            return Ok(());
        }
        let theirs = match read_ns_links(pid) {
            Ok(links) => links,
            // Gone meanwhile (a tree that forks and exits): nothing of it is dumped.
            Err(_) if !std::path::Path::new(&format!("/proc/{pid}")).exists() => return Ok(()),
            Err(source) => return Err(NsError::Read { pid, source }),
        };
        self.check_pid_ns(pid, &theirs)?;
        let theirs = self.check_net_ns(pid, theirs)?;
        compare(pid, &theirs, &self.root)?;
        self.checked.insert(pid);
        Ok(())
    }

    /// The network namespaces of tasks other than the root's: (first task, inode, content).
    pub fn sub_nets(&self) -> impl Iterator<Item = (i32, u64, &crate::net::NetState)> {
        self.sub_nets
            .iter()
            .map(|(&ino, (pid, state))| (*pid, ino, state))
    }

    /// A task in a network namespace other than the root's is dumped with its namespace when
    /// the tree's own is dumped (as CRIU; otherwise `compare` refuses it): its devices are
    /// checked and what it holds is read, once per namespace, before any lock. Returns the
    /// links left to compare.
    fn check_net_ns(&mut self, pid: i32, theirs: Vec<NsLink>) -> Result<Vec<NsLink>, NsError> {
        let net = |links: &[NsLink]| {
            links
                .iter()
                .find(|l| l.kind == NsKind::Net && !l.for_children)
                .map(|l| l.ino)
        };
        let (Some(root), Some(own)) = (net(&self.root), net(&theirs)) else {
            return Ok(theirs);
        };
        if own == root || !self.dumps(NsKind::Net) {
            return Ok(theirs);
        }
        if !self.sub_nets.contains_key(&own) {
            let state = if self.opts.memory_only {
                crate::net::NetState::default()
            } else {
                let image = |source| NsError::Image { pid, source };
                if let Some(what) = crate::net::check(pid).map_err(image)? {
                    return Err(NsError::Net { pid, what });
                }
                crate::net::snapshot(pid).map_err(image)?
            };
            self.sub_nets.insert(own, (pid, state));
        }
        Ok(theirs
            .into_iter()
            .filter(|l| l.kind != NsKind::Net)
            .collect())
    }

    /// A task outside the root's pid namespace must be in one nested below it; a task whose
    /// children are born elsewhere (pid_for_children) names that namespace.
    fn check_pid_ns(&mut self, pid: i32, theirs: &[NsLink]) -> Result<(), NsError> {
        let ino_of = |links: &[NsLink], for_children| {
            links
                .iter()
                .find(|l| l.kind == NsKind::Pid && l.for_children == for_children)
                .map(|l| l.ino)
        };
        let (Some(root), Some(own)) = (ino_of(&self.root, false), ino_of(theirs, false)) else {
            return Ok(());
        };
        if own != root {
            let status =
                criu_procfs::read_status(pid).map_err(|source| NsError::Read { pid, source })?;
            if status.ns_pid.len() <= self.pid_depth + 1 {
                return Err(NsError::PidOutside { pid });
            }
            self.nested.members.insert(pid, own);
            let init = self.nested.inits.entry(own).or_default();
            if status.vpid() == 1 {
                *init = Some(pid);
            }
        }
        // The kernel shows no pid_for_children link while that namespace has no init; nor
        // any link but pid for a zombie (it has no namespaces left but its pid's).
        let zombie = !theirs.iter().any(|l| l.kind == NsKind::Uts);
        let Some(children) = ino_of(theirs, true) else {
            return if zombie {
                Ok(())
            } else {
                Err(NsError::EmptyPidNs { pid })
            };
        };
        if children != own {
            self.nested.children_in.insert(pid, children);
            self.nested.inits.entry(children).or_default();
        }
        Ok(())
    }
}

/// Every link of `theirs` must equal the root's own link of its kind (a `*_for_children`
/// link too: the task's future children would live there).
fn compare(pid: i32, theirs: &[NsLink], root: &[NsLink]) -> Result<(), NsError> {
    for t in theirs.iter().filter(|t| t.kind != NsKind::Pid) {
        let Some(r) = root.iter().find(|r| r.kind == t.kind && !r.for_children) else {
            continue;
        };
        if r.ino == t.ino {
            continue;
        }
        let kind = t.kind.name();
        let what = if t.for_children {
            format!("the {kind} namespace of its children ({kind}_for_children)")
        } else {
            format!("its {kind} namespace")
        };
        return Err(NsError::Mixed {
            pid,
            kind,
            what,
            theirs: format!("{kind}:[{}]", t.ino),
            root: format!("{kind}:[{}]", r.ino),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(kind: NsKind, for_children: bool, ino: u64) -> NsLink {
        NsLink {
            kind,
            for_children,
            ino,
        }
    }

    #[test]
    fn same_namespaces_pass_and_a_different_one_is_named() {
        let root = [link(NsKind::Uts, false, 1), link(NsKind::Pid, false, 2)];
        assert!(compare(7, &root, &root).is_ok());
        let theirs = [link(NsKind::Uts, false, 9), link(NsKind::Pid, false, 2)];
        let err = compare(7, &theirs, &root).unwrap_err().to_string();
        assert!(err.starts_with("pid 7: its uts namespace"), "{err}");
        assert!(err.contains("uts:[9] vs uts:[1]"), "{err}");
    }

    #[test]
    fn children_born_in_a_nested_pid_namespace_need_its_init_in_the_tree() {
        let me = std::process::id() as i32;
        let mut tree = TreeNamespaces::of_root(me, &Default::default()).unwrap();
        let pid_ns = std::fs::read_link(format!("/proc/{me}/ns/pid")).unwrap();
        let (_, ino) = criu_procfs::ns::parse_ns_link(&pid_ns).unwrap();
        let same = [link(NsKind::Pid, false, ino), link(NsKind::Pid, true, ino)];
        tree.check_pid_ns(7, &same).unwrap();
        tree.check_pid_inits().unwrap();
        assert!(!tree.pid_view().nested);
        let unshared = [link(NsKind::Pid, false, ino), link(NsKind::Pid, true, 5)];
        tree.check_pid_ns(7, &unshared).unwrap();
        assert!(tree.pid_view().nested);
        let err = tree.check_pid_inits().unwrap_err().to_string();
        assert!(
            err.starts_with("pid 7: the pid namespace of its children pid:[5] has no init"),
            "{err}"
        );
    }

    #[test]
    fn our_own_tree_owns_nothing_and_a_gone_task_is_no_error() {
        let mut tree =
            TreeNamespaces::of_root(std::process::id() as i32, &Default::default()).unwrap();
        assert!(tree.own().is_empty());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        tree.check_task(pid).unwrap();
    }
}
