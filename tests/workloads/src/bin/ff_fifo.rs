//! A self-checking workload for fifos, pipe sizes and file owners: `ff_fifo RESULT_FILE WORK_DIR`.
//!
//! It becomes a session leader and opens WORK_DIR/fifo read-write, read-only (non-blocking,
//! O_ASYNC, owned by itself with SIGUSR2) and write-only; both it and a child write into the
//! fifo. It makes a pipe of 1 MiB holding 300000 bytes, owned by itself, and a regular file
//! owned by itself with SIGRTMIN+1. It writes "READY" to RESULT_FILE and waits for SIGUSR1;
//! then it checks every fd (modes, owners, signals, sizes, bytes in order, a SIGUSR2 when the
//! fifo gets data), has the child check its copies, and writes "PASS" or "FAIL: reason".

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

static SIGIO_COUNT: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_usr2(_: libc::c_int) {
    SIGIO_COUNT.fetch_add(1, Ordering::SeqCst);
}

/// fcntl commands libc does not name.
const F_SETSIG: i32 = 10;
const F_GETSIG: i32 = 11;

const BIG_PIPE: i32 = 1 << 20;
const BIG_LEN: usize = 300_000;

fn pattern(i: usize) -> u8 {
    (i * 13 % 251) as u8
}

fn fail(result: &str, why: String) -> ! {
    let _ = std::fs::write(result, format!("FAIL: {why}\n"));
    std::process::exit(1);
}

fn open(path: &str, flags: i32) -> OwnedFd {
    let c = std::ffi::CString::new(path).unwrap();
    // SAFETY: a NUL-terminated path; the result is checked and owned once.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o600) };
    assert!(fd >= 0, "open {path}: {}", std::io::Error::last_os_error());
    // SAFETY: a new fd nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// fcntl with an integer argument; -1 on failure.
fn fcntl(fd: RawFd, cmd: i32, arg: libc::c_long) -> i32 {
    // SAFETY: the commands used here take an integer argument or none.
    unsafe { libc::fcntl(fd, cmd, arg) }
}

fn write_all(fd: RawFd, bytes: &[u8]) {
    let mut done = 0;
    while done < bytes.len() {
        // SAFETY: writes from a live slice.
        let n = unsafe { libc::write(fd, bytes[done..].as_ptr().cast(), bytes.len() - done) };
        assert!(n > 0, "write: {}", std::io::Error::last_os_error());
        done += n as usize;
    }
}

/// Everything a non-blocking fd has now.
fn read_available(fd: RawFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        // SAFETY: reads into a live buffer of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}

/// Blocks SIGUSR1 and waits for it (sigwait survives a restore by being restarted).
fn wait_usr1() {
    // SAFETY: plain signal-mask calls on a zeroed set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let mut sig = 0;
        while libc::sigwait(&set, &mut sig) != 0 || sig != libc::SIGUSR1 {}
    }
}

fn check_owner(fd: RawFd, what: &str, pid: i32, sig: i32) -> Result<(), String> {
    let owner = fcntl(fd, libc::F_GETOWN, 0);
    let signum = fcntl(fd, F_GETSIG, 0);
    if (owner, signum) != (pid, sig) {
        return Err(format!(
            "{what}: owner {owner} signal {signum}, expected {pid} and {sig}"
        ));
    }
    Ok(())
}

fn check_mode(fd: RawFd, what: &str, mode: i32, extra: i32) -> Result<(), String> {
    let fl = fcntl(fd, libc::F_GETFL, 0);
    if fl & libc::O_ACCMODE != mode || fl & extra != extra {
        return Err(format!(
            "{what}: flags {fl:o}, expected mode {mode:o} with {extra:o}"
        ));
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = args.get(1).expect("RESULT_FILE").clone();
    let work = args.get(2).expect("WORK_DIR").clone();
    // SAFETY: plain syscalls on our own process.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        libc::setsid();
    }
    let me = std::process::id() as i32;
    // SAFETY: a handler that only touches an atomic.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr2 as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
    }

    // The fifo, three ways.
    let path = format!("{work}/fifo");
    let c = std::ffi::CString::new(path.clone()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let rw = open(&path, libc::O_RDWR);
    let ro = open(&path, libc::O_RDONLY | libc::O_NONBLOCK);
    let wo = open(&path, libc::O_WRONLY);
    write_all(wo.as_raw_fd(), b"parent;");
    assert_eq!(fcntl(ro.as_raw_fd(), libc::F_SETOWN, me.into()), 0);
    assert_eq!(fcntl(ro.as_raw_fd(), F_SETSIG, libc::SIGUSR2.into()), 0);
    let fl = fcntl(ro.as_raw_fd(), libc::F_GETFL, 0);
    assert_eq!(
        fcntl(ro.as_raw_fd(), libc::F_SETFL, (fl | libc::O_ASYNC).into()),
        0
    );

    // A big pipe, nearly a third full, owned by us.
    let mut ends = [0; 2];
    // SAFETY: pipe2 fills two ints.
    let rc = unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0);
    // SAFETY: fresh fds that nothing else owns.
    let (pr, pw) = unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
    assert!(fcntl(pw.as_raw_fd(), libc::F_SETPIPE_SZ, BIG_PIPE.into()) >= BIG_PIPE);
    let big: Vec<u8> = (0..BIG_LEN).map(pattern).collect();
    write_all(pw.as_raw_fd(), &big);
    assert_eq!(fcntl(pr.as_raw_fd(), libc::F_SETOWN, me.into()), 0);
    assert_eq!(fcntl(pr.as_raw_fd(), F_SETSIG, libc::SIGUSR2.into()), 0);
    let fl = fcntl(pr.as_raw_fd(), libc::F_GETFL, 0);
    fcntl(
        pr.as_raw_fd(),
        libc::F_SETFL,
        (fl | libc::O_NONBLOCK).into(),
    );

    // A regular file owned by us, with a real-time signal.
    let file = open(&format!("{work}/owned"), libc::O_RDWR | libc::O_CREAT);
    let rt1 = libc::SIGRTMIN() + 1;
    assert_eq!(fcntl(file.as_raw_fd(), libc::F_SETOWN, me.into()), 0);
    assert_eq!(fcntl(file.as_raw_fd(), F_SETSIG, rt1.into()), 0);

    // The child shares every description; it writes after us, then waits to be told to check.
    let mut sync = [0; 2];
    // SAFETY: pipe2 fills two ints.
    let rc = unsafe { libc::pipe2(sync.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0);
    // SAFETY: this process is single-threaded; the child only makes plain calls and exits.
    let child = unsafe { libc::fork() };
    if child == 0 {
        write_all(wo.as_raw_fd(), b"child;");
        write_all(sync[1], b"!");
        wait_usr1();
        let ok = check_mode(wo.as_raw_fd(), "child: write-only fifo", libc::O_WRONLY, 0).and(
            check_owner(ro.as_raw_fd(), "child: read-only fifo", me, libc::SIGUSR2),
        );
        if ok.is_err() {
            // SAFETY: leaving the child at once.
            unsafe { libc::_exit(1) };
        }
        write_all(wo.as_raw_fd(), b"child-after;");
        // SAFETY: leaving the child at once.
        unsafe { libc::_exit(0) };
    }
    let mut one = [0u8; 1];
    // SAFETY: reads one byte into a live buffer.
    let rc = unsafe { libc::read(sync[0], one.as_mut_ptr().cast(), 1) };
    assert_eq!(rc, 1);

    std::fs::write(&result, "READY\n").unwrap();
    wait_usr1();

    let verdict = (|| -> Result<(), String> {
        check_mode(rw.as_raw_fd(), "read-write fifo", libc::O_RDWR, 0)?;
        check_mode(
            ro.as_raw_fd(),
            "read-only fifo",
            libc::O_RDONLY,
            libc::O_NONBLOCK | libc::O_ASYNC,
        )?;
        check_mode(wo.as_raw_fd(), "write-only fifo", libc::O_WRONLY, 0)?;
        check_owner(ro.as_raw_fd(), "read-only fifo", me, libc::SIGUSR2)?;
        check_owner(rw.as_raw_fd(), "read-write fifo", 0, 0)?;
        check_owner(pr.as_raw_fd(), "big pipe", me, libc::SIGUSR2)?;
        check_owner(file.as_raw_fd(), "regular file", me, rt1)?;
        let got = read_available(ro.as_raw_fd());
        if got != b"parent;child;" {
            return Err(format!("fifo held {:?}", String::from_utf8_lossy(&got)));
        }
        // New bytes in the fifo: its owner gets SIGUSR2.
        let before = SIGIO_COUNT.load(Ordering::SeqCst);
        write_all(rw.as_raw_fd(), b"x");
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while SIGIO_COUNT.load(Ordering::SeqCst) == before && std::time::Instant::now() < end {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if SIGIO_COUNT.load(Ordering::SeqCst) == before {
            return Err("no SIGUSR2 when the fifo got data".into());
        }
        if read_available(ro.as_raw_fd()) != b"x" {
            return Err("fifo lost a byte written after restore".into());
        }
        let size = fcntl(pr.as_raw_fd(), libc::F_GETPIPE_SZ, 0);
        if size != BIG_PIPE {
            return Err(format!("big pipe size {size}, expected {BIG_PIPE}"));
        }
        let got = read_available(pr.as_raw_fd());
        if got != big {
            let at = got.iter().zip(&big).position(|(a, b)| a != b);
            return Err(format!(
                "big pipe held {} bytes (first difference at {at:?}), expected {BIG_LEN}",
                got.len()
            ));
        }
        // The child's copies are the same descriptions.
        // SAFETY: signalling and reaping our own child.
        let status = unsafe {
            libc::kill(child, libc::SIGUSR1);
            let mut status = 0;
            libc::waitpid(child, &mut status, 0);
            status
        };
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            return Err(format!("the child's checks failed (status {status:#x})"));
        }
        let got = read_available(ro.as_raw_fd());
        if got != b"child-after;" {
            return Err(format!(
                "child wrote {:?} into the fifo",
                String::from_utf8_lossy(&got)
            ));
        }
        Ok(())
    })();
    match verdict {
        Ok(()) => {
            let mut f = std::fs::File::create(&result).unwrap();
            let _ = f.write_all(b"PASS\n");
        }
        Err(why) => fail(&result, why),
    }
}
