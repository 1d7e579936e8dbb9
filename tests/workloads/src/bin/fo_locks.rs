//! Locks through fds that are not regular files: `fo_locks RESULT_FILE WORK_DIR`. Fd 3 is a
//! memfd with an exclusive flock and a POSIX write lock on bytes 10..19; fd 4 is the FIFO
//! WORK_DIR/fifo, open read-write, with a shared flock. It writes "READY" to RESULT_FILE and
//! waits for SIGUSR1; then it checks that /proc shows each lock on its fd and that a new
//! description of each file cannot take an exclusive flock, and writes "PASS" or "FAIL: why".

fn lock_lines(fd: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("lock:"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn has(fd: i32, words: &[&str]) -> Result<(), String> {
    let lines = lock_lines(fd);
    if lines.iter().any(|l| words.iter().all(|w| l.contains(w))) {
        Ok(())
    } else {
        Err(format!("fd {fd}: no lock with {words:?} in {lines:?}"))
    }
}

/// An exclusive flock through a new description of `fd`'s file must be refused.
fn flock_refused(fd: i32) -> Result<(), String> {
    let other = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{fd}"))
        .map_err(|e| format!("fd {fd}: open again: {e}"))?;
    let fd2 = std::os::fd::AsRawFd::as_raw_fd(&other);
    // SAFETY: flock on an fd we own.
    let r = unsafe { libc::flock(fd2, libc::LOCK_EX | libc::LOCK_NB) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    // Closing any fd of the file would drop this process's POSIX locks on it.
    std::mem::forget(other);
    if r == 0 || errno != Some(libc::EWOULDBLOCK) {
        return Err(format!("fd {fd}: flock from elsewhere: {r} {errno:?}"));
    }
    Ok(())
}

fn checks(memfd: i32, fifo: i32) -> Result<(), String> {
    has(memfd, &["FLOCK", "WRITE"])?;
    has(memfd, &["POSIX", "WRITE", " 10 19"])?;
    has(fifo, &["FLOCK", "READ"])?;
    flock_refused(memfd)?;
    flock_refused(fifo)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = args.get(1).expect("RESULT_FILE").clone();
    let work = args.get(2).expect("WORK_DIR").clone();
    let fifo_path = std::ffi::CString::new(format!("{work}/fifo")).unwrap();
    // SAFETY: plain syscalls on our own process and fds; pointers outlive the calls.
    let (memfd, fifo) = unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        libc::setsid();
        let memfd = libc::memfd_create(c"fo-lock".as_ptr(), 0);
        libc::write(memfd, [7u8; 100].as_ptr().cast(), 100);
        libc::flock(memfd, libc::LOCK_EX);
        let fl = libc::flock {
            l_type: libc::F_WRLCK as i16,
            l_whence: libc::SEEK_SET as i16,
            l_start: 10,
            l_len: 10,
            l_pid: 0,
        };
        libc::fcntl(memfd, libc::F_SETLK, &fl);
        libc::mkfifo(fifo_path.as_ptr(), 0o600);
        let fifo = libc::open(fifo_path.as_ptr(), libc::O_RDWR);
        libc::flock(fifo, libc::LOCK_SH);
        (memfd, fifo)
    };
    if let Err(why) = checks(memfd, fifo) {
        std::fs::write(&result, format!("FAIL: setup: {why}\n")).unwrap();
        return;
    }
    std::fs::write(&result, "READY\n").unwrap();
    // SAFETY: sigwait on a zeroed, filled set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let mut sig = 0;
        while libc::sigwait(&set, &mut sig) != 0 || sig != libc::SIGUSR1 {}
    }
    let text = match checks(memfd, fifo) {
        Ok(()) => "PASS\n".to_string(),
        Err(why) => format!("FAIL: {why}\n"),
    };
    std::fs::write(&result, text).unwrap();
}
