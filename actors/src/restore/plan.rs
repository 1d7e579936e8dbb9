//! The order in which restored tasks come to life: every task is created by its real parent,
//! parents before children, in pstree.img order.

use std::collections::BTreeMap;

use super::images::DumpImages;

/// One creation: actor `parent` clones task `pid`, then actor `child` adopts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForkStep {
    pub parent: usize,
    pub child: usize,
    pub pid: i32,
}

/// The fork steps after the root, or why the tree cannot be restored yet.
pub fn creation_order(images: &DumpImages) -> Result<Vec<ForkStep>, String> {
    let index: BTreeMap<u32, usize> = images
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.pstree.pid, i))
        .collect();
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
    let mut steps = Vec::new();
    for (i, t) in images.tasks.iter().enumerate().skip(1) {
        let parent = *index.get(&t.pstree.ppid).ok_or_else(|| {
            format!(
                "pid {}: parent {} is not in the dump (orphans are not restored yet)",
                t.pstree.pid, t.pstree.ppid
            )
        })?;
        if images.tasks[parent].zombie.is_some() {
            return Err(format!(
                "pid {}: its parent {} is a zombie",
                t.pstree.pid, t.pstree.ppid
            ));
        }
        if parent >= i {
            return Err(format!(
                "pid {}: listed before its parent {}",
                t.pstree.pid, t.pstree.ppid
            ));
        }
        steps.push(ForkStep {
            parent,
            child: i,
            pid: t.pstree.pid as i32,
        });
    }
    Ok(steps)
}

/// `task_core_entry.task_state` of a running task.
const TASK_ALIVE: u32 = 1;
/// ... and of a task stopped by a signal: restored stopped.
pub const TASK_STOPPED: u32 = 3;
