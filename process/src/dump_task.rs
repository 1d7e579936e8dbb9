//! Dump of what a process shares between its threads: signal actions, interval and POSIX
//! timers, rlimits, umask, mm-level prctl state and brk. Asked through the leader with
//! injected syscalls, or read from /proc.

use criu_proto::images::{
    ItimerEntry, PosixTimerEntry, RlimitEntry, SaEntry, TaskRlimitsEntry, TaskTimersEntry,
};
use criu_tracee::{Injector, Tracee};

use crate::dump_thread::{call, read_u32, read_u64, Result, ThreadDumpError};

/// Process-wide state collected through the leader.
#[derive(Debug, Clone, Default)]
pub struct TaskMisc {
    pub sigactions: Vec<SaEntry>,
    pub timers: TaskTimersEntry,
    pub umask: u32,
    pub dumpable: i32,
    pub thp_disabled: bool,
    pub child_subreaper: bool,
    pub brk: u64,
    pub membarrier_mask: Option<u32>,
}

const PR_GET_DUMPABLE: u64 = 3;
const PR_GET_CHILD_SUBREAPER: u64 = 37;
const PR_GET_THP_DISABLE: u64 = 42;
const MEMBARRIER_CMD_GET_REGISTRATIONS: u64 = 1 << 9;
/// Highest signal number (`_NSIG`).
pub const SIGMAX: u32 = 64;
const RLIM_NLIMITS: u32 = 16;

const OFF_SA: usize = 0; // struct sigaction, 32 bytes
const OFF_TIMER: usize = 64; // itimerval / itimerspec, 32 bytes
const OFF_INT: usize = 96;
const SCRATCH: usize = 128;

fn itimer(inj: &Injector<'_>, tid: i32) -> Result<ItimerEntry> {
    let terr = |source| ThreadDumpError::Tracee { tid, source };
    Ok(ItimerEntry {
        isec: read_u64(inj, OFF_TIMER).map_err(terr)?,
        iusec: read_u64(inj, OFF_TIMER + 8).map_err(terr)?,
        vsec: read_u64(inj, OFF_TIMER + 16).map_err(terr)?,
        vusec: read_u64(inj, OFF_TIMER + 24).map_err(terr)?,
    })
}

/// Collects the process-wide state of process `pid` through its stopped leader.
pub fn dump_task_misc(pid: i32, leader: &mut Tracee) -> Result<TaskMisc> {
    let tid = leader.tid();
    let posix = criu_procfs::read_timers(pid).map_err(|source| ThreadDumpError::Proc {
        tid,
        what: "timers",
        source,
    })?;
    let mut inj =
        Injector::new(leader, SCRATCH).map_err(|source| ThreadDumpError::Tracee { tid, source })?;
    let terr = |source| ThreadDumpError::Tracee { tid, source };
    let base = inj.data_addr();
    let mut misc = TaskMisc::default();

    for sig in 1..=SIGMAX {
        if sig == libc::SIGKILL as u32 || sig == libc::SIGSTOP as u32 {
            continue;
        }
        call(
            &mut inj,
            tid,
            "rt_sigaction",
            libc::SYS_rt_sigaction,
            &[u64::from(sig), 0, base + OFF_SA as u64, 8],
        )?;
        misc.sigactions.push(SaEntry {
            sigaction: read_u64(&inj, OFF_SA).map_err(terr)?,
            flags: read_u64(&inj, OFF_SA + 8).map_err(terr)?,
            restorer: read_u64(&inj, OFF_SA + 16).map_err(terr)?,
            mask: read_u64(&inj, OFF_SA + 24).map_err(terr)?,
            compat_sigaction: Some(false),
            mask_extended: None,
        });
    }

    let mut it = [
        ItimerEntry::default(),
        ItimerEntry::default(),
        ItimerEntry::default(),
    ];
    for (which, slot) in it.iter_mut().enumerate() {
        call(
            &mut inj,
            tid,
            "getitimer",
            libc::SYS_getitimer,
            &[which as u64, base + OFF_TIMER as u64],
        )?;
        *slot = itimer(&inj, tid)?;
    }
    let [real, virt, prof] = it;
    let mut timers = TaskTimersEntry {
        real,
        virt,
        prof,
        posix: Vec::new(),
    };
    for t in &posix {
        call(
            &mut inj,
            tid,
            "timer_gettime",
            libc::SYS_timer_gettime,
            &[t.id as u64, base + OFF_TIMER as u64],
        )?;
        let overrun = call(
            &mut inj,
            tid,
            "timer_getoverrun",
            libc::SYS_timer_getoverrun,
            &[t.id as u64],
        )?;
        let v = itimer(&inj, tid)?;
        const SIGEV_THREAD_ID: i32 = 4;
        timers.posix.push(PosixTimerEntry {
            it_id: t.id as u32,
            clock_id: t.clock_id as u32,
            si_signo: t.signo as u32,
            it_sigev_notify: t.sigev_notify as u32,
            sival_ptr: t.sigev_value,
            overrun: overrun as u32,
            isec: v.isec,
            insec: v.iusec,
            vsec: v.vsec,
            vnsec: v.vusec,
            // /proc shows criu's view of the thread; the image holds the task's.
            notify_thread_id: (t.sigev_notify & SIGEV_THREAD_ID != 0)
                .then(|| criu_procfs::pid_seen_by(pid, t.notify_pid).unwrap_or(t.notify_pid)),
        });
    }
    misc.timers = timers;

    let old = call(&mut inj, tid, "umask", libc::SYS_umask, &[0])?;
    call(&mut inj, tid, "umask", libc::SYS_umask, &[old as u64])?;
    misc.umask = old as u32;
    misc.dumpable = call(
        &mut inj,
        tid,
        "prctl(PR_GET_DUMPABLE)",
        libc::SYS_prctl,
        &[PR_GET_DUMPABLE],
    )? as i32;
    misc.thp_disabled = call(
        &mut inj,
        tid,
        "prctl(PR_GET_THP_DISABLE)",
        libc::SYS_prctl,
        &[PR_GET_THP_DISABLE],
    )? != 0;
    call(
        &mut inj,
        tid,
        "prctl(PR_GET_CHILD_SUBREAPER)",
        libc::SYS_prctl,
        &[PR_GET_CHILD_SUBREAPER, base + OFF_INT as u64],
    )?;
    misc.child_subreaper = read_u32(&inj, OFF_INT).map_err(terr)? != 0;
    misc.brk = call(&mut inj, tid, "brk", libc::SYS_brk, &[0])? as u64;
    // Older kernels do not know the query: no registrations to keep then.
    let mask = inj
        .syscall(
            libc::SYS_membarrier,
            &[MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0],
        )
        .map_err(terr)?;
    misc.membarrier_mask = (mask > 0).then_some(mask as u32);
    inj.finish().map_err(terr)?;
    Ok(misc)
}

/// Limits from `/proc/PID/limits` (prlimit on another uid's task needs CAP_SYS_RESOURCE),
/// in RLIMIT_* order, unlimited as all ones, as CRIU stores them.
pub fn dump_rlimits(pid: i32) -> std::result::Result<TaskRlimitsEntry, criu_procfs::ProcError> {
    let rows = criu_procfs::read_limits(pid)?;
    let mut rlimits = vec![
        RlimitEntry {
            cur: u64::MAX,
            max: u64::MAX
        };
        RLIM_NLIMITS as usize
    ];
    for r in rows {
        if let Some(slot) = rlimits.get_mut(r.resource as usize) {
            *slot = RlimitEntry {
                cur: r.soft,
                max: r.hard,
            };
        }
    }
    Ok(TaskRlimitsEntry { rlimits })
}
