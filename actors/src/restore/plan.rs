//! The order in which restored tasks come to life: every task is created by its real parent
//! (or by a helper, see helpers.rs), parents before children, in pstree.img order. Sessions
//! are started as tasks are created; process groups are joined once every task exists; then
//! helpers exit (their parents reap them) and zombies die.

use criu_proto::images::{CoreEntry, FsEntry, MmEntry, PstreeEntry, TaskKobjIdsEntry};

use super::helpers::{self, Augmented, Proc};
use criu_proto::dump_images::{DumpImages, TaskImages};
use criu_proto::dump_images::{TASK_ALIVE, TASK_STOPPED};

/// One step of the creation, run in order. Indices are task (actor) indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Actor `parent` clones task `pid` (with CLONE_PARENT: as a child of its own parent),
    /// then actor `child` adopts it; with `setsid` the child starts its own session at once,
    /// otherwise it leads its group if it should.
    Fork {
        parent: usize,
        child: usize,
        pid: i32,
        setsid: bool,
        clone_parent: bool,
    },
    /// The task starts its session late: after forking the children born in its old one.
    Setsid { task: usize },
    /// The task joins process group `pgid`, whose leader exists by now.
    JoinGroup { task: usize, pgid: i32 },
    /// A helper exits, a zombie dies the way it died.
    Exit { task: usize },
    /// Task `parent` reaps its exited helper child `pid`.
    Reap { parent: usize, pid: i32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Whether the root starts its session as soon as it exists.
    pub root_setsid: bool,
    pub steps: Vec<Step>,
    /// Which task creates each one (None for the root): its parent, or a helper.
    pub creator: Vec<Option<usize>>,
    /// Tasks from this index on in `images.tasks` are helpers (added by `creation_plan`).
    pub first_helper: usize,
}

impl Plan {
    pub fn is_helper(&self, task: usize) -> bool {
        task >= self.first_helper
    }
}

/// Plans the creation of the tree, adding to `images.tasks` the helpers it needs (as tasks
/// that exit with status 0 once the tree exists: `zombie == Some(0)`, no threads, no files).
pub fn creation_plan(images: &mut DumpImages, fresh_pid_ns: bool) -> Result<Plan, String> {
    for t in &images.tasks {
        let state = t
            .cores
            .first()
            .and_then(|c| c.tc.as_ref())
            .map_or(TASK_ALIVE, |tc| tc.task_state);
        if t.zombie.is_none() && state != TASK_ALIVE && state != TASK_STOPPED {
            return Err(format!(
                "pid {}: tasks in state {state} are not restored yet",
                t.pstree.pid
            ));
        }
    }
    let mut tree: Vec<Proc> = images
        .tasks
        .iter()
        .map(|t| Proc {
            pid: t.pstree.pid as i32,
            ppid: t.pstree.ppid as i32,
            sid: t.pstree.sid as i32,
            pgid: t.pstree.pgid as i32,
            subreaper: t
                .cores
                .first()
                .and_then(|c| c.tc.as_ref())
                .and_then(|tc| tc.child_subreaper)
                .unwrap_or(false),
        })
        .collect();
    // The init of a new pid namespace adopts the orphans in it, as a child subreaper would.
    if let Some(root) = tree.first_mut().filter(|_| fresh_pid_ns) {
        root.subreaper = true;
    }
    // In a new pid namespace every pid is free.
    let aug = helpers::add_helpers(&tree, |pid| {
        fresh_pid_ns || !std::path::Path::new(&format!("/proc/{pid}")).exists()
    })?;
    let zombies: Vec<bool> = images.tasks.iter().map(|t| t.zombie.is_some()).collect();
    let plan = order(&aug, &zombies)?;
    for h in &aug.procs[aug.tasks..] {
        tracing::info!(
            "restore: helper {} (session {}, group {}) made by {}",
            h.pid,
            h.sid,
            h.pgid,
            h.ppid
        );
        images.tasks.push(helper_task(h));
    }
    Ok(plan)
}

/// A helper as a task: a zombie-to-be that exits with status 0.
fn helper_task(h: &Proc) -> TaskImages {
    TaskImages {
        pstree: PstreeEntry {
            pid: h.pid as u32,
            ppid: h.ppid as u32,
            pgid: h.pgid as u32,
            sid: h.sid as u32,
            threads: vec![h.pid as u32],
        },
        cores: vec![CoreEntry::default()],
        ids: TaskKobjIdsEntry::default(),
        mm: MmEntry::default(),
        fs: FsEntry::default(),
        fds: Vec::new(),
        zombie: Some(0),
        host_tids: vec![Default::default()],
    }
}

/// What a task's session and group are while the plan runs.
#[derive(Clone, Copy)]
struct Now {
    sid: i32,
    pgid: i32,
}

/// The steps for an augmented tree, checking on the way that every task gets its session.
fn order(aug: &Augmented, zombies: &[bool]) -> Result<Plan, String> {
    let n = aug.procs.len();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, c) in aug.creator.iter().enumerate() {
        if let Some(c) = c {
            if zombies.get(*c).copied().unwrap_or(false) && !aug.is_helper(i) {
                return Err(format!(
                    "pid {}: its parent {} is a zombie",
                    aug.procs[i].pid, aug.procs[*c].pid
                ));
            }
            children[*c].push(i);
        }
    }
    let root = &aug.procs[0];
    let root_setsid = root.sid == root.pid && aug.born_sid[0].is_none();
    let mut now = vec![
        Now {
            sid: root.sid,
            pgid: root.pgid,
        };
        n
    ];
    let mut plan = Plan {
        root_setsid,
        steps: Vec::new(),
        creator: aug.creator.clone(),
        first_helper: aug.tasks,
    };
    // Depth first, without recursion: a 1000-deep chain is fine.
    let mut stack: Vec<Visit> = vec![Visit::Children(0)];
    while let Some(v) = stack.pop() {
        match v {
            Visit::Children(i) => {
                let born = aug.born_sid[i];
                let (first, rest): (Vec<usize>, Vec<usize>) = children[i].iter().partition(|c| {
                    born.is_some() && !sets_sid_at_once(aug, **c) && birth_sid(aug, **c) == born
                });
                // Pushed in reverse: popped as first, setsid, rest.
                for c in rest.iter().rev() {
                    stack.push(Visit::Create(i, *c));
                }
                if born.is_some() {
                    stack.push(Visit::Setsid(i));
                }
                for c in first.iter().rev() {
                    stack.push(Visit::Create(i, *c));
                }
            }
            Visit::Setsid(i) => {
                let pid = aug.procs[i].pid;
                now[i] = Now {
                    sid: pid,
                    pgid: pid,
                };
                plan.steps.push(Step::Setsid { task: i });
            }
            Visit::Create(parent, child) => {
                let c = &aug.procs[child];
                let setsid = sets_sid_at_once(aug, child);
                let want = birth_sid(aug, child).unwrap_or(c.sid);
                if !setsid && now[parent].sid != want {
                    return Err(format!(
                        "pid {}: would be born in session {} instead of {want}",
                        c.pid, now[parent].sid
                    ));
                }
                now[child] = if setsid {
                    Now {
                        sid: c.pid,
                        pgid: c.pid,
                    }
                } else if leads_group_at_once(c) {
                    Now {
                        sid: now[parent].sid,
                        pgid: c.pid,
                    }
                } else {
                    now[parent]
                };
                plan.steps.push(Step::Fork {
                    parent,
                    child,
                    pid: c.pid,
                    setsid,
                    clone_parent: aug.clone_parent[child],
                });
                stack.push(Visit::Children(child));
            }
        }
    }
    let created = plan
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Fork { .. }))
        .count();
    if created + 1 != n {
        return Err("the process tree has a loop".into());
    }
    for (i, p) in aug.procs.iter().enumerate() {
        if now[i].pgid == p.pgid {
            continue;
        }
        let leader = p.pgid == root.pgid || aug.procs.iter().any(|q| q.pid == p.pgid);
        if !leader {
            return Err(format!("pid {}: group {} has no leader", p.pid, p.pgid));
        }
        plan.steps.push(Step::JoinGroup {
            task: i,
            pgid: p.pgid,
        });
    }
    for h in (aug.tasks..n).rev() {
        plan.steps.push(Step::Exit { task: h });
        // A helper made with CLONE_PARENT is its creator's parent's child.
        let creator =
            aug.creator[h].ok_or_else(|| format!("helper {}: no creator", aug.procs[h].pid))?;
        let parent = if aug.clone_parent[h] {
            aug.creator[creator]
                .ok_or_else(|| format!("helper {}: its creator has no parent", aug.procs[h].pid))?
        } else {
            creator
        };
        plan.steps.push(Step::Reap {
            parent,
            pid: aug.procs[h].pid,
        });
    }
    for (z, _) in zombies.iter().enumerate().filter(|(_, z)| **z) {
        plan.steps.push(Step::Exit { task: z });
    }
    Ok(plan)
}

enum Visit {
    /// Create the children of a created task.
    Children(usize),
    /// The task calls setsid now.
    Setsid(usize),
    /// `.0` creates `.1`.
    Create(usize, usize),
}

/// A session leader that forked no child before its setsid starts its session at once.
fn sets_sid_at_once(aug: &Augmented, i: usize) -> bool {
    let p = &aug.procs[i];
    p.sid == p.pid && aug.born_sid[i].is_none()
}

/// A group leader that is not a session leader makes its group at once.
fn leads_group_at_once(p: &Proc) -> bool {
    p.pgid == p.pid && p.sid != p.pid
}

/// The session a task must be born in, if it does not start its own at once.
fn birth_sid(aug: &Augmented, i: usize) -> Option<i32> {
    Some(aug.born_sid[i].unwrap_or(aug.procs[i].sid))
}

#[cfg(test)]
mod tests {
    use super::helpers::test_proc as p;
    use super::*;

    /// A fork step with neither setsid nor CLONE_PARENT, as most are.
    fn fork(parent: usize, child: usize, pid: i32) -> Step {
        Step::Fork {
            parent,
            child,
            pid,
            setsid: false,
            clone_parent: false,
        }
    }

    /// A fork step whose child starts its own session at once.
    fn fork_setsid(parent: usize, child: usize, pid: i32) -> Step {
        let mut step = fork(parent, child, pid);
        if let Step::Fork { setsid, .. } = &mut step {
            *setsid = true;
        }
        step
    }

    /// A fork step with CLONE_PARENT: a helper clones a child of its own parent.
    fn fork_for_parent(parent: usize, child: usize, pid: i32) -> Step {
        let mut step = fork(parent, child, pid);
        if let Step::Fork { clone_parent, .. } = &mut step {
            *clone_parent = true;
        }
        step
    }

    fn plan_of(mut tree: Vec<Proc>, zombies: &[bool]) -> Plan {
        tree[0].subreaper = true;
        let aug = helpers::add_helpers(&tree, |_| true).unwrap();
        order(&aug, zombies).unwrap()
    }

    #[test]
    fn tree_order_with_sessions_and_groups_at_once() {
        let tree = vec![
            p(10, 1, 10, 10),
            p(11, 10, 10, 11),
            p(12, 11, 12, 12),
            p(13, 10, 10, 10),
        ];
        let plan = plan_of(tree, &[false; 4]);
        assert!(plan.root_setsid);
        assert_eq!(
            plan.steps,
            vec![fork(0, 1, 11), fork_setsid(1, 2, 12), fork(0, 3, 13)]
        );
    }

    #[test]
    fn late_setsid_comes_after_children_of_the_old_session() {
        // 11 forked 12 in session 10, then called setsid and forked 13.
        let tree = vec![
            p(10, 1, 10, 10),
            p(11, 10, 11, 11),
            p(12, 11, 10, 10),
            p(13, 11, 11, 11),
        ];
        let plan = plan_of(tree, &[false; 4]);
        assert_eq!(
            plan.steps,
            vec![
                fork(0, 1, 11),
                fork(1, 2, 12),
                Step::Setsid { task: 1 },
                fork(1, 3, 13),
            ]
        );
    }

    #[test]
    fn members_join_groups_and_helpers_exit_before_zombies_die() {
        // 20 led session 20 and exited; 21 (group 21) and 22 (group 21) were reparented to 10.
        // 14 is in group 11 though born from 10; 15 is a zombie.
        let tree = vec![
            p(10, 1, 10, 10),
            p(11, 10, 10, 11),
            p(14, 10, 10, 11),
            p(21, 10, 20, 21),
            p(22, 10, 20, 21),
            p(15, 10, 10, 10),
        ];
        let zombies = [false, false, false, false, false, true];
        let plan = plan_of(tree, &zombies);
        assert_eq!(plan.first_helper, 6);
        assert_eq!(
            plan.steps,
            vec![
                fork(0, 1, 11),
                fork(0, 2, 14),
                fork(0, 5, 15),
                fork_setsid(0, 6, 20),
                fork_for_parent(6, 3, 21),
                fork_for_parent(6, 4, 22),
                Step::JoinGroup { task: 2, pgid: 11 },
                Step::JoinGroup { task: 4, pgid: 21 },
                Step::Exit { task: 6 },
                Step::Reap { parent: 0, pid: 20 },
                Step::Exit { task: 5 },
            ]
        );
    }

    #[test]
    fn a_deep_chain_is_planned() {
        let mut tree = vec![p(1000, 1, 1000, 1000)];
        for pid in 1001..3000 {
            tree.push(p(pid, pid - 1, 1000, 1000));
        }
        let plan = plan_of(tree, &[false; 2000]);
        assert_eq!(plan.steps.len(), 1999);
    }
}
