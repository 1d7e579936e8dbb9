//! Creating the stub of a restored task: a child with an exact pid (clone3 `set_tid`) that
//! blocks every signal and sleeps in pause(2) until it is seized. It is not group-stopped, so
//! detaching it later does not leave it stopped. The child runs raw syscalls only, never Rust
//! or libc code that could take a lock another thread of criu held at fork time.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard};

use nix::errno::Errno;

/// Set to 1 to give restored tasks their pids through /proc/sys/kernel/ns_last_pid instead of
/// clone3's `set_tid` (the way for kernels without it; tests force it with this variable).
pub const NS_LAST_PID_ENV: &str = "CRIU_RS_PID_BY_NS_LAST_PID";

/// Whether pids are claimed through ns_last_pid (see `NS_LAST_PID_ENV`).
pub fn pid_by_ns_last_pid() -> bool {
    std::env::var(NS_LAST_PID_ENV).is_ok_and(|v| v == "1")
}

/// ns_last_pid held, with `pid - 1` written to it: the next task created in criu's pid
/// namespace gets `pid`. Creations in criu take the process-wide lock, other programs that
/// write ns_last_pid (another criu) the file lock. Dropping it puts the old value back when it
/// was higher, so that programs forking meanwhile do not land on the next pids of the tree,
/// and lets go of both locks.
pub struct NextPid {
    file: std::fs::File,
    previous: i32,
    pid: i32,
    _guard: MutexGuard<'static, ()>,
}

impl Drop for NextPid {
    fn drop(&mut self) {
        if self.previous > self.pid {
            use std::os::unix::fs::FileExt;
            let _ = self.file.write_at(self.previous.to_string().as_bytes(), 0);
        }
    }
}

/// Makes `pid` the next pid of criu's pid namespace, until the returned guard is dropped. A
/// program that forks meanwhile without the lock can still take it: the caller checks the pid
/// it got.
pub fn claim_next_pid(pid: i32) -> Result<NextPid, Errno> {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/proc/sys/kernel/ns_last_pid")
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    // SAFETY: flock on an fd we own; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } < 0 {
        return Err(Errno::last());
    }
    let previous = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    file.write_all((pid - 1).to_string().as_bytes())
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    Ok(NextPid {
        file,
        previous,
        pid,
        _guard: guard,
    })
}

/// `struct clone_args` of clone3(2), version 2 (with `set_tid` and `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Blocks every signal of the calling thread with one raw syscall (SIGKILL and SIGSTOP stay):
/// for a child of a multi-threaded criu, which may run nothing but raw syscalls.
pub(crate) fn block_all_signals_raw() {
    let all_signals: u64 = !0;
    // SAFETY: rt_sigprocmask reads 8 bytes at `&all_signals`, a live local.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all_signals as *const u64,
            0usize,
            8usize,
        )
    };
}

/// Creates a child whose pid is `pid` in criu's pid namespace (or in its new one, with
/// CLONE_NEWPID in `flags`), with extra clone `flags` (namespaces), that sleeps with every signal blocked and dies with SIGKILL if criu's
/// creating thread goes away before it is taken over. Returns the child's pid.
pub fn clone_stopped_child(pid: i32, flags: u64) -> Result<i32, Errno> {
    if !pid_by_ns_last_pid() {
        return clone_once(pid, flags, false);
    }
    // Another program may fork between the ns_last_pid write and the clone: try again.
    for _ in 0..20 {
        match clone_once(pid, flags, true) {
            Err(Errno::EAGAIN) => continue,
            other => return other,
        }
    }
    Err(Errno::EEXIST)
}

/// Creates the init of a new pid namespace (CLONE_NEWPID and the other `flags`) owned by a
/// namespace criu cannot enter itself (a user namespace: a multi-threaded process cannot
/// join one): a first child joins each of `joins` (namespace fd, its CLONE_NEW* flag), in
/// order, then makes the init as criu's child (CLONE_PARENT) and exits. The init is the
/// stub of [`clone_stopped_child`]. Returns its pid as criu sees it.
pub fn clone_stopped_init_in(flags: u64, joins: &[(i32, i32)]) -> Result<i32, Errno> {
    let default_action = [0u64; 4];
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (pid_r, pid_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (ready_fd, pid_fd) = (ready_w.as_raw_fd(), pid_w.as_raw_fd());
    let init_args = CloneArgs {
        flags: flags | libc::CLONE_NEWPID as u64 | libc::CLONE_PARENT as u64,
        ..CloneArgs::default()
    };
    let joiner_args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    let size = std::mem::size_of::<CloneArgs>();
    // SAFETY: as in clone_once: a copy of our memory, whose `joins` and argument structs the
    // child reads; it issues raw syscalls only.
    let joiner = unsafe { libc::syscall(libc::SYS_clone3, &joiner_args as *const CloneArgs, size) };
    if joiner < 0 {
        return Err(Errno::last());
    }
    if joiner == 0 {
        block_all_signals_raw();
        // SAFETY: raw syscalls in the child on live locals; it ends in exit.
        unsafe {
            let mut answer: i32 = 0;
            for &(fd, flag) in joins {
                if libc::syscall(libc::SYS_setns, fd, flag) < 0 {
                    answer = -*libc::__errno_location();
                    break;
                }
            }
            if answer == 0 {
                let ret = libc::syscall(libc::SYS_clone3, &init_args as *const CloneArgs, size);
                if ret == 0 {
                    stub_body(ready_fd, &default_action);
                }
                answer = if ret < 0 {
                    -*libc::__errno_location()
                } else {
                    ret as i32
                };
            }
            libc::syscall(libc::SYS_write, pid_fd, &answer as *const i32, 4usize);
            libc::syscall(libc::SYS_exit, 0);
        }
    }
    drop(ready_w);
    drop(pid_w);
    let mut answer = [0u8; 4];
    let got = read_retrying(&pid_r, &mut answer);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(joiner as i32), None);
    let init = match got {
        Ok(4) => i32::from_ne_bytes(answer),
        Ok(_) => return Err(Errno::ECHILD),
        Err(e) => return Err(e),
    };
    if init < 0 {
        return Err(Errno::from_raw(-init));
    }
    let mut byte = [0u8; 1];
    if read_retrying(&ready_r, &mut byte)? != 1 {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(init), None);
        return Err(Errno::ECHILD);
    }
    Ok(init)
}

fn read_retrying(fd: &std::os::fd::OwnedFd, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        match nix::unistd::read(fd, buf) {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// The stub's life: every signal blocked and handled by default, SIGKILL when criu's
/// creating thread goes away, "ready" on `ready_fd`, then pause until seized.
///
/// # Safety
/// Only in a freshly cloned child: it issues raw syscalls and never returns.
unsafe fn stub_body(ready_fd: i32, default_action: &[u64; 4]) -> ! {
    block_all_signals_raw();
    // SAFETY: raw syscalls on live locals.
    unsafe {
        libc::syscall(
            libc::SYS_prctl,
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL,
            0,
            0,
            0,
        );
        // Every handler back to SIG_DFL (criu's own must not leak into the tree): a
        // restore then sets only the handlers the dump saw changed.
        for sig in 1..=64usize {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                default_action.as_ptr(),
                0usize,
                8usize,
            );
        }
        libc::syscall(libc::SYS_write, ready_fd, b"r".as_ptr(), 1usize);
        loop {
            libc::syscall(libc::SYS_pause);
        }
    }
}

fn clone_once(pid: i32, flags: u64, by_ns_last_pid: bool) -> Result<i32, Errno> {
    let set_tid = [pid];
    // struct kernel_sigaction of SIG_DFL: handler, flags, restorer, mask all zero.
    let default_action = [0u64; 4];
    // The child says on this pipe that its setup is done: it must not be seized half-way.
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let ready_fd = ready_w.as_raw_fd();
    let next = if by_ns_last_pid {
        Some(claim_next_pid(pid)?)
    } else {
        None
    };
    let args = CloneArgs {
        flags,
        // With CLONE_PARENT the child gets criu's own exit signal; clone3 wants 0 here.
        exit_signal: if flags & libc::CLONE_PARENT as u64 != 0 {
            0
        } else {
            libc::SIGCHLD as u64
        },
        set_tid: if next.is_some() {
            0
        } else {
            set_tid.as_ptr() as u64
        },
        set_tid_size: if next.is_some() { 0 } else { 1 },
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM gives the child a copy of our memory; `args` and
    // `set_tid` outlive the call. The child branch below issues raw syscalls only.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    if ret == 0 {
        // SAFETY: the freshly cloned child; nothing there allocates or locks.
        unsafe { stub_body(ready_fd, &default_action) };
    }
    drop(next);
    drop(ready_w);
    let mut byte = [0u8; 1];
    let ready = read_retrying(&ready_r, &mut byte);
    // With set_tid the pid is the one asked for (in the new pid namespace, with CLONE_NEWPID:
    // criu sees another).
    if by_ns_last_pid && ret != i64::from(pid) {
        // Someone else forked between our ns_last_pid write and the clone.
        let child = nix::unistd::Pid::from_raw(ret as i32);
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(child, None);
        return Err(Errno::EAGAIN);
    }
    if ready? != 1 {
        // It died before its setup was done.
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(ret as i32), None);
        return Err(Errno::ECHILD);
    }
    Ok(ret as i32)
}

/// Reaps `pid` if it has exited, without blocking. Returns whether it was reaped.
pub fn reap_nohang(pid: i32) -> bool {
    matches!(
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), Some(nix::sys::wait::WaitPidFlag::WNOHANG)),
        Ok(status) if status.pid().is_some()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pids no process holds, in the upper half of pid_max, away from pids being handed out
    /// now (`step` makes the two tests pick different ones). A pid may still be busy as the
    /// id of a group or session that outlived its leader: callers try the next one then.
    fn free_pids(step: usize) -> impl Iterator<Item = i32> {
        let max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        (max / 2..max - 1)
            .rev()
            .step_by(step)
            .filter(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
    }

    #[test]
    fn child_gets_the_requested_pid_and_sleeps_with_signals_blocked() {
        // Find a free pid well above the current ones.
        let (pid, got) = free_pids(977)
            .find_map(|pid| match clone_stopped_child(pid, 0) {
                Err(Errno::EEXIST) => None,
                got => Some((pid, got.expect("clone3 with set_tid (needs root)"))),
            })
            .expect("no free pid below pid_max to claim");
        assert_eq!(got, pid);
        // Wait until it sleeps in pause() with everything blocked (the kernel never lets
        // SIGKILL and SIGSTOP be blocked).
        let unblockable = (1u64 << (libc::SIGKILL - 1)) | (1u64 << (libc::SIGSTOP - 1));
        let blocked = format!("SigBlk:\t{:016x}", !unblockable);
        let mut status = String::new();
        for _ in 0..1000 {
            status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            if status.contains(&blocked) && status.contains("State:\tS") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(status.contains("State:\tS"), "{status}");
        assert!(status.contains(&blocked), "{status}");
        // A blockable signal does nothing; SIGKILL still works.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        assert!(!reap_nohang(pid));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    }

    #[test]
    fn ns_last_pid_gives_the_next_pid() {
        // A busy pid is skipped by the kernel: the child then gets a later one. Five tries.
        let tries: Vec<(i32, i32)> = free_pids(991)
            .take(5)
            .map(|pid| {
                let _next = claim_next_pid(pid).expect("write ns_last_pid (needs root)");
                // SAFETY: the child exits at once with a raw syscall.
                let ret = unsafe { libc::syscall(libc::SYS_fork) };
                if ret == 0 {
                    // SAFETY: raw exit in the child.
                    unsafe { libc::syscall(libc::SYS_exit_group, 0) };
                }
                let got = ret as i32;
                nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(got), None).unwrap();
                (pid, got)
            })
            .collect();
        assert!(tries.iter().any(|(pid, got)| pid == got), "{tries:?}");
    }

    #[test]
    fn taken_pid_is_refused() {
        let me = std::process::id() as i32;
        assert_eq!(clone_stopped_child(me, 0), Err(Errno::EEXIST));
    }
}
