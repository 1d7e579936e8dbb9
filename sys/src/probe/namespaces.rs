//! Namespace and pid probes: ns_last_pid, user/cgroup/time namespaces, NSpid, clone3 with
//! set_tid, CLONE_PARENT with CLONE_NEWPID, pidfd_open/pidfd_getfd, SysV IPC ids.

use super::child::{raw, Child};
use super::{check_ret, missing, own_fd, sys, ProbeError, ProbeResult};
use nix::errno::Errno;
use nix::unistd::{access, AccessFlags};
use std::os::fd::AsRawFd;

/// Runs `f` on a new thread that first unshares `flags` (network, mount, cgroup, time ...).
/// The namespaces die with the thread, so nothing made inside reaches the rest of the process.
/// For a mount namespace, `/` is made a recursive slave first so no mount propagates out.
pub(crate) fn in_new_namespaces<T: Send>(
    flags: libc::c_int,
    f: impl FnOnce() -> Result<T, ProbeError> + Send,
) -> Result<T, ProbeError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let cf = nix::sched::CloneFlags::from_bits_retain(flags);
            nix::sched::unshare(cf).map_err(sys(format!("unshare({flags:#x})")))?;
            if flags & libc::CLONE_NEWNS != 0 {
                nix::mount::mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SLAVE,
                    None::<&str>,
                )
                .map_err(sys(
                    "make / a recursive slave in the probe's mount namespace",
                ))?;
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(missing("namespace probe thread panicked")))
    })
}

const NS_LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";

/// /proc/sys/kernel/ns_last_pid is writable (fallback way to get exact pids).
pub fn ns_last_pid() -> ProbeResult {
    access(NS_LAST_PID, AccessFlags::W_OK)
        .map_err(sys(format!("{NS_LAST_PID} sysctl is inaccessible")))?;
    Ok(())
}

/// A user namespace can be made (by a throwaway child) and PR_SET_MM_MAP is there.
pub fn userns() -> ProbeResult {
    access("/proc/self/ns/user", AccessFlags::F_OK).map_err(sys("No userns proc file"))?;
    let mut size: u32 = 0;
    // SAFETY: PR_SET_MM_MAP_SIZE writes one u32 into `size`.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_MM,
            libc::PR_SET_MM_MAP_SIZE,
            &mut size as *mut u32,
            0,
            0,
        )
    };
    check_ret(ret as libc::c_long).map_err(sys("prctl: PR_SET_MM_MAP_SIZE is not supported"))?;
    let mut child = Child::spawn(|| {
        // SAFETY: raw unshare with an integer flag in a single-threaded child.
        let ret = unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) };
        raw::exit(if ret == 0 { 0 } else { 1 })
    })?;
    let status = child.wait_exit()?;
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(missing(
            "unshare(CLONE_NEWUSER) failed: user namespaces are not available",
        ))
    }
}

/// A cgroup namespace can be made.
pub fn cgroupns() -> ProbeResult {
    access("/proc/self/ns/cgroup", AccessFlags::F_OK)
        .map_err(|_| missing("cgroupns not supported. This is not fatal."))?;
    in_new_namespaces(libc::CLONE_NEWCGROUP, || Ok(()))
}

/// Time namespaces: /proc/self/timens_offsets is there and one can be made.
pub fn timens() -> ProbeResult {
    access("/proc/self/timens_offsets", AccessFlags::F_OK)
        .map_err(|_| missing("Time namespaces are not supported"))?;
    in_new_namespaces(libc::CLONE_NEWTIME, || Ok(()))
}

/// /proc/self/status has the NSpid line.
pub fn ns_pid() -> ProbeResult {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| {
        sys("read /proc/self/status")(Errno::from_raw(e.raw_os_error().unwrap_or(0)))
    })?;
    if status.lines().any(|l| l.starts_with("NSpid:")) {
        Ok(())
    } else {
        Err(missing("/proc/PID/status has no NSpid field"))
    }
}

/// struct clone_args as 11 u64 words (v2, with set_tid and cgroup).
const CLONE_ARGS_WORDS: usize = 11;
const CA_FLAGS: usize = 0;
const CA_SET_TID: usize = 8;

fn clone3(args: &[u64; CLONE_ARGS_WORDS]) -> libc::c_long {
    // SAFETY: passes a live, fully initialised clone_args of the stated size. Callers only use
    // it in ways that either fail or behave like fork (no CLONE_VM, no new stack).
    unsafe { libc::syscall(libc::SYS_clone3, args.as_ptr(), std::mem::size_of_val(args)) }
}

/// clone3() knows `set_tid`: a non-NULL set_tid with set_tid_size 0 is refused with EINVAL
/// (no clone3 gives ENOSYS, a clone3 without set_tid gives E2BIG for the larger struct).
pub fn clone3_set_tid() -> ProbeResult {
    let mut args = [0u64; CLONE_ARGS_WORDS];
    args[CA_SET_TID] = u64::MAX;
    match check_ret(clone3(&args)) {
        Err(Errno::EINVAL) => Ok(()),
        Err(e @ (Errno::ENOSYS | Errno::E2BIG)) => {
            Err(missing(format!("clone3() with set_tid not supported: {e}")))
        }
        Err(e) => Err(sys("clone3() with set_tid")(e)),
        Ok(pid) => {
            if pid == 0 {
                raw::exit(0);
            }
            Err(missing(format!(
                "Unexpected success: clone3() returned {pid}"
            )))
        }
    }
}

/// CLONE_PARENT and CLONE_NEWPID work together. A throwaway child makes the clone, so the
/// new task becomes our child and we reap it.
pub fn clone_parent_vs_pid() -> ProbeResult {
    let (r, w) = nix::unistd::pipe().map_err(sys("pipe"))?;
    let wfd = w.as_raw_fd();
    let mut args = [0u64; CLONE_ARGS_WORDS];
    args[CA_FLAGS] = (libc::CLONE_NEWPID | libc::CLONE_PARENT) as u64;
    let mut middle = Child::spawn(move || {
        let pid = clone3(&args);
        if pid == 0 {
            raw::exit(0);
        }
        let pid = pid as i32;
        // SAFETY: raw write of 4 bytes from a live local.
        unsafe { libc::syscall(libc::SYS_write, wfd, &pid as *const i32, 4usize) };
        raw::exit(if pid > 0 { 0 } else { 1 })
    })?;
    drop(w);
    let mut buf = [0u8; 4];
    let n = nix::unistd::read(&r, &mut buf).map_err(sys("read the CLONE_PARENT probe pipe"))?;
    middle.wait_exit()?;
    let pid = i32::from_ne_bytes(buf);
    if n != 4 || pid <= 0 {
        return Err(missing("CLONE_PARENT | CLONE_NEWPID don't work together"));
    }
    let mut status = 0;
    // SAFETY: reaps the task that CLONE_PARENT made our child; `status` is a valid pointer.
    unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
    Ok(())
}

/// pidfd_open() on ourselves, then pidfd_getfd() of one end of a socketpair: data written to
/// the other end must be readable through the stolen copy.
pub fn pidfd_store() -> ProbeResult {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::Datagram,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(sys("Can't open unix socket pair"))?;
    // SAFETY: raw pidfd_open with integer arguments.
    let pidfd = check_ret(unsafe { libc::syscall(libc::SYS_pidfd_open, std::process::id(), 0) })
        .map_err(|e| {
            missing(format!(
                "Pidfd store requires pidfd_open syscall which is not supported: {e}"
            ))
        })?;
    let pidfd = own_fd(pidfd);
    // SAFETY: raw pidfd_getfd with integer arguments.
    let stolen = check_ret(unsafe {
        libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), b.as_raw_fd(), 0)
    })
    .map_err(|e| {
        missing(format!(
            "Pidfd store requires pidfd_getfd syscall which is not supported: {e}"
        ))
    })?;
    let stolen = own_fd(stolen);
    nix::unistd::write(&a, &1984u32.to_ne_bytes()).map_err(sys("write to socket"))?;
    let mut buf = [0u8; 4];
    nix::unistd::read(&stolen, &mut buf).map_err(sys("read from the stolen socket"))?;
    if u32::from_ne_bytes(buf) != 1984 {
        return Err(missing(
            "Unexpected value read from socket taken with pidfd_getfd",
        ));
    }
    Ok(())
}

const SEM_NEXT_ID: &str = "/proc/sys/kernel/sem_next_id";

/// This caller may set the id of the next SysV IPC object (restoring IPC objects with their
/// ids): /proc/sys/kernel/sem_next_id opens for reading and writing (nothing is written).
/// It is opened, not access()ed: access() checks a non-root caller without its capabilities,
/// while the kernel (5.16+) lets a holder of CAP_CHECKPOINT_RESTORE over the IPC namespace's
/// user namespace write it. So root and non-root callers are both really asked.
pub fn ipc() -> ProbeResult {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(SEM_NEXT_ID)
        .map(drop)
        .map_err(|e| ProbeError::Sys {
            what: format!("{SEM_NEXT_ID} is inaccessible"),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        })
}
