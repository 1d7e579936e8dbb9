//! Creating the stub of a restored task: a child with an exact pid (clone3 `set_tid`) that
//! blocks every signal and sleeps in pause(2) until it is seized. It is not group-stopped, so
//! detaching it later does not leave it stopped. The child runs raw syscalls only, never Rust
//! or libc code that could take a lock another thread of criu held at fork time.

use nix::errno::Errno;

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

/// Creates a child whose pid is `pid` in criu's pid namespace, with extra clone `flags`
/// (namespaces), that sleeps with every signal blocked and dies with SIGKILL if criu's
/// creating thread goes away before it is taken over. Returns the child's pid.
pub fn clone_stopped_child(pid: i32, flags: u64) -> Result<i32, Errno> {
    let set_tid = [pid];
    let all_signals: u64 = !0;
    let args = CloneArgs {
        flags,
        // With CLONE_PARENT the child gets criu's own exit signal; clone3 wants 0 here.
        exit_signal: if flags & libc::CLONE_PARENT as u64 != 0 {
            0
        } else {
            libc::SIGCHLD as u64
        },
        set_tid: set_tid.as_ptr() as u64,
        set_tid_size: 1,
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
        // SAFETY: raw syscalls in the child; nothing here allocates or locks.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                &all_signals as *const u64,
                0usize,
                8usize,
            );
            libc::syscall(
                libc::SYS_prctl,
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL,
                0,
                0,
                0,
            );
            loop {
                libc::syscall(libc::SYS_pause);
            }
        }
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

    #[test]
    fn child_gets_the_requested_pid_and_sleeps_with_signals_blocked() {
        // Find a free pid well above the current ones.
        let mut pid = 0;
        for candidate in (300_000..400_000).step_by(977) {
            if !std::path::Path::new(&format!("/proc/{candidate}")).exists() {
                pid = candidate;
                break;
            }
        }
        let max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        if pid == 0 || pid >= max {
            eprintln!("no free pid below pid_max={max}; skipping");
            return;
        }
        let got = clone_stopped_child(pid, 0).expect("clone3 with set_tid (needs root)");
        assert_eq!(got, pid);
        // Wait until it sleeps in pause() with everything blocked.
        let mut status = String::new();
        for _ in 0..1000 {
            status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            if status.contains("SigBlk:\tfffffffffffffff") && status.contains("State:\tS") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(status.contains("State:\tS"), "{status}");
        assert!(status.contains("SigBlk:\tfffffffffffffff"), "{status}");
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
    fn taken_pid_is_refused() {
        let me = std::process::id() as i32;
        assert_eq!(clone_stopped_child(me, 0), Err(Errno::EEXIST));
    }
}
