//! Threads of a restored task: each thread's own state (signal stack, rseq, private signals,
//! credentials, registers), set from inside it once its leader has cloned it.

use std::time::Duration;

use criu_process::regs::{entry_to_gpregs, entry_to_xsave};
use criu_process::{restore_creds, restore_signals};
use criu_proto::images::{CoreEntry, SeccompFilter};
use criu_tracee::regs::xsave_size;
use criu_tracee::remote::{Remote, DATA_LEN};
use criu_tracee::{Injector, Tracee};

use super::rebuild::{self, RebuildError};

/// Per-thread state: signal stack, rseq, private signals, clear_tid address, seccomp (with
/// `seccomp_filters` of the dump), credentials, and last the parent-death signal.
pub fn restore_thread_state(
    r: &mut Remote,
    tgid: i32,
    tid: i32,
    core: &CoreEntry,
    seccomp_filters: &[SeccompFilter],
) -> Result<(), RebuildError> {
    rebuild::restore_thread_core(r, core)?;
    rebuild::restore_rseq(r, core)?;
    rebuild::restore_sched(r, core)?;
    if let Some(q) = core.thread_core.as_ref().and_then(|c| c.signals_p.as_ref()) {
        restore_signals::queue_private(r, tgid, tid, q)?;
    }
    if let Some(addr) = core
        .thread_info
        .as_ref()
        .map(|i| i.clear_tid_addr)
        .filter(|a| *a != 0)
    {
        r.call("set_tid_address", libc::SYS_set_tid_address, &[addr])?;
    }
    if let Some(tc) = &core.thread_core {
        criu_process::seccomp::restore(r, tid, tc, seccomp_filters)?;
    }
    if let Some(creds) = core.thread_core.as_ref().and_then(|c| c.creds.as_ref()) {
        restore_creds::restore_creds(r, creds)?;
    }
    rebuild::restore_pdeath_sig(r, core)?;
    Ok(())
}

/// Takes over a freshly cloned thread and gives it its state and registers.
/// `(tgid, tid)` as the task sees them, `host` as criu does.
pub fn rebuild_thread(
    (tgid, tid): (i32, i32),
    host: (i32, i32),
    core: &CoreEntry,
    seccomp_filters: &[SeccompFilter],
    timeout: Duration,
) -> Result<Tracee, RebuildError> {
    let info = core
        .thread_info
        .as_ref()
        .ok_or_else(|| RebuildError::Task {
            pid: tid,
            what: "no thread info".into(),
        })?;
    let mut thread = Tracee::seize_stopped(host.0, host.1, timeout)?;
    {
        let mut inj = Injector::for_restore(&mut thread, DATA_LEN)?;
        restore_thread_state(&mut Remote::new(&mut inj), tgid, tid, core, seccomp_filters)?;
        let regs = entry_to_gpregs(&info.gpregs).for_detach_at_syscall_exit();
        inj.finish_restored(&regs)?;
    }
    finish_thread(&mut thread, core)?;
    Ok(thread)
}

/// FPU state and signal mask, set once the registers are in place.
pub fn finish_thread(t: &mut Tracee, core: &CoreEntry) -> Result<(), RebuildError> {
    if let Some(info) = &core.thread_info {
        t.set_xsave(&entry_to_xsave(&info.fpregs, xsave_size()))?;
    }
    let sigmask = core
        .thread_core
        .as_ref()
        .and_then(|c| c.blk_sigset)
        .or(core.tc.as_ref().map(|tc| tc.blk_sigset))
        .unwrap_or(0);
    t.set_sigmask(sigmask)?;
    // Last, with no return to user space left before the release: the rseq critical section
    // the thread was in, which the kernel clears when the thread runs outside it (as it did
    // for every injection).
    let rseq = core
        .thread_core
        .as_ref()
        .and_then(|c| c.rseq_entry.as_ref());
    if let Some((abi, cs)) = rseq.and_then(|r| Some((r.rseq_abi_pointer, r.rseq_cs_pointer?))) {
        t.write_mem(abi + 8, &cs.to_le_bytes())?;
    }
    Ok(())
}
