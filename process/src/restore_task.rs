//! The restore half of a task's own state besides memory and files, set from inside the
//! task with injected syscalls: signal handlers, limits, itimers, personality, name, child
//! subreaper, dumpable, oom_score_adj and POSIX timers (per process); sigaltstack, rseq,
//! scheduling and the parent-death signal (per thread).

use criu_proto::images::{CoreEntry, MmEntry};
use criu_tracee::remote::{words, Remote};
use criu_tracee::TraceeError;

#[derive(Debug, thiserror::Error)]
pub enum RestoreTaskError {
    #[error(transparent)]
    Tracee(#[from] TraceeError),
    /// The pid is named by the caller's message.
    #[error("{what}")]
    Task { pid: i32, what: String },
}

fn task_err(pid: i32, what: impl Into<String>) -> RestoreTaskError {
    RestoreTaskError::Task {
        pid,
        what: what.into(),
    }
}

/// Signal handlers, limits, timers and per-process attributes from the core image. Handlers
/// and limits the task already has (every stub starts with default handlers and criu's
/// limits) are not set again: each costs an injected call.
pub fn restore_task_core(
    r: &mut Remote,
    pid: i32,
    core: &CoreEntry,
) -> Result<(), RestoreTaskError> {
    let Some(tc) = &core.tc else { return Ok(()) };
    // Entries run over signals 1..=64 without SIGKILL and SIGSTOP, as CRIU writes them.
    let signals = (1..=64u64).filter(|s| *s != libc::SIGKILL as u64 && *s != libc::SIGSTOP as u64);
    for (sig, sa) in signals.zip(&tc.sigactions) {
        let action = [sa.sigaction, sa.flags, sa.restorer, sa.mask];
        if action == [0; 4] {
            continue;
        }
        let act = r.arg(&words(&action))?;
        r.call("rt_sigaction", libc::SYS_rt_sigaction, &[sig, act, 0, 8])?;
    }
    if let Some(rl) = &tc.rlimits {
        let now = criu_procfs::read_limits(pid).unwrap_or_default();
        for (res, lim) in rl.rlimits.iter().enumerate() {
            let same = |l: &&criu_procfs::Rlimit| {
                l.resource as usize == res && (l.soft, l.hard) == (lim.cur, lim.max)
            };
            if now.iter().any(|l| same(&l)) {
                continue;
            }
            let at = r.arg(&words(&[lim.cur, lim.max]))?;
            let ret = r.try_call(libc::SYS_prlimit64, &[0, res as u64, at, 0])?;
            if ret < 0 {
                tracing::warn!(
                    "rlimit {res}: cannot set {}/{}: errno {}",
                    lim.cur,
                    lim.max,
                    -ret
                );
            }
        }
    }
    if let Some(timers) = &tc.timers {
        for (which, it) in [
            (libc::ITIMER_REAL, &timers.real),
            (libc::ITIMER_VIRTUAL, &timers.virt),
            (libc::ITIMER_PROF, &timers.prof),
        ] {
            if it.vsec != 0 || it.vusec != 0 {
                let at = r.arg(&words(&[it.isec, it.iusec, it.vsec, it.vusec]))?;
                r.call("setitimer", libc::SYS_setitimer, &[which as u64, at, 0])?;
            }
        }
    }
    r.call(
        "personality",
        libc::SYS_personality,
        &[u64::from(tc.personality)],
    )?;
    let mut comm = tc.comm.as_bytes().to_vec();
    comm.truncate(15);
    comm.push(0);
    let at = r.arg(&comm)?;
    r.call(
        "prctl(PR_SET_NAME)",
        libc::SYS_prctl,
        &[libc::PR_SET_NAME as u64, at, 0, 0, 0],
    )?;
    if tc.child_subreaper == Some(true) {
        become_subreaper(r)?;
    }
    Ok(())
}

/// The per-thread sigaltstack and robust futex list (a new thread starts with none).
pub fn restore_thread_core(r: &mut Remote, core: &CoreEntry) -> Result<(), RestoreTaskError> {
    let Some(tc) = core.thread_core.as_ref() else {
        return Ok(());
    };
    if let Some(sas) = &tc.sas {
        if sas.ss_flags & libc::SS_DISABLE as u32 == 0 {
            let at = r.arg(&words(&[sas.ss_sp, u64::from(sas.ss_flags), sas.ss_size]))?;
            r.call("sigaltstack", libc::SYS_sigaltstack, &[at, 0])?;
        }
    }
    if tc.futex_rla != 0 {
        r.call(
            "set_robust_list",
            libc::SYS_set_robust_list,
            &[tc.futex_rla, u64::from(tc.futex_rla_len)],
        )?;
    }
    Ok(())
}

/// The dumped parent-death signal. Set last: until then the stub keeps SIGKILL, so it dies
/// with criu instead of running half restored.
pub fn restore_pdeath_sig(r: &mut Remote, core: &CoreEntry) -> Result<(), RestoreTaskError> {
    let pdeath = core
        .thread_core
        .as_ref()
        .and_then(|c| c.pdeath_sig)
        .unwrap_or(0);
    r.call(
        "prctl(PR_SET_PDEATHSIG)",
        libc::SYS_prctl,
        &[libc::PR_SET_PDEATHSIG as u64, u64::from(pdeath), 0, 0, 0],
    )?;
    Ok(())
}

/// Makes the calling (injected) task a child subreaper, as it was dumped.
pub fn become_subreaper(r: &mut Remote) -> Result<(), RestoreTaskError> {
    r.call(
        "prctl(PR_SET_CHILD_SUBREAPER)",
        libc::SYS_prctl,
        &[libc::PR_SET_CHILD_SUBREAPER as u64, 1, 0, 0, 0],
    )?;
    Ok(())
}

/// Registers the thread's rseq area again, as dumped.
pub fn restore_rseq(r: &mut Remote, core: &CoreEntry) -> Result<(), RestoreTaskError> {
    if let Some(rs) = core
        .thread_core
        .as_ref()
        .and_then(|c| c.rseq_entry.as_ref())
    {
        if rs.rseq_abi_pointer != 0 {
            let area = (rs.rseq_abi_pointer, rs.rseq_abi_size, rs.signature);
            rseq(r, "rseq", area, 0)?;
        }
    }
    Ok(())
}

/// The rseq syscall on an area (pointer, size, signature), which registering and
/// unregistering (`flags`) both name the same way.
pub fn rseq(
    r: &mut Remote,
    what: &'static str,
    (pointer, size, signature): (u64, u32, u32),
    flags: u64,
) -> Result<(), RestoreTaskError> {
    let args = [pointer, u64::from(size), flags, u64::from(signature)];
    r.call(what, libc::SYS_rseq, &args)?;
    Ok(())
}

/// The dumpable flag, set after every thread's credentials: a change of uids resets it.
pub fn restore_dumpable(r: &mut Remote, mm: &MmEntry) -> Result<(), RestoreTaskError> {
    if let Some(dumpable) = mm.dumpable {
        r.call(
            "prctl(PR_SET_DUMPABLE)",
            libc::SYS_prctl,
            &[libc::PR_SET_DUMPABLE as u64, dumpable as u64, 0, 0, 0],
        )?;
    }
    Ok(())
}

/// Process attributes kept in the mm and task core that are set from outside or by prctl.
pub fn restore_attributes(
    r: &mut Remote,
    pid: i32,
    mm: &MmEntry,
    core: &CoreEntry,
) -> Result<(), RestoreTaskError> {
    if let Some(adj) = core.tc.as_ref().and_then(|tc| tc.oom_score_adj) {
        std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string())
            .map_err(|e| task_err(pid, format!("cannot set oom_score_adj {adj}: {e}")))?;
    }
    // A task inherits its creator's flag: set only where it differs.
    if let Some(disabled) = mm.thp_disabled {
        let now = criu_procfs::read_status(pid).map(|s| s.thp_enabled == Some(false));
        if now.ok() != Some(disabled) {
            r.call(
                "prctl(PR_SET_THP_DISABLE)",
                libc::SYS_prctl,
                &[PR_SET_THP_DISABLE, u64::from(disabled), 0, 0, 0],
            )?;
        }
    }
    if let Some(tc) = &core.tc {
        restore_membarrier(r, tc.membarrier_registration_mask.unwrap_or(0))?;
        if let Some(uid) = tc.loginuid {
            restore_loginuid(r, pid, uid)?;
        }
    }
    Ok(())
}

const PR_SET_THP_DISABLE: u64 = 41;

/// Registers again for every membarrier command the dump saw registered: each bit of the mask
/// (MEMBARRIER_CMD_GET_REGISTRATIONS) is the command that registers it.
fn restore_membarrier(r: &mut Remote, mask: u32) -> Result<(), RestoreTaskError> {
    for bit in (0..32).filter(|b| mask & (1 << b) != 0) {
        r.call(
            "membarrier(register)",
            libc::SYS_membarrier,
            &[1 << bit, 0, 0],
        )?;
    }
    Ok(())
}

/// The audit login uid. Only the task itself may write its /proc file, and a change needs
/// CAP_AUDIT_CONTROL, which the stub still has here (credentials come later).
fn restore_loginuid(r: &mut Remote, pid: i32, uid: u32) -> Result<(), RestoreTaskError> {
    if criu_procfs::read_loginuid(pid).ok() == Some(uid) {
        return Ok(());
    }
    let fd = r.open("/proc/self/loginuid", libc::O_WRONLY | libc::O_CLOEXEC)?;
    let text = uid.to_string();
    let at = r.arg(text.as_bytes())?;
    let written = r.try_call(libc::SYS_write, &[fd, at, text.len() as u64])?;
    r.close(fd)?;
    if written < 0 {
        return Err(task_err(
            pid,
            format!("cannot set loginuid {uid}: errno {}", -written),
        ));
    }
    Ok(())
}

/// Scheduling policy, priority and nice value of the calling (injected) thread.
pub fn restore_sched(r: &mut Remote, core: &CoreEntry) -> Result<(), RestoreTaskError> {
    let Some(tc) = &core.thread_core else {
        return Ok(());
    };
    if let Some(policy) = tc.sched_policy {
        let prio = tc.sched_prio.unwrap_or(0);
        let at = r.arg(&prio.to_le_bytes())?;
        r.call(
            "sched_setscheduler",
            libc::SYS_sched_setscheduler,
            &[0, u64::from(policy), at],
        )?;
    }
    if let Some(nice) = tc.sched_nice {
        r.call(
            "setpriority",
            libc::SYS_setpriority,
            &[libc::PRIO_PROCESS as u64, 0, nice as i64 as u64],
        )?;
    }
    Ok(())
}

const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;

/// POSIX timers with their dumped ids (the kernel takes the requested id while
/// PR_TIMER_CREATE_RESTORE_IDS is on), signal, clock and remaining time. Run after the threads
/// exist, since a timer may signal one of them.
pub fn restore_posix_timers(
    r: &mut Remote,
    pid: i32,
    core: &CoreEntry,
) -> Result<(), RestoreTaskError> {
    let Some(timers) = core
        .tc
        .as_ref()
        .and_then(|tc| tc.timers.as_ref())
        .filter(|t| !t.posix.is_empty())
    else {
        return Ok(());
    };
    r.call(
        "prctl(PR_TIMER_CREATE_RESTORE_IDS, on)",
        libc::SYS_prctl,
        &[PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0],
    )
    .map_err(|e| {
        task_err(
            pid,
            format!("this kernel cannot recreate POSIX timers with their ids: {e}"),
        )
    })?;
    for t in &timers.posix {
        // struct sigevent (64 bytes: value, signo, notify, thread id), then the timer id.
        let mut block = vec![0u8; 68];
        block[..8].copy_from_slice(&t.sival_ptr.to_le_bytes());
        block[8..12].copy_from_slice(&t.si_signo.to_le_bytes());
        block[12..16].copy_from_slice(&t.it_sigev_notify.to_le_bytes());
        block[16..20].copy_from_slice(&t.notify_thread_id.unwrap_or(0).to_le_bytes());
        block[64..68].copy_from_slice(&t.it_id.to_le_bytes());
        let at = r.arg(&block)?;
        r.call(
            "timer_create",
            libc::SYS_timer_create,
            &[u64::from(t.clock_id), at, at + 64],
        )?;
        let mut id = [0u8; 4];
        r.inj.read_data(criu_tracee::remote::ARG_AT + 64, &mut id)?;
        if u32::from_le_bytes(id) != t.it_id {
            return Err(task_err(
                pid,
                format!(
                    "timer_create gave id {} instead of {}",
                    u32::from_le_bytes(id),
                    t.it_id
                ),
            ));
        }
        if t.vsec != 0 || t.vnsec != 0 {
            let its = r.arg(&words(&[t.isec, t.insec, t.vsec, t.vnsec]))?;
            r.call(
                "timer_settime",
                libc::SYS_timer_settime,
                &[u64::from(t.it_id), 0, its, 0],
            )?;
        }
    }
    r.call(
        "prctl(PR_TIMER_CREATE_RESTORE_IDS, off)",
        libc::SYS_prctl,
        &[PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0],
    )?;
    Ok(())
}
