//! Helper tasks: processes that did not exist at dump time but that restore creates for a
//! while, because a task can only get its session by inheriting it or by starting one, and can
//! only join a process group that exists.
//!
//! - A task whose session is neither its own nor its parent's, and whose ancestors never led
//!   that session, is in a session whose leader is gone from its ancestry (it was orphaned, or
//!   made with CLONE_PARENT). It is created by a helper that is in that session. When the
//!   leader is gone, the helper takes the old leader's pid, starts the session again as a
//!   child of the task's parent, and makes the task with CLONE_PARENT, so that the task's
//!   parent is the right one at once. When the leader still lives in the tree, the helper is
//!   its child; once the helper exits, the kernel hands its children to the nearest child
//!   subreaper, which must be their dumped parent.
//! - A task whose process group leader is gone joins its group through a helper with the old
//!   leader's pid, created by the first such task, that starts the group and exits once every
//!   member has joined.
//!
//! Ancestors that forked a child before starting their own session are marked with the session
//! the child was born in (`born_sid`): they fork those children first, then call setsid.

use std::collections::{BTreeMap, BTreeSet};

use criu_tracee::remote::{words, Remote};

use super::rebuild::{task_err, RebuildError};
use criu_proto::dump_images::DumpImages;

/// One process of the tree as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub sid: i32,
    pub pgid: i32,
    /// Whether it was a child subreaper (PR_SET_CHILD_SUBREAPER).
    pub subreaper: bool,
}

/// The tree with its helpers: `procs[..n]` are the dumped tasks, the rest helpers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Augmented {
    pub procs: Vec<Proc>,
    /// Index of the task that creates each one (None for the root).
    pub creator: Vec<Option<usize>>,
    /// The session each task must still be in when it forks the children born there (see the
    /// module comment); it calls setsid afterwards.
    pub born_sid: Vec<Option<i32>>,
    /// Whether each one is made with CLONE_PARENT (by a helper, for the helper's parent).
    pub clone_parent: Vec<bool>,
    /// How many of `procs` are dumped tasks; the others are helpers.
    pub tasks: usize,
}

impl Augmented {
    pub fn is_helper(&self, i: usize) -> bool {
        i >= self.tasks
    }
}

/// Adds the helpers `tree` needs. `tree[0]` is the root; every other task's parent is in the
/// tree. `pid_is_free` says whether a pid may be given to a helper of a living session leader.
pub fn add_helpers(
    tree: &[Proc],
    mut pid_is_free: impl FnMut(i32) -> bool,
) -> Result<Augmented, String> {
    let index: BTreeMap<i32, usize> = tree.iter().enumerate().map(|(i, p)| (p.pid, i)).collect();
    let parent_of = |i: usize| -> Option<usize> {
        (i != 0)
            .then(|| index.get(&tree[i].ppid).copied())
            .flatten()
    };
    let mut out = Augmented {
        procs: tree.to_vec(),
        creator: (0..tree.len()).map(parent_of).collect(),
        born_sid: vec![None; tree.len()],
        clone_parent: vec![false; tree.len()],
        tasks: tree.len(),
    };
    for (i, p) in tree.iter().enumerate().skip(1) {
        if out.creator[i].is_none() {
            return Err(format!(
                "pid {}: parent {} is not in the dump",
                p.pid, p.ppid
            ));
        }
    }
    // Sessions.
    let mut session_helpers: BTreeMap<(usize, i32), usize> = BTreeMap::new();
    for i in 1..tree.len() {
        let t = &tree[i];
        let parent = out.creator[i].expect("checked above");
        if t.sid == t.pid || tree[parent].sid == t.sid {
            continue;
        }
        if let Some(ancestors) = ancestry_up_to_leader(tree, &parent_of, parent, t.sid) {
            for a in ancestors {
                if tree[a].sid != tree[a].pid {
                    return Err(format!(
                        "pid {}: session {} cannot be restored: ancestor {} left it without \
                         starting a session of its own",
                        t.pid, t.sid, tree[a].pid
                    ));
                }
                match out.born_sid[a] {
                    Some(s) if s != t.sid => {
                        return Err(format!(
                            "pid {}: forked children in two sessions ({s} and {}) before \
                             starting its own",
                            tree[a].pid, t.sid
                        ))
                    }
                    _ => out.born_sid[a] = Some(t.sid),
                }
            }
            continue;
        }
        let key = (parent, t.sid);
        let helper = match session_helpers.get(&key) {
            Some(h) => *h,
            None => {
                let h = session_helper(tree, &index, &mut out, parent, t, &mut pid_is_free)?;
                session_helpers.insert(key, h);
                h
            }
        };
        out.creator[i] = Some(helper);
        out.clone_parent[i] = out.creator[helper] == Some(parent);
    }
    // Process groups whose leader is gone.
    let root = &tree[0];
    for (i, t) in tree.iter().enumerate() {
        // The root's group, when it does not lead it, is criu's group at restore.
        if t.pgid == t.pid || t.pgid == root.pgid {
            continue;
        }
        if out.procs.iter().any(|p| p.pid == t.pgid) {
            continue;
        }
        out.procs.push(Proc {
            pid: t.pgid,
            ppid: t.pid,
            sid: t.sid,
            pgid: t.pgid,
            subreaper: false,
        });
        out.creator.push(Some(i));
        out.born_sid.push(None);
        out.clone_parent.push(false);
    }
    Ok(out)
}

/// The ancestors from `from` up to (without) the nearest one in session `sid`, if there is one:
/// a task never comes back to a session it left, so the ones between left it after forking.
fn ancestry_up_to_leader(
    tree: &[Proc],
    parent_of: &impl Fn(usize) -> Option<usize>,
    from: usize,
    sid: i32,
) -> Option<Vec<usize>> {
    let mut chain = Vec::new();
    let mut at = Some(from);
    while let Some(a) = at {
        if tree[a].sid == sid {
            return Some(chain);
        }
        chain.push(a);
        at = parent_of(a);
        if chain.len() > tree.len() {
            return None;
        }
    }
    None
}

/// Adds the helper that creates `orphan` (child of `parent`) in its session; returns its index.
fn session_helper(
    tree: &[Proc],
    index: &BTreeMap<i32, usize>,
    out: &mut Augmented,
    parent: usize,
    orphan: &Proc,
    pid_is_free: &mut impl FnMut(i32) -> bool,
) -> Result<usize, String> {
    let sid = orphan.sid;
    let (helper, creator) = match index.get(&sid) {
        // The leader still lives: a child of it, with a pid nobody uses, is in the session.
        Some(&leader) => {
            let pid = free_pid(tree, out, pid_is_free)?;
            let p = Proc {
                pid,
                ppid: sid,
                sid,
                pgid: tree[leader].pgid,
                subreaper: false,
            };
            (p, leader)
        }
        // The leader is gone: a helper with its pid starts the session again.
        None => {
            let p = Proc {
                pid: sid,
                ppid: tree[parent].pid,
                sid,
                pgid: sid,
                subreaper: false,
            };
            (p, parent)
        }
    };
    if out.procs[tree.len()..].iter().any(|p| p.pid == helper.pid) {
        return Err(format!(
            "pid {}: cannot restore session {sid}: its leader is gone, and its members have \
             different parents",
            orphan.pid
        ));
    }
    // When a helper of a living leader exits, its children go to the nearest child
    // subreaper above it. The leader may be one itself (it became one after the orphan's parent
    // died, the restore makes it one at once): then the helper is made with CLONE_PARENT, a
    // child of the leader's parent, whose nearest subreaper may be the orphan's parent.
    let mut helper = helper;
    let mut clone_parent = false;
    let mut reaper = if creator == parent {
        Some(parent)
    } else {
        nearest_subreaper(tree, out, creator)
    };
    if reaper == Some(creator) && creator != parent {
        if let Some(above) = out.creator[creator] {
            if nearest_subreaper(tree, out, above) == Some(parent) {
                helper.ppid = out.procs[above].pid;
                clone_parent = true;
                reaper = Some(parent);
            }
        }
    }
    if reaper != Some(parent) {
        return Err(format!(
            "pid {}: cannot restore session {sid}: its leader is not its ancestor, and its \
             parent {} is not the child subreaper that would adopt it",
            orphan.pid, tree[parent].pid
        ));
    }
    out.procs.push(helper);
    out.creator.push(Some(creator));
    out.born_sid.push(None);
    out.clone_parent.push(clone_parent);
    Ok(out.procs.len() - 1)
}

/// `from` or its nearest ancestor that is a child subreaper.
fn nearest_subreaper(tree: &[Proc], out: &Augmented, from: usize) -> Option<usize> {
    let mut at = Some(from);
    let mut steps = 0;
    while let Some(a) = at {
        if a < tree.len() && tree[a].subreaper {
            return Some(a);
        }
        at = out.creator[a];
        steps += 1;
        if steps > out.procs.len() {
            return None;
        }
    }
    None
}

/// The lowest pid above the reserved range that no task, session or group of the tree uses
/// and that is free on this machine.
fn free_pid(
    tree: &[Proc],
    out: &Augmented,
    pid_is_free: &mut impl FnMut(i32) -> bool,
) -> Result<i32, String> {
    let used: BTreeSet<i32> = tree
        .iter()
        .chain(&out.procs)
        .flat_map(|p| [p.pid, p.sid, p.pgid])
        .collect();
    (301..i32::MAX)
        .take(4_000_000)
        .find(|p| !used.contains(p) && pid_is_free(*p))
        .ok_or_else(|| "no free pid for a session helper".to_string())
}

/// A step of the plan that changes a created task's place in the tree (see plan.rs), run by
/// the task's actor inside the task.
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "Result<(), String>")]
pub enum TreeOp {
    /// Start the task's session, after the children born in its old one.
    Setsid,
    /// Join a process group.
    JoinGroup(i32),
    /// Reap an exited helper child, and drop the SIGCHLD it sent (the dumped pending signals
    /// come back later).
    Reap(i32),
}

pub fn run_tree_op(
    r: &mut Remote,
    images: &DumpImages,
    pid: i32,
    op: TreeOp,
) -> Result<(), RebuildError> {
    match op {
        TreeOp::Setsid => {
            r.call("setsid", libc::SYS_setsid, &[])?;
        }
        TreeOp::JoinGroup(pgid) => {
            // The root's group, when it did not lead it, is the one it has now (criu's).
            let root = &images.root().pstree;
            let pgid = if pgid as u32 == root.pgid && root.pgid != root.pid {
                nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(root.pid as i32)))
                    .map_err(|e| task_err(pid, format!("getpgid of the root: {e}")))?
                    .as_raw()
            } else {
                images.seen_by(pgid, pid)
            };
            let ret = r.try_call(libc::SYS_setpgid, &[0, pgid as u64])?;
            if ret < 0 {
                return Err(task_err(
                    pid,
                    format!("cannot join process group {pgid}: errno {}", -ret),
                ));
            }
        }
        TreeOp::Reap(child) => {
            let child = images.seen_by(child, pid);
            let ret = r.try_call(libc::SYS_wait4, &[child as u64, 0, libc::__WALL as u64, 0])?;
            if ret != i64::from(child) {
                return Err(task_err(
                    pid,
                    format!("cannot reap helper {child}: wait4 gave {ret}"),
                ));
            }
            // The signal set, then a zero timeout.
            let set = r.arg(&words(&[1u64 << (libc::SIGCHLD - 1), 0, 0]))?;
            // EAGAIN when the signal is not pending: nothing to drop.
            r.try_call(libc::SYS_rt_sigtimedwait, &[set, 0, set + 8, 8])?;
        }
    }
    Ok(())
}

/// A task of a test tree, not a subreaper: the tests here and in plan.rs build trees of them.
#[cfg(test)]
pub(super) fn test_proc(pid: i32, ppid: i32, sid: i32, pgid: i32) -> Proc {
    Proc {
        pid,
        ppid,
        sid,
        pgid,
        subreaper: false,
    }
}

#[cfg(test)]
mod tests {
    use super::test_proc as p;
    use super::*;

    #[test]
    fn plain_tree_needs_no_helper() {
        let tree = vec![p(10, 1, 10, 10), p(11, 10, 10, 11), p(12, 11, 10, 11)];
        let a = add_helpers(&tree, |_| true).unwrap();
        assert_eq!(a.procs.len(), 3);
        assert_eq!(a.creator, vec![None, Some(0), Some(1)]);
    }

    #[test]
    fn dead_session_leader_gets_a_helper_with_its_pid_that_clones_for_the_parent() {
        let root = p(10, 1, 10, 10);
        // 20 led session 20 and group 20, then exited; 21 and 22 were reparented to 10.
        let tree = vec![
            root,
            p(21, 10, 20, 20),
            p(22, 10, 20, 22),
            p(23, 22, 20, 22),
        ];
        let a = add_helpers(&tree, |_| true).unwrap();
        assert_eq!(a.procs.len(), 5);
        assert_eq!(a.procs[4], p(20, 10, 20, 20));
        assert_eq!(a.creator, vec![None, Some(4), Some(4), Some(2), Some(0)]);
        assert_eq!(a.clone_parent, vec![false, true, true, false, false]);
        assert!(a.is_helper(4));
    }

    #[test]
    fn orphan_of_a_living_leader_without_subreaper_is_refused() {
        let tree = vec![p(10, 1, 10, 10), p(11, 10, 11, 11), p(13, 10, 11, 11)];
        let e = add_helpers(&tree, |_| true).unwrap_err();
        assert!(e.contains("pid 13"), "{e}");
    }

    #[test]
    fn orphan_of_the_init_whose_leader_became_a_subreaper_later_gets_a_clone_parent_helper() {
        // zdtm child_subreaper_and_reparent: 1 is the init (a reaper), 5 its child, 6 leads
        // session 6 and is a subreaper now; 8, of session 6, was orphaned to the init before.
        let mut init = p(1, 0, 1, 1);
        init.subreaper = true;
        let mut leader = p(6, 5, 6, 6);
        leader.subreaper = true;
        let tree = vec![init, p(5, 1, 5, 5), leader, p(8, 1, 6, 6)];
        let a = add_helpers(&tree, |_| true).unwrap();
        assert_eq!(a.procs.len(), 5);
        // The helper is made by 6 with CLONE_PARENT (a child of 5) and makes 8.
        assert_eq!((a.procs[4].sid, a.procs[4].ppid), (6, 5));
        assert_eq!(a.creator[4], Some(2));
        assert!(a.clone_parent[4]);
        assert_eq!((a.creator[3], a.clone_parent[3]), (Some(4), false));
    }

    #[test]
    fn dead_session_shared_by_children_of_two_parents_is_refused() {
        let tree = vec![
            p(10, 1, 10, 10),
            p(11, 10, 10, 11),
            p(21, 10, 20, 20),
            p(22, 11, 20, 20),
        ];
        let e = add_helpers(&tree, |_| true).unwrap_err();
        assert!(e.contains("pid 22"), "{e}");
    }

    #[test]
    fn living_leader_elsewhere_gets_a_child_helper() {
        let mut root = p(10, 1, 10, 10);
        root.subreaper = true;
        // 11 leads session 11; its grandchild 13 was reparented to 10 when 12 exited.
        let tree = vec![root, p(11, 10, 11, 11), p(13, 10, 11, 11)];
        let a = add_helpers(&tree, |pid| pid != 301).unwrap();
        assert_eq!(a.procs[3], p(302, 11, 11, 11));
        assert_eq!(a.creator, vec![None, Some(0), Some(3), Some(1)]);
    }

    #[test]
    fn child_forked_before_setsid_marks_the_parent() {
        // 11 forked 12 in session 10, then called setsid.
        let tree = vec![p(10, 1, 10, 10), p(11, 10, 11, 11), p(12, 11, 10, 10)];
        let a = add_helpers(&tree, |_| true).unwrap();
        assert_eq!(a.procs.len(), 3);
        assert_eq!(a.born_sid, vec![None, Some(10), None]);
    }

    #[test]
    fn child_forked_before_setsid_in_the_roots_outside_session() {
        let tree = vec![p(10, 1, 5, 5), p(11, 10, 11, 11), p(12, 11, 5, 5)];
        let a = add_helpers(&tree, |_| true).unwrap();
        assert_eq!(a.born_sid, vec![None, Some(5), None]);
    }

    #[test]
    fn dead_group_leader_gets_a_helper_made_by_the_first_member() {
        let tree = vec![p(10, 1, 10, 10), p(11, 10, 10, 15), p(12, 10, 10, 15)];
        let a = add_helpers(&tree, |_| true).unwrap();
        assert_eq!(a.procs[3], p(15, 11, 10, 15));
        assert_eq!(a.creator[3], Some(1));
    }

    #[test]
    fn the_roots_outside_group_needs_no_helper() {
        let tree = vec![p(10, 1, 5, 5), p(11, 10, 5, 5)];
        let a = add_helpers(&tree, |_| true).unwrap();
        assert_eq!(a.procs.len(), 2);
    }
}
