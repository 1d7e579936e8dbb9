//! The core images of a dump (`core-TID.img`, one per thread): each thread's registers and
//! state, the leader's carrying the process-wide part (`TaskCoreEntry`).

use criu_procfs::{ProcError, Stat};
use criu_proto::dump_images::{TASK_ALIVE, TASK_DEAD, TASK_STOPPED};
use criu_proto::images::{
    core_entry::March, CoreEntry, SignalQueueEntry, TaskCoreEntry, TaskRlimitsEntry,
};

use crate::dump_task::TaskMisc;
use crate::dump_thread::ThreadDump;

/// A zombie's core: its state, exit status and name, nothing else (as CRIU writes it).
/// `exit_code` is the raw wait status the parent would get, as /proc/PID/stat shows it; the
/// other fields stay zero, as in CRIU's images (a dead task's flags mean nothing on restore).
pub fn zombie_core(stat: &Stat) -> CoreEntry {
    CoreEntry {
        mtype: March::X8664 as i32,
        tc: Some(TaskCoreEntry {
            task_state: TASK_DEAD,
            exit_code: stat.exit_code as u32,
            comm: stat.comm.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What the leader's core carries for the whole process, besides what `TaskMisc` holds.
pub struct ProcessState<'a> {
    pub stat: &'a Stat,
    /// Stopped by a signal at dump time, and which one.
    pub stopped: Option<u32>,
    pub misc: &'a TaskMisc,
    pub rlimits: TaskRlimitsEntry,
    pub signals_s: SignalQueueEntry,
}

/// The audit login uid as the task sees it: /proc shows criu's view, and the restore writes
/// it from inside the task (unset stays unset; an id its user namespace does not map, too).
fn loginuid_inside(pid: i32) -> Option<u32> {
    let v = criu_procfs::read_loginuid(pid).ok()?;
    if v == u32::MAX {
        return Some(v);
    }
    let map = criu_procfs::read_id_map(pid, false).ok()?;
    Some(map.inside(v).unwrap_or(v))
}

/// One core per thread, in `threads` order (leader first); the leader's carries the
/// process-wide part.
pub fn core_entries(
    pid: i32,
    threads: &[ThreadDump],
    p: ProcessState<'_>,
) -> Result<Vec<(i32, CoreEntry)>, ProcError> {
    let tc = TaskCoreEntry {
        task_state: if p.stopped.is_some() {
            TASK_STOPPED
        } else {
            TASK_ALIVE
        },
        exit_code: 0,
        personality: criu_procfs::read_personality(pid)?,
        flags: p.stat.flags,
        blk_sigset: threads.first().and_then(|t| t.core.blk_sigset).unwrap_or(0),
        comm: p.stat.comm.clone(),
        timers: Some(p.misc.timers.clone()),
        rlimits: Some(p.rlimits),
        signals_s: Some(p.signals_s),
        loginuid: loginuid_inside(pid),
        oom_score_adj: criu_procfs::read_oom_score_adj(pid).ok(),
        sigactions: p.misc.sigactions.clone(),
        child_subreaper: Some(p.misc.child_subreaper),
        stop_signo: p.stopped,
        membarrier_registration_mask: p.misc.membarrier_mask,
        ..Default::default()
    };
    Ok(threads
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let core = CoreEntry {
                mtype: March::X8664 as i32,
                thread_info: Some(t.info.clone()),
                tc: (i == 0).then(|| tc.clone()),
                thread_core: Some(t.core.clone()),
                ..Default::default()
            };
            (t.tid, core)
        })
        .collect())
}
