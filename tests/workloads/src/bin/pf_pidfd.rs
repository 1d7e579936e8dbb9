//! pidfds a restore must bring back, checked from inside, in the manner of CRIU's zdtm pidfd
//! tests: `pf_pidfd RESULT_FILE WORK_DIR`.
//!
//! It holds a pidfd of itself, a non-blocking pidfd of a child of its own (which sleeps), and
//! two pidfds of one child that has exited and been reaped. It writes "READY" to RESULT_FILE
//! and waits for SIGUSR1; then it checks what each pidfd names (fdinfo `Pid:`), that signals
//! go through the live ones and not the dead ones, and ends its child through its pidfd.

use criu_test_workloads::verdict::{self, catch_usr1, ready_then_wait};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

fn pidfd_open(pid: i32, flags: i32) -> OwnedFd {
    // SAFETY: pidfd_open takes only integers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) };
    assert!(
        fd >= 0,
        "pidfd_open {pid}: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a new fd nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// 0, or the errno of pidfd_send_signal.
fn send(fd: &OwnedFd, sig: i32) -> i32 {
    // SAFETY: pidfd_send_signal with no siginfo.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), sig, 0, 0) };
    if r == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    }
}

/// The `Pid:` line of a pidfd's fdinfo.
fn names(fd: &OwnedFd) -> String {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// Forks a child that runs `child` and exits.
fn fork(child: fn()) -> i32 {
    // SAFETY: this process has one thread; the child only sleeps or exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        child();
        // SAFETY: ending the child without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    pid
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = args.get(1).expect("RESULT_FILE").clone();
    let check = |ok: bool, what: String| verdict::check(&result, ok, what);
    let _ = nix::unistd::setsid();
    catch_usr1();
    let me = std::process::id() as i32;
    let own = pidfd_open(me, 0);
    let sleeper = fork(|| loop {
        std::thread::sleep(std::time::Duration::from_secs(100));
    });
    let live = pidfd_open(sleeper, libc::O_NONBLOCK);
    let gone = fork(|| {});
    let dead = [pidfd_open(gone, 0), pidfd_open(gone, 0)];
    // SAFETY: reaping our own exited child.
    unsafe { libc::waitpid(gone, std::ptr::null_mut(), 0) };

    ready_then_wait(&result);

    check(
        names(&own) == me.to_string(),
        format!("own pidfd names {}", names(&own)),
    );
    check(
        names(&live) == sleeper.to_string(),
        format!("child pidfd names {}", names(&live)),
    );
    for d in &dead {
        check(names(d) == "-1", format!("dead pidfd names {}", names(d)));
        check(
            send(d, 0) == libc::ESRCH,
            "a signal went through a dead pidfd".into(),
        );
    }
    let flags = nix::fcntl::fcntl(&live, nix::fcntl::FcntlArg::F_GETFL).unwrap_or(0);
    check(
        flags & libc::O_NONBLOCK != 0,
        format!("child pidfd flags {flags:#o}"),
    );
    check(send(&own, 0) == 0, "no signal through our own pidfd".into());
    check(
        send(&live, libc::SIGKILL) == 0,
        "cannot kill the child through its pidfd".into(),
    );
    let mut status = 0;
    // SAFETY: reaping our own child.
    let reaped = unsafe { libc::waitpid(sleeper, &mut status, 0) };
    check(
        reaped == sleeper && libc::WIFSIGNALED(status),
        format!("child ended with {status:#x}"),
    );
    std::fs::write(&result, "PASS\n").expect("write PASS");
}
