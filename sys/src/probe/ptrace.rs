//! ptrace probes: each one forks a child that stops itself, traces it, asks the kernel
//! something about it, then kills and reaps it.

use super::child::{raw, Child};
use super::{missing, sys, ProbeError, ProbeResult};
use nix::errno::Errno;

/// A stopped child held in a ptrace-stop after PTRACE_SEIZE + PTRACE_INTERRUPT.
struct Tracee {
    child: Child,
}

impl Tracee {
    /// Forks a child that runs `setup` (raw syscalls only), stops itself, and then sleeps.
    fn seize(setup: impl FnOnce()) -> Result<Tracee, ProbeError> {
        let mut child = Child::spawn(move || {
            setup();
            raw::stop_self();
            raw::pause_forever()
        })?;
        child.wait_stopped()?;
        let pid = child.pid();
        ptrace(libc::PTRACE_SEIZE, pid, 0, libc::PTRACE_O_EXITKILL as usize)
            .map_err(sys(format!("ptrace(PTRACE_SEIZE, {pid})")))?;
        ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0)
            .map_err(sys(format!("ptrace(PTRACE_INTERRUPT, {pid})")))?;
        child.wait_stopped()?;
        Ok(Tracee { child })
    }

    fn pid(&self) -> libc::pid_t {
        self.child.pid()
    }
}

/// One raw ptrace request; `addr` and `data` are passed as the kernel's two arguments.
fn ptrace(
    req: libc::c_uint,
    pid: libc::pid_t,
    addr: usize,
    data: usize,
) -> Result<libc::c_long, Errno> {
    Errno::clear();
    // SAFETY: every caller passes, for `req`, either plain integers or pointers to buffers that
    // are live and large enough for what the kernel writes there.
    let ret = unsafe {
        libc::ptrace(
            req,
            pid,
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    };
    if ret == -1 && Errno::last_raw() != 0 {
        return Err(Errno::last());
    }
    Ok(ret)
}

/// PTRACE_PEEKSIGINFO and PTRACE_GETSIGMASK on a seized child (dump of pending signals and
/// of the blocked mask).
pub fn peeksiginfo_and_sigmask() -> ProbeResult {
    let t = Tracee::seize(|| {})?;
    #[repr(C)]
    struct PeekArgs {
        off: u64,
        flags: u32,
        nr: i32,
    }
    let args = PeekArgs {
        off: 0,
        flags: 0,
        nr: 1,
    };
    let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
    ptrace(
        libc::PTRACE_PEEKSIGINFO,
        t.pid(),
        &args as *const _ as usize,
        info.as_mut_ptr() as usize,
    )
    .map_err(sys("Unable to dump pending signals (PTRACE_PEEKSIGINFO)"))?;
    let mut mask: u64 = 0;
    ptrace(
        libc::PTRACE_GETSIGMASK,
        t.pid(),
        8,
        &mut mask as *mut u64 as usize,
    )
    .map_err(sys(
        "Unable to dump signal blocking mask (PTRACE_GETSIGMASK)",
    ))?;
    Ok(())
}

/// The blocked-signal mask of a seized child whose `setup` blocked `blocked` first; used by
/// tests to see that PTRACE_GETSIGMASK really reads the tracee.
pub fn sigmask_of_child_blocking(blocked: libc::c_int) -> Result<u64, ProbeError> {
    let set: u64 = 1 << (blocked - 1);
    let t = Tracee::seize(move || {
        // SAFETY: raw rt_sigprocmask with a pointer to a live 8-byte mask.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_BLOCK,
                &set as *const u64,
                0usize,
                8usize,
            );
        }
    })?;
    let mut mask: u64 = 0;
    ptrace(
        libc::PTRACE_GETSIGMASK,
        t.pid(),
        8,
        &mut mask as *mut u64 as usize,
    )
    .map_err(sys(
        "Unable to dump signal blocking mask (PTRACE_GETSIGMASK)",
    ))?;
    Ok(mask)
}

/// PTRACE_O_SUSPEND_SECCOMP on a seized child.
pub fn suspend_seccomp() -> ProbeResult {
    let t = Tracee::seize(|| {})?;
    let opts = (libc::PTRACE_O_EXITKILL | libc::PTRACE_O_SUSPEND_SECCOMP) as usize;
    match ptrace(libc::PTRACE_SETOPTIONS, t.pid(), 0, opts) {
        Ok(_) => Ok(()),
        Err(Errno::EINVAL) => Err(missing("Kernel doesn't support PTRACE_O_SUSPEND_SECCOMP")),
        Err(e) => Err(sys("couldn't suspend seccomp (PTRACE_O_SUSPEND_SECCOMP)")(
            e,
        )),
    }
}

const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;

/// The test filter: kill on ptrace(2), allow everything else.
fn test_filter() -> [libc::sock_filter; 4] {
    // BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JMP_JEQ_K: u16 = 0x15;
    const BPF_RET_K: u16 = 0x06;
    const SECCOMP_RET_KILL: u32 = 0;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    [
        libc::sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: BPF_JMP_JEQ_K,
            jt: 0,
            jf: 1,
            k: libc::SYS_ptrace as u32,
        },
        libc::sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_KILL,
        },
        libc::sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ALLOW,
        },
    ]
}

/// Installs a seccomp filter in a child, then reads it back with PTRACE_SECCOMP_GET_FILTER.
/// Returns the number of BPF instructions the kernel reports (4 for our filter).
pub fn seccomp_filter_dump() -> Result<usize, ProbeError> {
    let filter = test_filter();
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut _,
    };
    let prog_addr = &prog as *const libc::sock_fprog as usize;
    let t = Tracee::seize(move || {
        // SAFETY: raw prctl calls; `prog_addr` points to the program, which the fork copied
        // into the child's memory at the same address.
        unsafe {
            libc::syscall(libc::SYS_prctl, libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            if libc::syscall(
                libc::SYS_prctl,
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                prog_addr,
                0,
                0,
            ) != 0
            {
                raw::exit(3);
            }
        }
    })?;
    let len = ptrace(PTRACE_SECCOMP_GET_FILTER, t.pid(), 0, 0).map_err(sys(
        "Dumping seccomp filters not supported (PTRACE_SECCOMP_GET_FILTER)",
    ))?;
    Ok(len as usize)
}

/// What PTRACE_GET_RSEQ_CONFIGURATION reports for a task.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RseqConfig {
    pub rseq_abi_pointer: u64,
    pub rseq_abi_size: u32,
    pub signature: u32,
    pub flags: u32,
    pub pad: u32,
}

const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;

/// PTRACE_GET_RSEQ_CONFIGURATION on a seized child (the child inherits the caller's thread's
/// rseq registration across fork).
pub fn rseq_configuration() -> Result<RseqConfig, ProbeError> {
    let t = Tracee::seize(|| {})?;
    let mut conf = RseqConfig::default();
    let size = std::mem::size_of::<RseqConfig>();
    let len = ptrace(
        PTRACE_GET_RSEQ_CONFIGURATION,
        t.pid(),
        size,
        &mut conf as *mut RseqConfig as usize,
    )
    .map_err(sys("ptrace(PTRACE_GET_RSEQ_CONFIGURATION) isn't supported"))?;
    if len as usize != size {
        return Err(missing(format!(
            "ptrace(PTRACE_GET_RSEQ_CONFIGURATION) returned {len} bytes, want {size}"
        )));
    }
    if conf.flags != 0 {
        return Err(missing(
            "ptrace(PTRACE_GET_RSEQ_CONFIGURATION): rseq flags are not zero",
        ));
    }
    Ok(conf)
}

/// Where the child jumps after its first stop; the parent puts a hardware breakpoint here.
#[inline(never)]
extern "C" fn breakpoint_target() -> ! {
    raw::stop_self();
    raw::exit(1)
}

/// Sets an execute breakpoint in debug register 0 of a traced child and checks that running
/// into it stops the child with SIGTRAP.
pub fn hw_breakpoints() -> ProbeResult {
    let target: extern "C" fn() -> ! = breakpoint_target;
    let target = std::hint::black_box(target);
    let mut child = Child::spawn(move || {
        // SAFETY: raw ptrace(PTRACE_TRACEME) with no pointers.
        unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0) };
        raw::stop_self();
        target()
    })?;
    let status = child.wait_stopped()?;
    if libc::WSTOPSIG(status) != libc::SIGSTOP {
        return Err(missing(format!(
            "breakpoint child stopped with signal {}",
            libc::WSTOPSIG(status)
        )));
    }
    let pid = child.pid();
    let dr = std::mem::offset_of!(libc::user, u_debugreg);
    ptrace(libc::PTRACE_POKEUSER, pid, dr, target as usize)
        .map_err(sys("Failed to set breakpoint address (DR0)"))?;
    // DR7: local enable of breakpoint 0, condition "execute", length 1.
    ptrace(libc::PTRACE_POKEUSER, pid, dr + 7 * 8, 1)
        .map_err(sys("Failed to enable breakpoint (DR7)"))?;
    ptrace(libc::PTRACE_CONT, pid, 0, 0).map_err(sys("Failed to resume breakpoint child"))?;
    let status = child.wait(0)?;
    if libc::WIFSTOPPED(status) && libc::WSTOPSIG(status) == libc::SIGTRAP {
        return Ok(());
    }
    Err(missing(format!(
        "Hardware breakpoints don't seem to work (status={status:#x})"
    )))
}
