//! Object ids of `ids-N.img` and the inventory's `root_ids`, numbered as CRIU numbers them:
//! criu itself takes id 1 of each kind (it is collected first, for the inventory), each task
//! then a new mm/files/fs/sighand id (tasks made by fork share none of them), and every
//! namespace one id from a single counter, in CRIU's order of kinds.

use std::collections::HashMap;

use criu_procfs::NsKind;
use criu_proto::images::TaskKobjIdsEntry;

/// CRIU's order when it numbers the namespaces of a task.
const NS_ORDER: [NsKind; 8] = [
    NsKind::Pid,
    NsKind::Net,
    NsKind::Ipc,
    NsKind::Uts,
    NsKind::Time,
    NsKind::Mnt,
    NsKind::User,
    NsKind::Cgroup,
];

/// A namespace link of process `pid`; a leader that exited before its threads has none, so
/// one of its live threads answers for it.
fn read_ns_of_process(
    pid: i32,
    kind: NsKind,
) -> Result<criu_procfs::NsLink, criu_procfs::ProcError> {
    match criu_procfs::read_ns(pid, kind) {
        Err(e) if e.is_not_found() => {
            let threads = criu_procfs::task::read_task_ids(pid).unwrap_or_default();
            threads
                .into_iter()
                .filter(|&t| t != pid)
                .find_map(|t| criu_procfs::read_ns(t, kind).ok())
                .ok_or(e)
        }
        other => other,
    }
}

/// The id `ids` gives the namespace of `kind`.
pub fn ns_id(ids: &TaskKobjIdsEntry, kind: NsKind) -> Option<u32> {
    match kind {
        NsKind::Pid => ids.pid_ns_id,
        NsKind::Net => ids.net_ns_id,
        NsKind::Ipc => ids.ipc_ns_id,
        NsKind::Uts => ids.uts_ns_id,
        NsKind::Time => ids.time_ns_id,
        NsKind::Mnt => ids.mnt_ns_id,
        NsKind::User => ids.user_ns_id,
        NsKind::Cgroup => ids.cgroup_ns_id,
    }
}

#[derive(Debug, Default)]
pub struct IdAllocator {
    next_kobj: u32,
    next_ns: u32,
    ns: HashMap<(NsKind, u64), u32>,
}

impl IdAllocator {
    pub fn new() -> IdAllocator {
        IdAllocator {
            next_kobj: 1,
            next_ns: 1,
            ns: HashMap::new(),
        }
    }

    /// Every namespace of `kind` numbered so far: (inode, id).
    pub fn numbered(&self, kind: NsKind) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.ns
            .iter()
            .filter(move |((k, _), _)| *k == kind)
            .map(|(&(_, ino), &id)| (ino, id))
    }

    /// Ids of process `pid` (criu's own pid first). A namespace /proc cannot show (time or
    /// cgroup on old kernels) is left out.
    pub fn task(&mut self, pid: i32) -> Result<TaskKobjIdsEntry, criu_procfs::ProcError> {
        let k = self.next_kobj;
        self.next_kobj += 1;
        let mut ids = TaskKobjIdsEntry {
            vm_id: k,
            files_id: k,
            fs_id: k,
            sighand_id: k,
            ..Default::default()
        };
        for kind in NS_ORDER {
            let link = match read_ns_of_process(pid, kind) {
                Ok(l) => l,
                Err(e) if matches!(kind, NsKind::Time | NsKind::Cgroup) && e.is_not_found() => {
                    continue
                }
                Err(e) => return Err(e),
            };
            let next = &mut self.next_ns;
            let id = *self.ns.entry((kind, link.ino)).or_insert_with(|| {
                let id = *next;
                *next += 1;
                id
            });
            let slot = match kind {
                NsKind::Pid => &mut ids.pid_ns_id,
                NsKind::Net => &mut ids.net_ns_id,
                NsKind::Ipc => &mut ids.ipc_ns_id,
                NsKind::Uts => &mut ids.uts_ns_id,
                NsKind::Time => &mut ids.time_ns_id,
                NsKind::Mnt => &mut ids.mnt_ns_id,
                NsKind::User => &mut ids.user_ns_id,
                NsKind::Cgroup => &mut ids.cgroup_ns_id,
            };
            *slot = Some(id);
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_in_our_namespaces_shares_their_ids() {
        let me = std::process::id() as i32;
        let mut a = IdAllocator::new();
        let root = a.task(me).unwrap();
        let task = a.task(me).unwrap();
        assert_eq!((root.vm_id, task.vm_id, task.files_id), (1, 2, 2));
        assert_eq!(root.pid_ns_id, Some(1));
        assert_eq!(root.net_ns_id, Some(2));
        assert_eq!(task.pid_ns_id, root.pid_ns_id);
        assert_eq!(task.mnt_ns_id, root.mnt_ns_id);
    }
}
