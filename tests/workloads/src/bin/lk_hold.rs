//! A process holding one lock of each kind, for the file-lock tests:
//! `lk_hold RESULT_FILE WORK_DIR`.
//!
//! In WORK_DIR it takes an flock (exclusive) on `flock`, a POSIX write lock on bytes 10..29 of
//! `posix` (fd 4), an OFD write lock on bytes 0..4 of `ofd` (fd 5) and a read lease on `lease`
//! (fd 6); fd 3 is the flock'd file. It writes "READY" to RESULT_FILE and waits for SIGUSR1;
//! then it checks that its locks are still there, as far as a process can see its own locks,
//! and writes "PASS" or "FAIL: reason".

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

static GOT_USR1: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    GOT_USR1.store(true, Ordering::SeqCst);
}

fn fail(result: &str, why: String) -> ! {
    let _ = std::fs::write(result, format!("FAIL: {why}\n"));
    std::process::exit(1);
}

fn flock_arg(ty: i32, start: i64, len: i64) -> libc::flock {
    libc::flock {
        l_type: ty as i16,
        l_whence: libc::SEEK_SET as i16,
        l_start: start,
        l_len: len,
        l_pid: 0,
    }
}

/// fcntl with a `struct flock`; the errno on failure.
fn fcntl_lock(fd: RawFd, cmd: i32, fl: &mut libc::flock) -> Result<(), i32> {
    // SAFETY: `fl` is a live struct flock for the duration of the call.
    let r = unsafe { libc::fcntl(fd, cmd, fl as *mut libc::flock) };
    if r < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    Ok(())
}

fn fcntl_int(fd: RawFd, cmd: i32, arg: i32) -> i32 {
    // SAFETY: an int-argument fcntl on our own fd.
    unsafe { libc::fcntl(fd, cmd, arg) }
}

fn flock(fd: RawFd, op: i32) -> i32 {
    // SAFETY: flock on our own fd.
    unsafe { libc::flock(fd, op) }
}

/// Opens `path` at exactly fd `want`.
fn open_at(path: &str, write: bool, want: RawFd) -> RawFd {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .create(write)
        .truncate(false)
        .open(path)
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    let fd = f.as_raw_fd();
    if fd != want {
        // SAFETY: dup2 onto a number we own; the original is closed with `f`.
        assert_eq!(unsafe { libc::dup2(fd, want) }, want);
        drop(f);
    } else {
        std::mem::forget(f);
    }
    want
}

fn locks_shown(fd: RawFd) -> String {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("lock:"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn check(work: &str) -> Result<(), String> {
    // flock and OFD locks conflict with another description, even in this process.
    let again = std::fs::File::open(format!("{work}/flock")).map_err(|e| e.to_string())?;
    if flock(again.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 {
        return Err("the flock is gone: a second description took it".into());
    }
    let again = std::fs::File::open(format!("{work}/ofd")).map_err(|e| e.to_string())?;
    let mut probe = flock_arg(libc::F_WRLCK, 2, 1);
    fcntl_lock(again.as_raw_fd(), libc::F_OFD_GETLK, &mut probe)
        .map_err(|e| format!("F_OFD_GETLK: {e}"))?;
    if i32::from(probe.l_type) != libc::F_WRLCK || probe.l_start != 0 || probe.l_len != 5 {
        return Err(format!(
            "OFD lock not seen: type {} start {} len {}",
            probe.l_type, probe.l_start, probe.l_len
        ));
    }
    // Own POSIX locks never conflict: the kernel's view of fd 4 must show it.
    let posix = locks_shown(4);
    if !(posix.contains("POSIX") && posix.contains("WRITE") && posix.contains(" 10 29")) {
        return Err(format!("POSIX lock not on fd 4: {posix:?}"));
    }
    if !locks_shown(3).contains("FLOCK") {
        return Err(format!("flock not on fd 3: {:?}", locks_shown(3)));
    }
    let lease = fcntl_int(6, libc::F_GETLEASE, 0);
    if lease != libc::F_RDLCK {
        return Err(format!("lease on fd 6 is {lease}, not F_RDLCK"));
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = args.get(1).expect("RESULT_FILE").clone();
    let work = args.get(2).expect("WORK_DIR").clone();
    // SAFETY: plain syscalls on our own process; the handler only sets an atomic.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        libc::setsid();
        libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t);
        // A lease break would be told with SIGIO.
        libc::signal(libc::SIGIO, libc::SIG_IGN);
    }
    for name in ["flock", "posix", "ofd", "lease"] {
        std::fs::write(format!("{work}/{name}"), [b'x'; 64]).expect("create");
    }
    let f = open_at(&format!("{work}/flock"), true, 3);
    if flock(f, libc::LOCK_EX | libc::LOCK_NB) != 0 {
        fail(&result, "flock".into());
    }
    let p = open_at(&format!("{work}/posix"), true, 4);
    if let Err(e) = fcntl_lock(p, libc::F_SETLK, &mut flock_arg(libc::F_WRLCK, 10, 20)) {
        fail(&result, format!("F_SETLK: {e}"));
    }
    let o = open_at(&format!("{work}/ofd"), true, 5);
    if let Err(e) = fcntl_lock(o, libc::F_OFD_SETLK, &mut flock_arg(libc::F_WRLCK, 0, 5)) {
        fail(&result, format!("F_OFD_SETLK: {e}"));
    }
    let l = open_at(&format!("{work}/lease"), false, 6);
    if fcntl_int(l, libc::F_SETLEASE, libc::F_RDLCK) != 0 {
        fail(
            &result,
            format!("F_SETLEASE: {}", std::io::Error::last_os_error()),
        );
    }
    if let Err(why) = check(&work) {
        fail(&result, format!("before dump: {why}"));
    }
    std::fs::write(&result, "READY\n").expect("write result");
    while !GOT_USR1.load(Ordering::SeqCst) {
        // SAFETY: waits for a signal.
        unsafe { libc::pause() };
    }
    match check(&work) {
        Ok(()) => std::fs::write(&result, "PASS\n").expect("write result"),
        Err(why) => fail(&result, why),
    }
    loop {
        // SAFETY: waits to be killed.
        unsafe { libc::pause() };
    }
}
