//! Self-checking epoll workload for restore tests: `nt_epoll RESULT_FILE WORK_DIR`.
//!
//! Sets up one epoll with pipes registered level-triggered, edge-triggered, one-shot, one-shot
//! already fired, and one whose fd was moved (dup, close) after registering; forks a child that
//! shares the epoll. Writes the child's pid to WORK_DIR/child.pid and "READY" to RESULT_FILE,
//! then each waits for SIGUSR1: the parent checks its events and writes "PASS" or "FAIL: why"
//! to RESULT_FILE; the child does the same for its own pipe into RESULT_FILE.child.
//! With a third argument `escaped`, the moved target is then kept open only by a process
//! outside the tree (its pid in WORK_DIR/holder.pid) and closed here: a dump must refuse it,
//! so the check then expects the registrations exactly as they were (nothing was restored).
//! With `single`, no child is forked.

use std::os::fd::{IntoRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

static GOT_USR1: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    GOT_USR1.store(true, Ordering::SeqCst);
}

fn pipe() -> (RawFd, RawFd) {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    (r.into_raw_fd(), w.into_raw_fd())
}

fn add(ep: RawFd, op: i32, fd: RawFd, events: u32, data: u64) {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: `ev` is a live epoll_event for the call.
    let r = unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) };
    assert_eq!(r, 0, "epoll_ctl {op} fd {fd}");
}

/// The data of every event ready now (or within `ms`).
fn ready(ep: RawFd, ms: i32) -> Vec<u64> {
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 16];
    // SAFETY: the buffer holds 16 events.
    let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), 16, ms) };
    if n < 0 {
        return vec![u64::MAX];
    }
    let mut v: Vec<u64> = evs[..n as usize].iter().map(|e| e.u64).collect();
    v.sort();
    v
}

fn write1(fd: RawFd) {
    // SAFETY: writes one byte from a live buffer.
    assert_eq!(unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) }, 1);
}

fn read1(fd: RawFd) {
    let mut b = [0u8; 16];
    // SAFETY: reads into a live buffer of 16 bytes.
    unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) };
}

fn wait_usr1() {
    while !GOT_USR1.load(Ordering::SeqCst) {
        // SAFETY: pause has no arguments.
        unsafe { libc::pause() };
    }
}

fn check(what: &str, got: Vec<u64>, want: &[u64], errors: &mut Vec<String>) {
    if got != want {
        errors.push(format!("{what}: events {got:x?}, expected {want:x?}"));
    }
}

fn verdict(path: &str, errors: &[String]) {
    let text = if errors.is_empty() {
        "PASS\n".to_string()
    } else {
        format!("FAIL: {}\n", errors.join("; "))
    };
    std::fs::write(path, text).expect("write result");
}

/// (tfd, events, data) of each target fdinfo shows for `ep`, sorted.
fn targets(ep: RawFd) -> Vec<(i32, String, String)> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{ep}")).unwrap_or_default();
    let mut v: Vec<(i32, String, String)> = info
        .lines()
        .filter(|l| l.starts_with("tfd:"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[1].parse().unwrap_or(-1),
                f[3].to_string(),
                f[5].to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The registrations a restore gives back for `before`: the target registered as `moved` is
/// found under `moved_to` (the number it is open at), and the disarmed one-shot `fired` comes
/// back with EPOLLERR|EPOLLHUP.
fn restored_targets(
    before: &[(i32, String, String)],
    moved: RawFd,
    moved_to: RawFd,
    fired: RawFd,
) -> Vec<(i32, String, String)> {
    before
        .iter()
        .map(|(fd, e, d)| {
            let fd = if *fd == moved { moved_to } else { *fd };
            // A disarmed one-shot can only be added back with EPOLLERR|EPOLLHUP, which the
            // kernel adds to every registration (CRIU has the same limit).
            let e = if fd == fired {
                let bits = u32::from_str_radix(e, 16).unwrap_or(0);
                format!("{:x}", bits | (libc::EPOLLERR | libc::EPOLLHUP) as u32)
            } else {
                e.clone()
            };
            (fd, e, d.clone())
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn main() {
    // A dump root leads its own session: criu, like CRIU, refuses one that does not without
    // --shell-job.
    let _ = nix::unistd::setsid();
    let args: Vec<String> = std::env::args().collect();
    let result = args.get(1).expect("RESULT_FILE").clone();
    let work = args.get(2).expect("WORK_DIR").clone();
    // SAFETY: closing inherited fds and installing a handler that only sets an atomic.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t);
    }
    // SAFETY: plain syscall.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0);
    let level = pipe();
    let edge = pipe();
    let once = pipe();
    let fired = pipe();
    let moved = pipe();
    let child_pipe = pipe();
    let inn = libc::EPOLLIN as u32;
    add(ep, libc::EPOLL_CTL_ADD, level.0, inn, 0x1111);
    add(
        ep,
        libc::EPOLL_CTL_ADD,
        edge.0,
        inn | libc::EPOLLET as u32,
        0x2222,
    );
    add(
        ep,
        libc::EPOLL_CTL_ADD,
        once.0,
        inn | libc::EPOLLONESHOT as u32,
        0x3333,
    );
    add(
        ep,
        libc::EPOLL_CTL_ADD,
        fired.0,
        inn | libc::EPOLLONESHOT as u32,
        0x4444,
    );
    add(ep, libc::EPOLL_CTL_ADD, moved.0, inn, 0x5555);
    add(ep, libc::EPOLL_CTL_ADD, child_pipe.0, inn, 0x6666);
    // Fire the one-shot now: after restore it must stay disarmed.
    write1(fired.1);
    assert_eq!(ready(ep, 1000), vec![0x4444]);
    read1(fired.0);
    // Move the registered read end to another number.
    // SAFETY: plain fd syscalls on our own fds.
    let moved_to = unsafe { libc::fcntl(moved.0, libc::F_DUPFD, 200) };
    // SAFETY: as above.
    unsafe { libc::close(moved.0) };
    let escaped = args.get(3).map(String::as_str) == Some("escaped");
    if escaped {
        // Keep the moved target open only in a process outside our tree, then close ours.
        // SAFETY: fork in a single-threaded program; the child only forks and exits.
        let mid = unsafe { libc::fork() };
        if mid == 0 {
            // SAFETY: as above; the grandchild only writes its pid and pauses.
            let holder = unsafe { libc::fork() };
            if holder == 0 {
                std::fs::write(format!("{work}/holder.pid"), std::process::id().to_string())
                    .expect("holder.pid");
                loop {
                    // SAFETY: pause has no arguments.
                    unsafe { libc::pause() };
                }
            }
            // SAFETY: leaves without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: reaps the middle child; closes our own fd.
        unsafe {
            libc::waitpid(mid, std::ptr::null_mut(), 0);
            libc::close(moved_to);
        }
        while !std::path::Path::new(&format!("{work}/holder.pid")).exists() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let before = targets(ep);

    let single = args.get(3).map(String::as_str) == Some("single");
    // SAFETY: fork in a single-threaded program.
    let child = if single { 1 } else { unsafe { libc::fork() } };
    if child == 0 {
        wait_usr1();
        let mut errors = Vec::new();
        write1(child_pipe.1);
        check(
            "child: shared epoll",
            ready(ep, 2000),
            &[0x6666],
            &mut errors,
        );
        read1(child_pipe.0);
        verdict(&format!("{result}.child"), &errors);
        loop {
            // SAFETY: pause has no arguments.
            unsafe { libc::pause() };
        }
    }
    if !single {
        std::fs::write(format!("{work}/child.pid"), child.to_string()).expect("child.pid");
    }
    std::fs::write(&result, "READY\n").expect("write result");
    wait_usr1();

    let mut errors = Vec::new();
    // Restored, the moved target is registered under its new number; the rest under theirs.
    // Not restored (escaped: the dump refused it), everything is as it was.
    let after = targets(ep);
    let want: Vec<(i32, String, String)> = if escaped {
        before.clone()
    } else {
        restored_targets(&before, moved.0, moved_to, fired.0)
    };
    if after != want {
        errors.push(format!("fdinfo targets {after:?}, expected {want:?}"));
    }
    check("nothing ready yet", ready(ep, 0), &[], &mut errors);
    write1(level.1);
    check("level", ready(ep, 2000), &[0x1111], &mut errors);
    check("level again", ready(ep, 0), &[0x1111], &mut errors);
    read1(level.0);
    write1(edge.1);
    check("edge", ready(ep, 2000), &[0x2222], &mut errors);
    check("edge again", ready(ep, 0), &[], &mut errors);
    read1(edge.0);
    write1(once.1);
    check("oneshot", ready(ep, 2000), &[0x3333], &mut errors);
    check("oneshot again", ready(ep, 0), &[], &mut errors);
    read1(once.0);
    write1(fired.1);
    check("fired oneshot", ready(ep, 100), &[], &mut errors);
    // Re-arming goes through the fd number the program registered.
    let mut ev = libc::epoll_event {
        events: inn | libc::EPOLLONESHOT as u32,
        u64: 0x4445,
    };
    // SAFETY: `ev` is live for the call.
    if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_MOD, fired.0, &mut ev) } != 0 {
        errors.push(format!(
            "EPOLL_CTL_MOD of fd {}: {}",
            fired.0,
            std::io::Error::last_os_error()
        ));
    }
    check("re-armed oneshot", ready(ep, 2000), &[0x4445], &mut errors);
    read1(fired.0);
    write1(moved.1);
    check("moved", ready(ep, 2000), &[0x5555], &mut errors);
    read1(moved_to);
    verdict(&result, &errors);
    // Stay around to be killed.
    loop {
        // SAFETY: pause has no arguments.
        unsafe { libc::pause() };
    }
}
