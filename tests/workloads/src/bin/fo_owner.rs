//! File owners and F_SETSIG: `fo_owner RESULT_FILE WORK_DIR`. Fd 3 is one end of a unix
//! stream pair (fd 4 the other) with O_ASYNC, owned by this process and signalling SIGRTMIN+1;
//! fd 5 an epoll owned by this process group with SIGRTMIN+3; fd 6 an inotify watching
//! WORK_DIR with O_ASYNC, owned by this process and signalling SIGRTMIN+2. It writes "READY"
//! to RESULT_FILE and waits for SIGUSR1; then it checks owners, signals and O_ASYNC with
//! fcntl, that data on the socket and an event on the inotify each deliver their signal (with
//! the fd in the siginfo), and writes "PASS" or "FAIL: reason".

use std::os::fd::RawFd;

const F_SETSIG: i32 = 10;
const F_GETSIG: i32 = 11;
const F_SETOWN_EX: i32 = 15;
const F_GETOWN_EX: i32 = 16;
const F_OWNER_PID: i32 = 1;
const F_OWNER_PGRP: i32 = 2;
/// si_code of a SIGPOLL-style signal for input.
const POLL_IN: i32 = 1;

fn check(ok: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(why())
    }
}

fn sys(r: i32, what: &str) -> Result<i32, String> {
    if r < 0 {
        Err(format!("{what}: {}", std::io::Error::last_os_error()))
    } else {
        Ok(r)
    }
}

fn set_owner(fd: RawFd, kind: i32, pid: i32, sig: i32) -> Result<(), String> {
    let owner = [kind, pid];
    // SAFETY: fcntl reads a struct f_owner_ex (two ints) from `owner`, which outlives the call.
    let ret = unsafe { libc::fcntl(fd, F_SETOWN_EX, owner.as_ptr()) };
    sys(ret, "F_SETOWN_EX")?;
    // SAFETY: plain fcntl with an int argument.
    sys(unsafe { libc::fcntl(fd, F_SETSIG, sig) }, "F_SETSIG")?;
    Ok(())
}

/// (owner kind, owner pid, signal, O_ASYNC set) of `fd`.
fn owner_of(fd: RawFd) -> Result<(i32, i32, i32, bool), String> {
    let mut owner = [0i32; 2];
    // SAFETY: fcntl writes a struct f_owner_ex (two ints) into `owner`.
    let ret = unsafe { libc::fcntl(fd, F_GETOWN_EX, owner.as_mut_ptr()) };
    sys(ret, "F_GETOWN_EX")?;
    // SAFETY: plain fcntl calls.
    let sig = sys(unsafe { libc::fcntl(fd, F_GETSIG) }, "F_GETSIG")?;
    // SAFETY: as above.
    let fl = sys(unsafe { libc::fcntl(fd, libc::F_GETFL) }, "F_GETFL")?;
    Ok((owner[0], owner[1], sig, fl & libc::O_ASYNC != 0))
}

/// Waits up to 5 s for `sig` (blocked); (si_code, si_fd) of its siginfo.
fn wait_signal(sig: i32) -> Result<(i32, i32), String> {
    // SAFETY: a zeroed sigset and siginfo filled by the libc calls; the siginfo is read as the
    // ints the kernel lays out (x86_64: si_code at 2, si_fd at 6 for SIGPOLL-style signals).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let ts = libc::timespec {
            tv_sec: 5,
            tv_nsec: 0,
        };
        if libc::sigtimedwait(&set, &mut info, &ts) != sig {
            return Err(format!(
                "signal {sig} not delivered: {}",
                std::io::Error::last_os_error()
            ));
        }
        let words = &*(&info as *const libc::siginfo_t as *const [i32; 8]);
        Ok((words[2], words[6]))
    }
}

fn checks(
    work: &str,
    me: i32,
    (a, b, ep, ino): (RawFd, RawFd, RawFd, RawFd),
) -> Result<(), String> {
    let rt = libc::SIGRTMIN();
    let got = owner_of(a)?;
    check(got == (F_OWNER_PID, me, rt + 1, true), || {
        format!("socket fd {a}: owner/signal/async {got:?}")
    })?;
    let got = owner_of(ep)?;
    check((got.0, got.1, got.2) == (F_OWNER_PGRP, me, rt + 3), || {
        format!("epoll fd {ep}: owner/signal {got:?}")
    })?;
    let got = owner_of(ino)?;
    check(got == (F_OWNER_PID, me, rt + 2, true), || {
        format!("inotify fd {ino}: owner/signal/async {got:?}")
    })?;
    // SAFETY: writes one byte from a live buffer.
    let ret = unsafe { libc::write(b, b"x".as_ptr().cast(), 1) as i32 };
    sys(ret, "write to the peer")?;
    let (code, fd) = wait_signal(rt + 1)?;
    check((code, fd) == (POLL_IN, a), || {
        format!("socket signal: si_code {code}, si_fd {fd}")
    })?;
    std::fs::write(format!("{work}/new"), b"").map_err(|e| format!("create: {e}"))?;
    let (code, fd) = wait_signal(rt + 2)?;
    check((code, fd) == (POLL_IN, ino), || {
        format!("inotify signal: si_code {code}, si_fd {fd}")
    })?;
    let mut buf = [0u8; 256];
    // SAFETY: reads into a live buffer of its size.
    let n = sys(
        unsafe { libc::read(ino, buf.as_mut_ptr().cast(), buf.len()) as i32 },
        "read inotify",
    )?;
    let text = String::from_utf8_lossy(&buf[16..n as usize]);
    check(text.starts_with("new"), || {
        format!("inotify event for {text:?}")
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = args.get(1).expect("RESULT_FILE").clone();
    let work = args.get(2).expect("WORK_DIR").clone();
    let rt = libc::SIGRTMIN();
    let mut fds = [0; 2];
    // SAFETY: plain syscalls on our own process; `fds` and the path outlive the calls.
    let (me, ep, ino) = unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        libc::setsid();
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGUSR1, rt + 1, rt + 2, rt + 3] {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr());
        let ep = libc::epoll_create1(0);
        let ino = libc::inotify_init1(libc::IN_NONBLOCK);
        let dir = std::ffi::CString::new(work.clone()).unwrap();
        libc::inotify_add_watch(ino, dir.as_ptr(), libc::IN_CREATE);
        libc::fcntl(fds[0], libc::F_SETFL, libc::O_ASYNC | libc::O_NONBLOCK);
        libc::fcntl(ino, libc::F_SETFL, libc::O_ASYNC | libc::O_NONBLOCK);
        (libc::getpid(), ep, ino)
    };
    let setup = set_owner(fds[0], F_OWNER_PID, me, rt + 1)
        .and_then(|()| set_owner(ep, F_OWNER_PGRP, me, rt + 3))
        .and_then(|()| set_owner(ino, F_OWNER_PID, me, rt + 2));
    if let Err(why) = setup {
        std::fs::write(&result, format!("FAIL: setup: {why}\n")).unwrap();
        return;
    }
    std::fs::write(&result, "READY\n").unwrap();
    // SAFETY: sigwait on a zeroed, filled set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        let mut sig = 0;
        while libc::sigwait(&set, &mut sig) != 0 || sig != libc::SIGUSR1 {}
    }
    let text = match checks(&work, me, (fds[0], fds[1], ep, ino)) {
        Ok(()) => "PASS\n".to_string(),
        Err(why) => format!("FAIL: {why}\n"),
    };
    std::fs::write(&result, text).unwrap();
}
