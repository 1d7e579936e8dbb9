//! Dump of one stopped thread: registers, signal mask and queue, credentials, scheduling,
//! robust futex list, sigaltstack, TLS slots, rseq. What only the thread itself can tell is
//! asked with injected syscalls (a compel-style parasite is not used).

use criu_proto::images::{
    CredsEntry, RseqEntry, SiginfoEntry, SignalQueueEntry, ThreadCoreEntry, ThreadInfoX86,
    ThreadSasEntry,
};
use criu_tracee::{Injector, Tracee, TraceeError};

use crate::dump_regs::{self, GDT_ENTRY_TLS_MIN, GDT_ENTRY_TLS_NUM};

#[derive(Debug, thiserror::Error)]
pub enum ThreadDumpError {
    #[error("thread {tid}: {source}")]
    Tracee { tid: i32, source: TraceeError },
    #[error("thread {tid}: cannot read {what}: {source}")]
    Proc {
        tid: i32,
        what: &'static str,
        source: criu_procfs::ProcError,
    },
    #[error("thread {tid}: injected {name} failed with errno {errno}")]
    Injected {
        tid: i32,
        name: &'static str,
        errno: i64,
    },
}

pub type Result<T> = std::result::Result<T, ThreadDumpError>;

/// Everything one thread contributes to its core image (the leader adds `task_core`).
#[derive(Debug, Clone)]
pub struct ThreadDump {
    pub tid: i32,
    pub info: ThreadInfoX86,
    pub core: ThreadCoreEntry,
    /// Seccomp mode (0 off, 1 strict, 2 filter) and filters, most recently installed first;
    /// `crate::seccomp` numbers them into seccomp.img.
    pub seccomp: (u32, Vec<criu_tracee::SeccompFilter>),
}

const PR_GET_PDEATHSIG: u64 = 2;
const PR_GET_SECUREBITS: u64 = 27;
const PR_GET_TID_ADDRESS: u64 = 40;
const SCHED_FIFO: i64 = 1;
const SCHED_RR: i64 = 2;
const SCHED_RESET_ON_FORK: i64 = 0x4000_0000;

/// Scratch offsets used by the injected queries.
const OFF_ROBUST: usize = 0; // head u64, len u64
const OFF_PARAM: usize = 16; // struct sched_param
const OFF_SAS: usize = 24; // stack_t (24 bytes)
const OFF_INT: usize = 48; // an int result
const OFF_TIDADDR: usize = 56; // a pointer result
const OFF_DESC: usize = 64; // struct user_desc (16 bytes)
pub const THREAD_SCRATCH: usize = 128;

pub(crate) fn read_u64(inj: &Injector<'_>, off: usize) -> std::result::Result<u64, TraceeError> {
    let mut b = [0u8; 8];
    inj.read_data(off, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

pub(crate) fn read_u32(inj: &Injector<'_>, off: usize) -> std::result::Result<u32, TraceeError> {
    let mut b = [0u8; 4];
    inj.read_data(off, &mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// Runs an injected syscall that must succeed.
pub(crate) fn call(
    inj: &mut Injector<'_>,
    tid: i32,
    name: &'static str,
    nr: i64,
    args: &[u64],
) -> Result<i64> {
    let r = inj
        .syscall(nr, args)
        .map_err(|source| ThreadDumpError::Tracee { tid, source })?;
    if (-4095..0).contains(&r) {
        return Err(ThreadDumpError::Injected {
            tid,
            name,
            errno: -r,
        });
    }
    Ok(r)
}

fn signal_queue(list: Vec<criu_tracee::SigInfo>) -> SignalQueueEntry {
    SignalQueueEntry {
        signals: list
            .into_iter()
            .map(|s| SiginfoEntry {
                siginfo: s.bytes.to_vec(),
            })
            .collect(),
    }
}

/// The kernel's default overflow uid and gid (65534).
const OVERFLOW_ID: u32 = 65534;

/// Reads creds of a thread from `/proc/PID/task/TID/status`; secure bits come from the thread.
/// /proc shows criu's view of the ids; the image holds the task's, through its user
/// namespace's maps (the same ids unless the task is in a user namespace of its own).
fn creds(pid: i32, tid: i32, secbits: u32) -> Result<CredsEntry> {
    let proc_err = |what| move |source| ThreadDumpError::Proc { tid, what, source };
    let st = criu_procfs::read_thread_status(pid, tid).map_err(proc_err("status"))?;
    let uids = criu_procfs::read_id_map(pid, false).map_err(proc_err("uid_map"))?;
    let gids = criu_procfs::read_id_map(pid, true).map_err(proc_err("gid_map"))?;
    // An id the namespace does not map shows as the overflow id inside it.
    let uid = |v: u32| uids.inside(v).unwrap_or(OVERFLOW_ID);
    let gid = |v: u32| gids.inside(v).unwrap_or(OVERFLOW_ID);
    let split = |v: u64| vec![v as u32, (v >> 32) as u32];
    Ok(CredsEntry {
        uid: uid(st.uid[0]),
        euid: uid(st.uid[1]),
        suid: uid(st.uid[2]),
        fsuid: uid(st.uid[3]),
        gid: gid(st.gid[0]),
        egid: gid(st.gid[1]),
        sgid: gid(st.gid[2]),
        fsgid: gid(st.gid[3]),
        cap_inh: split(st.cap_inh),
        cap_prm: split(st.cap_prm),
        cap_eff: split(st.cap_eff),
        cap_bnd: split(st.cap_bnd),
        cap_amb: split(st.cap_amb),
        secbits,
        groups: st.groups.iter().map(|&g| gid(g)).collect(),
        no_new_privs: Some(u32::from(st.no_new_privs)),
        ..Default::default()
    })
}

/// Dumps one stopped thread of process `pid`.
pub fn dump_thread(pid: i32, tracee: &mut Tracee) -> Result<ThreadDump> {
    let tid = tracee.tid();
    let terr = |source| ThreadDumpError::Tracee { tid, source };
    let seccomp_mode = tracee.seccomp_mode().map_err(terr)?;
    // Filters exist only in filter mode (2); reading them needs CAP_SYS_ADMIN, which an
    // unprivileged criu lacks.
    let seccomp_filters = if seccomp_mode == 2 {
        tracee.seccomp_filters().map_err(terr)?
    } else {
        Vec::new()
    };
    let regs = tracee.regs().map_err(terr)?;
    let xsave = tracee.xsave().map_err(terr)?;
    let sigmask = tracee.sigmask().map_err(terr)?;
    let pending = tracee.pending_signals(false).map_err(terr)?;
    let rseq = tracee.rseq().map_err(terr)?;
    let comm = criu_procfs::values::read_thread_comm(pid, tid).map_err(|source| {
        ThreadDumpError::Proc {
            tid,
            what: "comm",
            source,
        }
    })?;

    let mut inj = Injector::new(tracee, THREAD_SCRATCH).map_err(terr)?;
    let base = inj.data_addr();
    let terr = |source| ThreadDumpError::Tracee { tid, source };

    call(
        &mut inj,
        tid,
        "get_robust_list",
        libc::SYS_get_robust_list,
        &[0, base + OFF_ROBUST as u64, base + OFF_ROBUST as u64 + 8],
    )?;
    let futex_rla = read_u64(&inj, OFF_ROBUST).map_err(terr)?;
    let futex_rla_len = read_u64(&inj, OFF_ROBUST + 8).map_err(terr)? as u32;

    let policy = call(
        &mut inj,
        tid,
        "sched_getscheduler",
        libc::SYS_sched_getscheduler,
        &[0],
    )?;
    let mut sched_prio = None;
    if matches!(policy & !SCHED_RESET_ON_FORK, SCHED_FIFO | SCHED_RR) {
        call(
            &mut inj,
            tid,
            "sched_getparam",
            libc::SYS_sched_getparam,
            &[0, base + OFF_PARAM as u64],
        )?;
        sched_prio = Some(read_u32(&inj, OFF_PARAM).map_err(terr)?);
    }
    // The raw syscall answers 20 - nice (never negative).
    let prio = call(
        &mut inj,
        tid,
        "getpriority",
        libc::SYS_getpriority,
        &[libc::PRIO_PROCESS as u64, 0],
    )?;
    let sched_nice = 20 - prio as i32;

    call(
        &mut inj,
        tid,
        "sigaltstack",
        libc::SYS_sigaltstack,
        &[0, base + OFF_SAS as u64],
    )?;
    let sas = ThreadSasEntry {
        ss_sp: read_u64(&inj, OFF_SAS).map_err(terr)?,
        ss_flags: read_u32(&inj, OFF_SAS + 8).map_err(terr)?,
        ss_size: read_u64(&inj, OFF_SAS + 16).map_err(terr)?,
    };

    call(
        &mut inj,
        tid,
        "prctl(PR_GET_PDEATHSIG)",
        libc::SYS_prctl,
        &[PR_GET_PDEATHSIG, base + OFF_INT as u64],
    )?;
    let pdeath_sig = read_u32(&inj, OFF_INT).map_err(terr)?;
    call(
        &mut inj,
        tid,
        "prctl(PR_GET_TID_ADDRESS)",
        libc::SYS_prctl,
        &[PR_GET_TID_ADDRESS, base + OFF_TIDADDR as u64],
    )?;
    let clear_tid_addr = read_u64(&inj, OFF_TIDADDR).map_err(terr)?;
    let secbits = call(
        &mut inj,
        tid,
        "prctl(PR_GET_SECUREBITS)",
        libc::SYS_prctl,
        &[PR_GET_SECUREBITS],
    )? as u32;

    let mut tls = Vec::with_capacity(GDT_ENTRY_TLS_NUM as usize);
    for i in 0..GDT_ENTRY_TLS_NUM {
        let mut desc = [0u8; 16];
        desc[0..4].copy_from_slice(&(GDT_ENTRY_TLS_MIN + i).to_le_bytes());
        inj.write_data(OFF_DESC, &desc).map_err(terr)?;
        let r = inj
            .syscall(libc::SYS_get_thread_area, &[base + OFF_DESC as u64])
            .map_err(terr)?;
        if r == -i64::from(libc::ENOSYS) {
            // Without 32-bit emulation no task can have set a slot: it is empty.
            tls.push(dump_regs::empty_tls_slot(GDT_ENTRY_TLS_MIN + i));
            continue;
        }
        if r < 0 {
            return Err(ThreadDumpError::Injected {
                tid,
                name: "get_thread_area",
                errno: -r,
            });
        }
        inj.read_data(OFF_DESC, &mut desc).map_err(terr)?;
        tls.push(dump_regs::user_desc_from_bytes(&desc));
    }
    inj.finish().map_err(terr)?;

    // The critical section the thread is in (rseq_cs, at offset 8 of its rseq area): the
    // kernel may clear it while a restore injects code outside the section, so the restore
    // puts it back last.
    let mut cs = [0u8; 8];
    let in_section = rseq.rseq_abi_pointer != 0
        && tracee.read_mem(rseq.rseq_abi_pointer + 8, &mut cs).is_ok()
        && u64::from_le_bytes(cs) != 0;
    let rseq_entry = Some(RseqEntry {
        rseq_abi_pointer: rseq.rseq_abi_pointer,
        rseq_abi_size: rseq.rseq_abi_size,
        signature: rseq.signature,
        rseq_cs_pointer: in_section.then(|| u64::from_le_bytes(cs)),
    });
    let core = ThreadCoreEntry {
        futex_rla,
        futex_rla_len,
        sched_nice: Some(sched_nice),
        sched_policy: Some(policy as u32),
        sched_prio,
        blk_sigset: Some(sigmask),
        sas: Some(sas),
        pdeath_sig: (pdeath_sig != 0).then_some(pdeath_sig),
        signals_p: Some(signal_queue(pending)),
        creds: Some(creds(pid, tid, secbits)?),
        comm: Some(comm),
        rseq_entry,
        ..Default::default()
    };
    Ok(ThreadDump {
        tid,
        info: dump_regs::thread_info(&regs, &xsave, clear_tid_addr, tls),
        core,
        seccomp: (seccomp_mode, seccomp_filters),
    })
}

/// Shared (process-wide) pending signals, asked through any thread.
pub fn shared_signals(tracee: &Tracee) -> Result<SignalQueueEntry> {
    let tid = tracee.tid();
    let list = tracee
        .pending_signals(true)
        .map_err(|source| ThreadDumpError::Tracee { tid, source })?;
    Ok(signal_queue(list))
}
