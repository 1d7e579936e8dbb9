//! Namespaces of a tree (pid, mnt, net, uts, ipc, user, cgroup, time).
//!
//! [`tree`] decides, before a dump touches a task, which namespaces the tree owns (the root's
//! differs from criu's) and refuses what cannot be dumped; [`ids`] numbers them for
//! `ids-*.img` and the inventory. One module per kind holds its dump half and restore half
//! side by side: [`uts`], [`ipc`] (System V objects and sysctls), [`time`], [`net`] (lo),
//! [`user`] (id maps), [`pid`] (pid namespaces nested below the root's; the root's own has
//! no image: its pids are the ones in pstree.img); the mount tree is the mounts crate's.
//! [`join`] takes namespaces given from outside (`--join-ns`, an external network
//! namespace); [`enter`] runs work in a thread of criu that joined a task's namespaces. The
//! orchestrator drives [`dump_images`] after the tasks are collected, and at restore
//! [`Owned`]: joins and clone flags for the root, [`Owned::map_ids`] right after it exists,
//! [`Owned::enter_cgroup_ns`] once the cgroups crate put it in its namespace's root cgroups,
//! then [`Owned::fill`] while it is the only task. A cgroup namespace has no image of its
//! own: its root is the `cgns_prefix` of the root task's cgroups in `cgroup.img`.

pub mod enter;
pub mod error;
pub mod ids;
pub mod ipc;
pub mod join;
pub mod mqueue;
pub mod net;
pub mod pid;
pub mod time;
pub mod tree;
pub mod user;
pub mod uts;

use std::os::fd::OwnedFd;
use std::path::Path;

use criu_procfs::NsKind;
use criu_proto::dump_images::DumpImages;
use criu_proto::images::TaskKobjIdsEntry;
use criu_tracee::remote::Remote;

pub use error::NsImageError;
pub use ids::ns_id;
pub use tree::{NsError, TreeNamespaces};

/// What the dump is told about namespaces.
#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    /// `--empty-ns net`: the network namespace is left to whoever restores the tree (a
    /// container runtime): nothing of it is checked or dumped.
    pub empty_net: bool,
    /// `--external net[INODE]:KEY`: a network namespace the restore gets from outside
    /// (`--inherit-fd fd[N]:KEY`): only its key is dumped.
    pub ext_net: Vec<(u64, String)>,
    /// External mounts (`--external mnt[MOUNTPOINT]:KEY`, `-M`).
    pub mounts: criu_mounts::MountOptions,
    /// A pre-dump: only memory is dumped, so what the namespaces hold (network state,
    /// mounts) is neither read nor checked (runc sends no external mounts to a pre-dump).
    pub memory_only: bool,
}

/// What the restore is told about namespaces.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// `--empty-ns net`.
    pub empty_net: bool,
    /// `--join-ns`.
    pub joins: Vec<join::Join>,
    /// `--inherit-fd fd[N]:KEY`, where an external network namespace is looked up.
    pub inherited: Vec<(i32, String)>,
    /// `--root` and external mounts (`--external mnt[KEY]:PATH`, `-M`).
    pub mounts: criu_mounts::MountOptions,
    /// `--weak-sysctls`: a network sysctl the kernel refuses is only warned about.
    pub weak_sysctls: bool,
    /// What the network devices have outside the namespace (`--veth-pair`, `--external
    /// veth[..]`, `--external macvlan[..]`).
    pub net_outside: criu_netdev::links::outside::Outside,
}

/// Writes the images of every namespace the tree owns; `root_ids` are the root task's ids,
/// `net_ids` the ids of every network namespace a task is in (by inode), `held_tuns` what the
/// tree's tun files read of their devices.
pub fn dump_images(
    tree: &TreeNamespaces,
    root_ids: &TaskKobjIdsEntry,
    net_ids: &std::collections::BTreeMap<u64, u32>,
    held_tuns: &criu_netdev::links::dump::HeldTuns,
    dir: &Path,
) -> Result<(), NsImageError> {
    let pid = tree.root_pid();
    // Every network namespace of the tree by id (a veth's peer may be in another one).
    let mut nets = Vec::new();
    if tree.sub_nets().next().is_some() {
        let root = root_ids.net_ns_id.map(|id| (id, pid));
        let subs = tree
            .sub_nets()
            .filter_map(|(pid, ino, _)| net_ids.get(&ino).map(|&id| (id, pid)));
        for (id, pid) in root.into_iter().chain(subs) {
            let path = format!("/proc/{pid}/ns/net");
            let ns = std::fs::File::open(&path).map_err(error::io("net", path))?;
            nets.push((id, OwnedFd::from(ns)));
        }
    }
    let others_than = |me: u32| -> Vec<(u32, std::os::fd::BorrowedFd<'_>)> {
        nets.iter()
            .filter(|(id, _)| *id != me)
            .map(|(id, fd)| (*id, std::os::fd::AsFd::as_fd(fd)))
            .collect()
    };
    for &kind in tree.own().iter().filter(|&&k| tree.dumps(k)) {
        let Some(id) = ns_id(root_ids, kind) else {
            continue;
        };
        match kind {
            NsKind::Uts => uts::dump(pid, id, dir)?,
            NsKind::Time => time::dump(pid, id, dir)?,
            NsKind::Net => {
                let state = tree.net_state().cloned().unwrap_or_default();
                net::dump(pid, id, &state, (held_tuns, &others_than(id)), dir)?
            }
            NsKind::User => user::dump(pid, id, dir)?,
            NsKind::Ipc => {
                ipc::dump(pid, id, dir)?;
            }
            NsKind::Mnt => criu_mounts::dump(pid, id, dir, tree.mount_options())?,
            _ => {}
        }
    }
    for (pid, ino, state) in tree.sub_nets() {
        let id = net_ids
            .get(&ino)
            .copied()
            .ok_or_else(|| NsImageError::Bad {
                kind: "net",
                what: format!("pid {pid}'s network namespace net:[{ino}] has no id"),
            })?;
        net::dump(pid, id, state, (held_tuns, &others_than(id)), dir)?;
    }
    if let (Some(key), Some(id)) = (tree.ext_net(), root_ids.net_ns_id) {
        net::dump_external(id, key, dir)?;
    }
    Ok(())
}

/// At restore: the namespaces the tree owned (the root's ids differ from the inventory's,
/// which are criu's at dump time), by kind and image id.
#[derive(Debug, Clone, Default)]
pub struct Owned {
    kinds: Vec<(NsKind, u32)>,
    /// `--empty-ns net`: the network namespace is left empty.
    empty_net: bool,
    /// Namespaces joined instead of made (`--join-ns`, an external network namespace).
    joins: Vec<join::Join>,
    /// Where the mount tree's root and external mounts are.
    mounts: criu_mounts::MountOptions,
    /// `--weak-sysctls`.
    weak_sysctls: bool,
    /// `--veth-pair` and the like.
    net_outside: criu_netdev::links::outside::Outside,
    /// The outside veth ends the restore made, removed by [`Owned::abort`].
    net_made: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Network namespaces of tasks below the root's, by image id.
    sub_nets: Vec<u32>,
    /// Kinds the tree had a namespace of its own of at dump, joined now (`--join-ns`).
    joined_own: Vec<NsKind>,
}

/// What filling the root's namespaces leaves for the files: masters of bind-mounted pty
/// slaves, by index, and every network namespace of the tree by image id (the root's first;
/// none if the tree has none of its own).
#[derive(Debug, Default)]
pub struct Filled {
    pub ptys: criu_mounts::pty::HeldPtys,
    pub nets: Vec<(u32, OwnedFd)>,
}

impl Owned {
    /// Fails naming a kind the dump owned that this crate cannot make again. With `empty_net`
    /// (`--empty-ns net`) the network namespace is made empty, for the caller's
    /// setup-namespaces scripts to fill.
    pub fn of_images(images: &DumpImages, opts: &RestoreOptions) -> Result<Owned, NsImageError> {
        let root = &images.root().ids;
        let host = images.inventory.root_ids.unwrap_or_default();
        let mut kinds = Vec::new();
        for kind in NsKind::ALL {
            let (Some(theirs), Some(ours)) = (ns_id(root, kind), ns_id(&host, kind)) else {
                continue;
            };
            if theirs == ours {
                continue;
            }
            kinds.push((kind, theirs));
        }
        let mut joins = opts.joins.clone();
        if let Some(&(_, id)) = kinds.iter().find(|(k, _)| *k == NsKind::Net) {
            if let Some(key) = net::external_key(id, &images.dir)? {
                let fd = opts
                    .inherited
                    .iter()
                    .find(|(_, k)| *k == key)
                    .map(|(fd, _)| *fd);
                let fd = fd.ok_or_else(|| NsImageError::Bad {
                    kind: "net",
                    what: format!(
                        "the dump left it outside (--external net[..]:{key}): give it with \
                         --inherit-fd fd[N]:{key}"
                    ),
                })?;
                joins.push(join::Join {
                    kind: NsKind::Net,
                    at: join::Where::Fd(fd),
                    ids: None,
                });
            }
        }
        // A kind joined is not made.
        let joined_own = kinds
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| joins.iter().any(|j| j.kind == *k))
            .collect();
        kinds.retain(|(k, _)| !joins.iter().any(|j| j.kind == *k));
        let root_net = kinds
            .iter()
            .find(|(k, _)| *k == NsKind::Net)
            .map(|&(_, id)| id);
        let mut sub_nets: Vec<u32> = images
            .tasks
            .iter()
            .filter_map(|t| t.ids.net_ns_id)
            .filter(|&id| Some(id) != root.net_ns_id)
            .collect();
        sub_nets.sort_unstable();
        sub_nets.dedup();
        if !sub_nets.is_empty() && (root_net.is_none() || opts.empty_net) {
            return Err(NsImageError::Bad {
                kind: "net",
                what: "tasks are in network namespaces below one the restore does not make".into(),
            });
        }
        Ok(Owned {
            kinds,
            empty_net: opts.empty_net,
            weak_sysctls: opts.weak_sysctls,
            net_outside: opts.net_outside.clone(),
            net_made: Default::default(),
            sub_nets,
            joined_own,
            joins,
            mounts: opts.mounts.clone(),
        })
    }

    /// On the thread that makes the root, before it does: joins the namespaces the root is
    /// born in rather than given new ones.
    pub fn join_here(&self) -> Result<(), NsImageError> {
        self.joins.iter().try_for_each(join::Join::join_here)
    }

    /// Runs `work` in the network and IPC namespaces of the restored root `pid` (criu's own
    /// where the tree has none), for the sockets and POSIX message queues criu makes for it.
    pub fn run_in_tree_ns<T: Send>(
        &self,
        pid: i32,
        work: impl FnOnce() -> T + Send,
    ) -> Result<T, NsImageError> {
        let kinds: Vec<NsKind> = [NsKind::Net, NsKind::Ipc]
            .into_iter()
            .filter(|&kind| self.owns(kind) || self.joins.iter().any(|j| j.kind == kind))
            .collect();
        if kinds.is_empty() {
            return Ok(work());
        }
        let name = if kinds.len() == 2 {
            "net and ipc"
        } else {
            kinds[0].name()
        };
        enter::in_namespaces_of(pid, &kinds, work).map_err(error::enter(name))
    }

    /// Once every task has attached its System V segments: what must wait for that
    /// (`kernel.shm_rmid_forced` destroys segments no task holds). `pid`: the root, as criu
    /// sees it.
    pub fn after_tasks_attached(&self, pid: i32, dir: &Path) -> Result<(), NsImageError> {
        match self.kinds.iter().find(|(k, _)| *k == NsKind::Ipc) {
            Some(&(_, id)) => Ok(ipc::restore_rmid_forced(pid, id, dir)?),
            None => Ok(()),
        }
    }

    /// After a failed restore: removes what it made outside the tree's namespaces (the
    /// outside ends of its veths).
    pub fn abort(&self) {
        net::abort(&self.net_made);
    }

    /// Whether the dump found the tree in a namespace of `kind` of its own, which the
    /// restore joins (`--join-ns`) instead of making one.
    pub fn joins_own(&self, kind: NsKind) -> bool {
        self.joined_own.contains(&kind)
    }

    pub fn owns(&self, kind: NsKind) -> bool {
        self.kinds.iter().any(|(k, _)| *k == kind)
    }

    /// Whether the tree had any namespace of its own.
    pub fn any(&self) -> bool {
        !self.kinds.is_empty() || !self.joins.is_empty()
    }

    /// The clone3 flags that give the root its new namespaces. The time namespace is not
    /// among them: its offsets must be set before a task enters it (see time.rs); nor the
    /// cgroup namespace, whose root is where the task is when it unshares
    /// ([`Owned::enter_cgroup_ns`]).
    ///
    /// With a user namespace to join, only the pid namespace comes with the root: the others
    /// are made by the root itself once inside the joined one ([`Owned::unshare_flags`]), so
    /// that they belong to it, as CRIU makes them.
    pub fn clone_flags(&self) -> u64 {
        let all = self.new_flags();
        if self.joins_user() {
            all & libc::CLONE_NEWPID as u64
        } else {
            all
        }
    }

    /// The namespaces the root makes itself, after joining a user namespace (none otherwise).
    fn unshare_flags(&self) -> u64 {
        if self.joins_user() {
            self.new_flags() & !(libc::CLONE_NEWPID as u64)
        } else {
            0
        }
    }

    fn new_flags(&self) -> u64 {
        self.kinds
            .iter()
            .filter(|(k, _)| !matches!(k, NsKind::Time | NsKind::Cgroup))
            .fold(0, |f, (k, _)| f | k.clone_flag() as u64)
    }

    /// The namespaces the root must be born in when it is the init of a new pid namespace
    /// that a joined user namespace owns (set_tid for its children needs that): time, mnt and
    /// user, in that order, opened for [`criu_sys::clone::clone_stopped_init_in`]. None
    /// otherwise: the root joins them itself ([`Owned::fill`]).
    pub fn birth_joins(&self) -> Result<Option<Vec<(OwnedFd, i32)>>, NsImageError> {
        if !self.joined_at_birth() {
            return Ok(None);
        }
        let mut joins: Vec<&join::Join> = self.joins.iter().filter(|j| j.in_stub()).collect();
        joins.sort_by_key(|j| j.kind == NsKind::User);
        let fds = joins
            .into_iter()
            .map(|j| Ok((j.open()?, j.kind.clone_flag())))
            .collect::<Result<Vec<_>, NsImageError>>()?;
        Ok(Some(fds))
    }

    fn joined_at_birth(&self) -> bool {
        self.joins_user() && self.owns(NsKind::Pid)
    }

    fn joins_user(&self) -> bool {
        self.joins.iter().any(|j| j.kind == NsKind::User)
    }

    /// Whether the tree lives in a namespace of `kind` other than criu's: one it owns or
    /// one it joins.
    pub fn lives_in_other(&self, kind: NsKind) -> bool {
        self.owns(kind) || self.joins.iter().any(|j| j.kind == kind)
    }

    /// Once the root's stub (driven through `r`) is in the cgroups that were its cgroup
    /// namespace's root: the stub unshares its cgroup namespace there, if the tree had one.
    /// Its children are made later and inherit it.
    pub fn enter_cgroup_ns(&self, r: &mut Remote) -> Result<(), NsImageError> {
        if !self.owns(NsKind::Cgroup) {
            return Ok(());
        }
        r.call(
            "unshare(CLONE_NEWCGROUP)",
            libc::SYS_unshare,
            &[libc::CLONE_NEWCGROUP as u64],
        )
        .map_err(error::tracee("cgroup"))?;
        Ok(())
    }

    /// Right after the root's stub `pid` is made: the id maps of its new user namespace,
    /// which nothing in it may do without.
    pub fn map_ids(&self, pid: i32, dir: &Path) -> Result<(), NsImageError> {
        match self.kinds.iter().find(|(k, _)| *k == NsKind::User) {
            Some(&(_, id)) => user::restore(pid, id, dir),
            None => Ok(()),
        }
    }

    /// Fills the new namespaces of the root's stub `pid` (as criu sees it), driven through
    /// `r`, before it has children. Gives the masters of pty slaves the mount tree binds
    /// (see criu_mounts::pty), for the files domain.
    pub fn fill(&self, r: &mut Remote, pid: i32, dir: &Path) -> Result<Filled, NsImageError> {
        // The user namespace last (see join.rs), then what is made inside it.
        let (user, others): (Vec<_>, Vec<_>) =
            self.joins.iter().partition(|j| j.kind == NsKind::User);
        if !self.joined_at_birth() {
            for j in others.into_iter().chain(user) {
                j.join_in_stub(r)?;
            }
        }
        let flags = self.unshare_flags();
        if flags != 0 {
            // Made before the root takes its ids there: it may lose its capabilities.
            r.call("unshare", libc::SYS_unshare, &[flags])
                .map_err(|e| NsImageError::Bad {
                    kind: "user",
                    what: format!(
                        "the root cannot make its namespaces (flags {flags:#x}) inside the \
                         joined one: {e}"
                    ),
                })?;
        }
        for j in &self.joins {
            j.take_ids(r)?;
        }
        // The mount tree last: the others reach the root's /proc, which it may not have.
        let mut kinds = self.kinds.clone();
        kinds.sort_by_key(|(k, _)| *k == NsKind::Mnt);
        let mut filled = Filled::default();
        for (kind, id) in kinds {
            match kind {
                NsKind::Uts => uts::restore(pid, id, dir)?,
                NsKind::Time => time::restore(r, pid, id, dir)?,
                NsKind::Ipc => ipc::restore(pid, id, dir)?,
                // In turn: filled on a thread of their own while the others were, they
                // measured slower on 2 cores (BENCHMARKS.md, "Namespaces filled side by side").
                NsKind::Net if !self.empty_net => {
                    filled.nets = net::make_all(r, pid, (id, &self.sub_nets))?;
                    let opts = net::FillOptions {
                        weak_sysctls: self.weak_sysctls,
                        outside: &self.net_outside,
                        made: &self.net_made,
                    };
                    net::fill_all(&filled.nets, dir, &opts)?;
                }
                NsKind::Mnt => {
                    filled.ptys = criu_mounts::restore_in_ns(pid, id, dir, &self.mounts)?;
                }
                _ => {}
            }
        }
        Ok(filled)
    }
}
