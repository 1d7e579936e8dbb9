//! Per-process kernel interfaces: prctl(PR_SET_MM ...), /proc/PID/stat, F_GETOWNER_UIDS,
//! rt_sigqueueinfo, /proc/PID/timers, loginuid, timer id restore.

use super::child::{raw, Child};
use super::{check_ret, missing, sys, ProbeError, ProbeResult};
use nix::errno::Errno;
use std::os::fd::AsRawFd;

fn prctl(op: libc::c_int, a: libc::c_ulong, b: libc::c_ulong) -> Result<libc::c_long, Errno> {
    // SAFETY: callers pass, for `op`, integer arguments or pointers to live locals of the size
    // the kernel writes.
    check_ret(unsafe { libc::prctl(op, a, b, 0, 0) } as libc::c_long)
}

fn mm_map_size() -> Result<u32, Errno> {
    let mut size: u32 = 0;
    prctl(
        libc::PR_SET_MM,
        libc::PR_SET_MM_MAP_SIZE as libc::c_ulong,
        &mut size as *mut u32 as libc::c_ulong,
    )?;
    Ok(size)
}

/// PR_GET_TID_ADDRESS and a way to set mm fields (PR_SET_MM_MAP, else the old single-field
/// PR_SET_MM calls).
pub fn prctl_cat1() -> ProbeResult {
    let mut tid_addr: usize = 0;
    prctl(
        libc::PR_GET_TID_ADDRESS,
        &mut tid_addr as *mut usize as libc::c_ulong,
        0,
    )
    .map_err(sys("prctl: PR_GET_TID_ADDRESS is not supported"))?;
    if mm_map_size().is_ok() {
        return Ok(());
    }
    // The old interface: PR_SET_MM_BRK to the current break.
    // SAFETY: sbrk(0) only reads the current break.
    let brk = unsafe { libc::sbrk(0) } as libc::c_ulong;
    prctl(libc::PR_SET_MM, libc::PR_SET_MM_BRK as libc::c_ulong, brk).map_err(|e| match e {
        Errno::EPERM => missing("prctl: One needs CAP_SYS_RESOURCE capability to perform testing"),
        e => sys("prctl: PR_SET_MM_BRK is not supported")(e),
    })?;
    Ok(())
}

/// PR_SET_MM_MAP (the one-call way to set all mm fields).
pub fn prctl_cat2() -> ProbeResult {
    mm_map_size().map_err(sys("prctl: PR_SET_MM_MAP_SIZE is not supported"))?;
    Ok(())
}

/// The size of struct prctl_mm_map as the kernel reports it.
pub fn prctl_mm_map_size() -> Result<u32, ProbeError> {
    mm_map_size().map_err(sys("prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE)"))
}

/// fcntl(F_GETOWNER_UIDS) on a /proc file.
pub fn fcntl_owner_uids() -> ProbeResult {
    const F_GETOWNER_UIDS: libc::c_int = 17;
    let f = std::fs::File::open("/proc/self/comm")
        .map_err(|e| sys("open /proc/self/comm")(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    let mut uids = [0u32; 2];
    // SAFETY: F_GETOWNER_UIDS writes two u32 into `uids`.
    let ret = unsafe { libc::fcntl(f.as_raw_fd(), F_GETOWNER_UIDS, uids.as_mut_ptr()) };
    check_ret(ret as libc::c_long).map_err(sys("Can't fetch file owner UIDs (F_GETOWNER_UIDS)"))?;
    Ok(())
}

/// /proc/self/stat has the extended fields (up to exit_code, 52 fields).
pub fn proc_stat() -> ProbeResult {
    let stat = std::fs::read_to_string("/proc/self/stat")
        .map_err(|e| sys("read /proc/self/stat")(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    let after_comm = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    // pid and comm come before ')'.
    let fields = 2 + after_comm.split_whitespace().count();
    if fields < 52 {
        return Err(missing(format!(
            "procfs: stat extension is not supported ({fields} fields)"
        )));
    }
    Ok(())
}

/// rt_sigqueueinfo() to oneself with a positive si_code; done by a child that ignores SIGUSR1.
pub fn sigqueueinfo() -> ProbeResult {
    let mut child = Child::spawn(|| {
        // SAFETY: raw rt_sigaction (SIG_IGN needs no restorer) and rt_sigqueueinfo with live
        // local buffers, in a single-threaded child.
        unsafe {
            let mut act = [0u64; 4];
            act[0] = libc::SIG_IGN as u64;
            libc::syscall(
                libc::SYS_rt_sigaction,
                libc::SIGUSR1,
                act.as_ptr(),
                0usize,
                8usize,
            );
            let mut info = [0i32; 32];
            info[0] = libc::SIGUSR1;
            info[2] = 1; // si_code
            let pid = libc::syscall(libc::SYS_getpid);
            let ret = libc::syscall(libc::SYS_rt_sigqueueinfo, pid, libc::SIGUSR1, info.as_ptr());
            raw::exit(if ret == 0 {
                0
            } else {
                *libc::__errno_location()
            })
        }
    })?;
    let status = child.wait_exit()?;
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        return Ok(());
    }
    let errno = if libc::WIFEXITED(status) {
        Errno::from_raw(libc::WEXITSTATUS(status))
    } else {
        Errno::UnknownErrno
    };
    Err(sys(
        "Unable to send siginfo with positive si_code to itself",
    )(errno))
}

/// /proc/self/timers is there (POSIX timers can be dumped).
pub fn posix_timers() -> ProbeResult {
    nix::unistd::access("/proc/self/timers", nix::unistd::AccessFlags::R_OK)
        .map_err(|_| missing("/proc/<pid>/timers file is missing."))?;
    Ok(())
}

/// loginuid can be read and reset: a child writes "unset" (4294967295) into its own
/// /proc/self/loginuid.
pub fn loginuid() -> ProbeResult {
    std::fs::read_to_string("/proc/self/loginuid")
        .map_err(|_| missing("Loginuid restore is OFF: /proc/self/loginuid is missing"))?;
    let path = c"/proc/self/loginuid";
    let value = b"4294967295";
    let mut child = Child::spawn(move || {
        // SAFETY: raw open/write on a NUL-terminated path and a live buffer.
        unsafe {
            let fd = libc::syscall(libc::SYS_open, path.as_ptr(), libc::O_RDWR);
            if fd < 0 {
                raw::exit(1);
            }
            let n = libc::syscall(libc::SYS_write, fd, value.as_ptr(), value.len());
            raw::exit(if n == value.len() as libc::c_long {
                0
            } else {
                2
            })
        }
    })?;
    let status = child.wait_exit()?;
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(missing("Loginuid restore is OFF: can't reset loginuid"))
    }
}

/// prctl(PR_TIMER_CREATE_RESTORE_IDS, GET): timers can be created with given ids.
pub fn timer_cr_ids() -> ProbeResult {
    const PR_TIMER_CREATE_RESTORE_IDS: libc::c_int = 77;
    const PR_TIMER_CREATE_RESTORE_IDS_GET: libc::c_ulong = 2;
    match prctl(
        PR_TIMER_CREATE_RESTORE_IDS,
        PR_TIMER_CREATE_RESTORE_IDS_GET,
        0,
    ) {
        Ok(_) => Ok(()),
        Err(Errno::EINVAL) => Err(missing("PR_TIMER_CREATE_RESTORE_IDS isn't supported")),
        Err(e) => Err(sys("prctl(PR_TIMER_CREATE_RESTORE_IDS)")(e)),
    }
}
