//! Rebuilding one process inside its stub by injected syscalls (design.md section 5): the
//! stub's own memory and fds go, the dumped ones come back, then the task's own state.
//! Registers are set last, by the caller, when the scratch area goes away.

use criu_memory::restore::{advice, plan, MapPlan};
use criu_proto::images::{CoreEntry, FdTypes, MmEntry};
use criu_tracee::{RseqConfiguration, TraceeError};

use super::images::{DumpImages, TaskImages};
use super::shared::SharedFiles;
use criu_tracee::remote::{words, Remote};

const TASK_SIZE: u64 = 0x7fff_ffff_f000;
const ARCH_MAP_VDSO_64: u64 = 0x2003;
const RSEQ_FLAG_UNREGISTER: u64 = 1;
const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Tracee(#[from] TraceeError),
    #[error(transparent)]
    Memory(#[from] criu_memory::restore::RestoreMemError),
    /// The pid is named by the caller's message.
    #[error("{what}")]
    Task { pid: i32, what: String },
}

fn task_err(pid: i32, what: impl Into<String>) -> RebuildError {
    RebuildError::Task { pid, what: what.into() }
}

/// Drops what the stub inherited from criu: its rseq registration, fds and mappings.
pub fn clear_stub(r: &mut Remote, t: &TaskImages, rseq: RseqConfiguration) -> Result<(), RebuildError> {
    let pid = t.pid();
    if rseq.rseq_abi_pointer != 0 {
        r.call(
            "rseq(unregister)",
            libc::SYS_rseq,
            &[rseq.rseq_abi_pointer, u64::from(rseq.rseq_abi_size), RSEQ_FLAG_UNREGISTER, u64::from(rseq.signature)],
        )?;
    }
    r.call("close_range", libc::SYS_close_range, &[0, u64::from(u32::MAX), 0])?;
    let (scratch, len) = r.inj.scratch_mapping();
    if let Some(v) = t.mm.vmas.iter().find(|v| v.start < scratch + len && scratch < v.end) {
        return Err(task_err(pid, format!("scratch area {scratch:#x} overlaps dumped area {:#x}-{:#x}", v.start, v.end)));
    }
    r.call("munmap(below scratch)", libc::SYS_munmap, &[0, scratch])?;
    r.call("munmap(above scratch)", libc::SYS_munmap, &[scratch + len, TASK_SIZE - (scratch + len)])?;
    Ok(())
}

/// Sets the mm fields (code/data/brk/stack/args/env, auxv, exe file) with PR_SET_MM_MAP.
pub fn set_mm(r: &mut Remote, all: &DumpImages, mm: &MmEntry, pid: i32) -> Result<(), RebuildError> {
    let exe = all
        .reg_path(mm.exe_file_id)
        .ok_or_else(|| task_err(pid, format!("exe file id {} not in files.img", mm.exe_file_id)))?
        .to_string();
    let exe_fd = r.open(&exe, libc::O_RDONLY | libc::O_CLOEXEC)?;
    let auxv = words(&mm.mm_saved_auxv);
    let head_len = 13 * 8;
    let mut block = words(&[
        mm.mm_start_code,
        mm.mm_end_code,
        mm.mm_start_data,
        mm.mm_end_data,
        mm.mm_start_brk,
        mm.mm_brk,
        mm.mm_start_stack,
        mm.mm_arg_start,
        mm.mm_arg_end,
        mm.mm_env_start,
        mm.mm_env_end,
    ]);
    // auxv pointer, then auxv_size and exe_fd as u32; the auxv words follow the struct.
    let base = r.arg(&vec![0u8; head_len + auxv.len()])?;
    block.extend_from_slice(&(base + head_len as u64).to_le_bytes());
    block.extend_from_slice(&(auxv.len() as u32).to_le_bytes());
    block.extend_from_slice(&(exe_fd as u32).to_le_bytes());
    block.extend_from_slice(&auxv);
    let at = r.arg(&block)?;
    r.call("prctl(PR_SET_MM_MAP)", libc::SYS_prctl, &[PR_SET_MM, PR_SET_MM_MAP, at, head_len as u64, 0])?;
    r.close(exe_fd)?;
    Ok(())
}

/// Maps every dumped VMA at its address (private pages are filled afterwards from outside;
/// shared memory comes already filled from criu through `criu_pidfd`).
pub fn map_vmas(r: &mut Remote, all: &DumpImages, shared: &SharedFiles, t: &TaskImages, criu_pidfd: u64) -> Result<(), RebuildError> {
    let pid = t.pid();
    let mut vdso_start = None;
    for vma in &t.mm.vmas {
        match plan(vma)? {
            MapPlan::Skip => {}
            MapPlan::Vdso => {
                vdso_start.get_or_insert(vma.start);
            }
            MapPlan::Mmap { addr, len, prot, flags, file_id, offset } => {
                let fd = match file_id {
                    None => u64::MAX,
                    Some(id) => {
                        let path = all
                            .reg_path(id)
                            .ok_or_else(|| task_err(pid, format!("vma {addr:#x}: file id {id} not in files.img")))?
                            .to_string();
                        let shared_write = flags & libc::MAP_SHARED as u64 != 0 && prot & libc::PROT_WRITE as u64 != 0;
                        let mode = if shared_write { libc::O_RDWR } else { libc::O_RDONLY };
                        r.open(&path, mode | libc::O_CLOEXEC)?
                    }
                };
                let got = r.call("mmap", libc::SYS_mmap, &[addr, len, prot, flags, fd, offset])?;
                if file_id.is_some() {
                    r.close(fd)?;
                }
                if got as u64 != addr {
                    return Err(task_err(pid, format!("mmap at {addr:#x} landed at {got:#x}")));
                }
                for adv in advice(vma) {
                    r.call("madvise", libc::SYS_madvise, &[addr, len, adv as u64])?;
                }
            }
            MapPlan::Shared { addr, len, prot, flags, memfd_file, shmid, offset } => {
                let shmid = match memfd_file {
                    None => shmid,
                    Some(id) => u64::from(
                        all.memfd_inode(id)
                            .ok_or_else(|| task_err(pid, format!("vma {addr:#x}: memfd file {id} not in files.img/memfd.img")))?
                            .shmid,
                    ),
                };
                let object = shared.shmem(shmid).ok_or_else(|| task_err(pid, format!("vma {addr:#x}: shared memory {shmid} was not created")))?;
                let fd = r.call("pidfd_getfd", libc::SYS_pidfd_getfd, &[criu_pidfd, object as u64, 0])? as u64;
                let flags = flags & !(libc::MAP_ANONYMOUS as u64);
                let got = r.call("mmap(shared)", libc::SYS_mmap, &[addr, len, prot, flags, fd, offset])?;
                r.close(fd)?;
                if got as u64 != addr {
                    return Err(task_err(pid, format!("shared mmap at {addr:#x} landed at {got:#x}")));
                }
            }
        }
    }
    if let Some(start) = vdso_start {
        r.call("arch_prctl(ARCH_MAP_VDSO_64)", libc::SYS_arch_prctl, &[ARCH_MAP_VDSO_64, start])?;
    }
    Ok(())
}

/// Reopens the task's files at their numbers: regular files by path at their offset; pipes
/// and other shared objects are taken from criu with pidfd_getfd.
pub fn restore_fds(r: &mut Remote, all: &DumpImages, shared: &SharedFiles, t: &TaskImages, criu_pidfd: u64) -> Result<(), RebuildError> {
    let pid = t.pid();
    for fd in &t.fds {
        let file = all.files.get(&fd.id).ok_or_else(|| task_err(pid, format!("fd {}: file id {} not in files.img", fd.fd, fd.id)))?;
        let opened = match FdTypes::try_from(fd.r#type) {
            Ok(FdTypes::Reg) => {
                let reg = file.reg.as_ref().ok_or_else(|| task_err(pid, format!("fd {}: no reg entry", fd.fd)))?;
                let flags = (reg.flags as i32) & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY);
                let opened = r.open(&reg.name, flags)?;
                if reg.pos != 0 && reg.flags & libc::O_PATH as u32 == 0 {
                    r.call("lseek", libc::SYS_lseek, &[opened, reg.pos, libc::SEEK_SET as u64])?;
                }
                opened
            }
            Ok(FdTypes::Pipe | FdTypes::Tty) => {
                let end = shared
                    .description(fd.id)
                    .ok_or_else(|| task_err(pid, format!("fd {}: description {} (type {}) was not created", fd.fd, fd.id, fd.r#type)))?;
                r.call("pidfd_getfd", libc::SYS_pidfd_getfd, &[criu_pidfd, end as u64, 0])? as u64
            }
            _ => return Err(task_err(pid, format!("fd {}: files of type {} are not restored yet", fd.fd, fd.r#type))),
        };
        let cloexec = if fd.flags & libc::FD_CLOEXEC as u32 != 0 { libc::O_CLOEXEC as u64 } else { 0 };
        if opened != u64::from(fd.fd) {
            r.call("dup3", libc::SYS_dup3, &[opened, u64::from(fd.fd), cloexec])?;
            r.close(opened)?;
        } else {
            r.call("fcntl(F_SETFD)", libc::SYS_fcntl, &[opened, libc::F_SETFD as u64, u64::from(fd.flags)])?;
        }
    }
    Ok(())
}

/// A pidfd of criu inside the task, above every fd number the task will use, so that no
/// restored fd lands on it. Through it the task takes the objects criu made for it.
pub fn open_criu_pidfd(r: &mut Remote, t: &TaskImages) -> Result<u64, RebuildError> {
    let above = t.fds.iter().map(|fd| u64::from(fd.fd) + 1).max().unwrap_or(0);
    let p = r.call("pidfd_open", libc::SYS_pidfd_open, &[std::process::id() as u64, 0])? as u64;
    let high = r.call("fcntl(F_DUPFD_CLOEXEC)", libc::SYS_fcntl, &[p, libc::F_DUPFD_CLOEXEC as u64, above])? as u64;
    r.close(p)?;
    Ok(high)
}

/// cwd and root.
pub fn restore_fs(r: &mut Remote, all: &DumpImages, t: &TaskImages) -> Result<(), RebuildError> {
    let pid = t.pid();
    let path_of = |id: u32| all.reg_path(id).map(str::to_string).ok_or_else(|| task_err(pid, format!("fs: file id {id} not in files.img")));
    let root = path_of(t.fs.root_id)?;
    let cwd = path_of(t.fs.cwd_id)?;
    if root != "/" {
        let at = r.path(&root)?;
        r.call("chroot", libc::SYS_chroot, &[at])?;
    }
    let at = r.path(&cwd)?;
    r.call("chdir", libc::SYS_chdir, &[at])?;
    if let Some(umask) = t.fs.umask {
        r.call("umask", libc::SYS_umask, &[u64::from(umask)])?;
    }
    Ok(())
}

/// Signal handlers, limits, timers and per-process attributes from the core image.
pub fn restore_task_core(r: &mut Remote, core: &CoreEntry) -> Result<(), RebuildError> {
    let Some(tc) = &core.tc else { return Ok(()) };
    // Entries run over signals 1..=64 without SIGKILL and SIGSTOP, as CRIU writes them.
    let signals = (1..=64u64).filter(|s| *s != libc::SIGKILL as u64 && *s != libc::SIGSTOP as u64);
    for (sig, sa) in signals.zip(&tc.sigactions) {
        let act = r.arg(&words(&[sa.sigaction, sa.flags, sa.restorer, sa.mask]))?;
        r.call("rt_sigaction", libc::SYS_rt_sigaction, &[sig, act, 0, 8])?;
    }
    if let Some(rl) = &tc.rlimits {
        for (res, lim) in rl.rlimits.iter().enumerate() {
            let at = r.arg(&words(&[lim.cur, lim.max]))?;
            let ret = r.try_call(libc::SYS_prlimit64, &[0, res as u64, at, 0])?;
            if ret < 0 {
                tracing::warn!("rlimit {res}: cannot set {}/{}: errno {}", lim.cur, lim.max, -ret);
            }
        }
    }
    if let Some(timers) = &tc.timers {
        for (which, it) in [(libc::ITIMER_REAL, &timers.real), (libc::ITIMER_VIRTUAL, &timers.virt), (libc::ITIMER_PROF, &timers.prof)] {
            if it.vsec != 0 || it.vusec != 0 {
                let at = r.arg(&words(&[it.isec, it.iusec, it.vsec, it.vusec]))?;
                r.call("setitimer", libc::SYS_setitimer, &[which as u64, at, 0])?;
            }
        }
    }
    r.call("personality", libc::SYS_personality, &[u64::from(tc.personality)])?;
    let mut comm = tc.comm.as_bytes().to_vec();
    comm.truncate(15);
    comm.push(0);
    let at = r.arg(&comm)?;
    r.call("prctl(PR_SET_NAME)", libc::SYS_prctl, &[libc::PR_SET_NAME as u64, at, 0, 0, 0])?;
    if tc.child_subreaper == Some(true) {
        r.call("prctl(PR_SET_CHILD_SUBREAPER)", libc::SYS_prctl, &[libc::PR_SET_CHILD_SUBREAPER as u64, 1, 0, 0, 0])?;
    }
    Ok(())
}

/// The per-thread sigaltstack.
pub fn restore_thread_core(r: &mut Remote, core: &CoreEntry) -> Result<(), RebuildError> {
    if let Some(sas) = core.thread_core.as_ref().and_then(|c| c.sas.as_ref()) {
        if sas.ss_flags & libc::SS_DISABLE as u32 == 0 {
            let at = r.arg(&words(&[sas.ss_sp, u64::from(sas.ss_flags), sas.ss_size]))?;
            r.call("sigaltstack", libc::SYS_sigaltstack, &[at, 0])?;
        }
    }
    Ok(())
}

/// The dumped parent-death signal. Set last: until then the stub keeps SIGKILL, so it dies
/// with criu instead of running half restored.
pub fn restore_pdeath_sig(r: &mut Remote, core: &CoreEntry) -> Result<(), RebuildError> {
    let pdeath = core.thread_core.as_ref().and_then(|c| c.pdeath_sig).unwrap_or(0);
    r.call("prctl(PR_SET_PDEATHSIG)", libc::SYS_prctl, &[libc::PR_SET_PDEATHSIG as u64, u64::from(pdeath), 0, 0, 0])?;
    Ok(())
}

/// Session and process group of the root: a session leader starts its session again, a group
/// leader its group. Membership in outside sessions is a shell-job matter.
pub fn restore_session(r: &mut Remote, t: &TaskImages) -> Result<(), RebuildError> {
    let pid = t.pstree.pid;
    if t.pstree.sid == pid {
        r.call("setsid", libc::SYS_setsid, &[])?;
    } else if t.pstree.pgid == pid {
        r.call("setpgid", libc::SYS_setpgid, &[0, 0])?;
    }
    Ok(())
}

/// Registers the thread's rseq area again, as dumped.
pub fn restore_rseq(r: &mut Remote, core: &CoreEntry) -> Result<(), RebuildError> {
    if let Some(rs) = core.thread_core.as_ref().and_then(|c| c.rseq_entry.as_ref()) {
        if rs.rseq_abi_pointer != 0 {
            r.call("rseq", libc::SYS_rseq, &[rs.rseq_abi_pointer, u64::from(rs.rseq_abi_size), 0, u64::from(rs.signature)])?;
        }
    }
    Ok(())
}

/// Process attributes kept in the mm and task core that are set from outside or by prctl.
pub fn restore_attributes(r: &mut Remote, pid: i32, mm: &MmEntry, core: &CoreEntry) -> Result<(), RebuildError> {
    if let Some(dumpable) = mm.dumpable {
        r.call("prctl(PR_SET_DUMPABLE)", libc::SYS_prctl, &[libc::PR_SET_DUMPABLE as u64, dumpable as u64, 0, 0, 0])?;
    }
    if let Some(adj) = core.tc.as_ref().and_then(|tc| tc.oom_score_adj) {
        std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string())
            .map_err(|e| task_err(pid, format!("cannot set oom_score_adj {adj}: {e}")))?;
    }
    Ok(())
}

/// Scheduling policy, priority and nice value of the calling (injected) thread.
pub fn restore_sched(r: &mut Remote, core: &CoreEntry) -> Result<(), RebuildError> {
    let Some(tc) = &core.thread_core else { return Ok(()) };
    if let Some(policy) = tc.sched_policy {
        let prio = tc.sched_prio.unwrap_or(0);
        let at = r.arg(&prio.to_le_bytes())?;
        r.call("sched_setscheduler", libc::SYS_sched_setscheduler, &[0, u64::from(policy), at])?;
    }
    if let Some(nice) = tc.sched_nice {
        r.call("setpriority", libc::SYS_setpriority, &[libc::PRIO_PROCESS as u64, 0, nice as i64 as u64])?;
    }
    Ok(())
}

const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;

/// POSIX timers with their dumped ids (the kernel takes the requested id while
/// PR_TIMER_CREATE_RESTORE_IDS is on), signal, clock and remaining time. Run after the threads
/// exist, since a timer may signal one of them.
pub fn restore_posix_timers(r: &mut Remote, pid: i32, core: &CoreEntry) -> Result<(), RebuildError> {
    let Some(timers) = core.tc.as_ref().and_then(|tc| tc.timers.as_ref()).filter(|t| !t.posix.is_empty()) else {
        return Ok(());
    };
    r.call("prctl(PR_TIMER_CREATE_RESTORE_IDS, on)", libc::SYS_prctl, &[PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0])
        .map_err(|e| task_err(pid, format!("this kernel cannot recreate POSIX timers with their ids: {e}")))?;
    for t in &timers.posix {
        // struct sigevent (64 bytes: value, signo, notify, thread id), then the timer id.
        let mut block = vec![0u8; 68];
        block[..8].copy_from_slice(&t.sival_ptr.to_le_bytes());
        block[8..12].copy_from_slice(&t.si_signo.to_le_bytes());
        block[12..16].copy_from_slice(&t.it_sigev_notify.to_le_bytes());
        block[16..20].copy_from_slice(&t.notify_thread_id.unwrap_or(0).to_le_bytes());
        block[64..68].copy_from_slice(&t.it_id.to_le_bytes());
        let at = r.arg(&block)?;
        r.call("timer_create", libc::SYS_timer_create, &[u64::from(t.clock_id), at, at + 64])?;
        let mut id = [0u8; 4];
        r.inj.read_data(criu_tracee::remote::ARG_AT + 64, &mut id)?;
        if u32::from_le_bytes(id) != t.it_id {
            return Err(task_err(pid, format!("timer_create gave id {} instead of {}", u32::from_le_bytes(id), t.it_id)));
        }
        if t.vsec != 0 || t.vnsec != 0 {
            let its = r.arg(&words(&[t.isec, t.insec, t.vsec, t.vnsec]))?;
            r.call("timer_settime", libc::SYS_timer_settime, &[u64::from(t.it_id), 0, its, 0])?;
        }
    }
    r.call("prctl(PR_TIMER_CREATE_RESTORE_IDS, off)", libc::SYS_prctl, &[PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0])?;
    Ok(())
}

/// A userfaultfd of the task, held by criu, watching the task's private anonymous areas so that
/// their pages can be put in place with UFFDIO_COPY. `None` when the kernel refuses one (the
/// fill then writes every page the plain way).
pub fn watch_anonymous_memory(r: &mut Remote, t: &TaskImages) -> Option<(criu_sys::uffd::Userfault, Vec<(u64, u64)>)> {
    let pid = t.pid();
    let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64;
    let fd = r.try_call(libc::SYS_userfaultfd, &[flags]).ok().filter(|fd| *fd >= 0)?;
    let taken = criu_sys::pidfd::take_fd(pid, fd as i32);
    let _ = r.close(fd as u64);
    let uffd = criu_sys::uffd::Userfault::new(taken.ok()?).ok()?;
    let mut areas = Vec::new();
    for vma in &t.mm.vmas {
        if let Ok(MapPlan::Mmap { addr, len, file_id: None, .. }) = plan(vma) {
            if uffd.register(addr, len).is_ok() {
                areas.push((addr, addr + len));
            }
        }
    }
    Some((uffd, areas))
}
