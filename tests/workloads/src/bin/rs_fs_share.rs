//! A parent and a child that share one fd table (clone with CLONE_FILES), the child inside a
//! chroot with a cwd below it and two adjacent grows-down areas: `rs_fs_share RESULT_DIR`.
//! RESULT_DIR/jail/sub must exist. Each writes "READY" to RESULT_DIR/<role> and waits for
//! SIGUSR1. Then the parent opens a file at fd 100, and the child checks its root, cwd, the
//! grows-down areas' bytes, and that fd 100 shows up in its table; each writes "PASS" or
//! "FAIL: why" (the child through a directory fd opened before its chroot).

use std::ffi::CString;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static GOT_USR1: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    GOT_USR1.store(true, Ordering::SeqCst);
}

const PAGE: usize = 4096;
const LATE_FD: RawFd = 100;
const LOW_PAGES: usize = 8;
const HIGH_PAGES: usize = 2;

fn wait_usr1() {
    while !GOT_USR1.load(Ordering::SeqCst) {
        nix::unistd::pause();
    }
}

fn write_at(dir: RawFd, name: &str, text: &str) {
    let name = CString::new(name).unwrap();
    // SAFETY: a NUL-terminated name; the fd is checked below.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        )
    };
    assert!(fd >= 0, "openat result file");
    // SAFETY: writes from a live buffer of the given length into our own fd.
    let n = unsafe { libc::write(fd, text.as_ptr().cast(), text.len()) };
    assert_eq!(n, text.len() as isize, "write result");
    // SAFETY: closes the fd opened above.
    unsafe { libc::close(fd) };
}

/// Two grows-down areas, the higher one right above the lower one, with a marker byte in the
/// first page of each. Returns their starts.
fn map_grows_down() -> (usize, usize) {
    let len = (LOW_PAGES + HIGH_PAGES + 64) * PAGE;
    // SAFETY: reserves address space at a kernel-chosen address, released at once.
    let hole = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(hole, libc::MAP_FAILED, "mmap hole");
    // SAFETY: the range was just mapped by us and nothing else uses it.
    unsafe { libc::munmap(hole, len) };
    let low = hole as usize + 32 * PAGE;
    let high = low + LOW_PAGES * PAGE;
    for (at, pages, byte) in [(low, LOW_PAGES, 0x5a_u8), (high, HIGH_PAGES, 0xa5)] {
        // SAFETY: MAP_FIXED inside the hole released above, which this process does not use.
        let got = unsafe {
            libc::mmap(
                at as *mut libc::c_void,
                pages * PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_GROWSDOWN | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        assert_eq!(got as usize, at, "mmap grows-down");
        // SAFETY: the first page of the area mapped just above, writable.
        unsafe { std::ptr::write_bytes(at as *mut u8, byte, PAGE) };
    }
    (low, high)
}

fn check_child(low: usize, high: usize) -> Result<(), String> {
    if std::fs::metadata("/sub/marker").is_err() {
        return Err("root is not the jail: /sub/marker is missing".into());
    }
    let cwd = std::env::current_dir().map_err(|e| format!("getcwd: {e}"))?;
    if cwd != std::path::Path::new("/sub") {
        return Err(format!("cwd is {}, expected /sub", cwd.display()));
    }
    for (at, byte) in [(low, 0x5a_u8), (high, 0xa5)] {
        // SAFETY: the first page of an area this process mapped and still has.
        let page = unsafe { std::slice::from_raw_parts(at as *const u8, PAGE) };
        if let Some(i) = page.iter().position(|&b| b != byte) {
            return Err(format!(
                "grows-down area {at:#x}: byte {i} is {:#x}, expected {byte:#x}",
                page[i]
            ));
        }
    }
    // The parent opens fd 100 after restore: it shows up here only if the table is shared.
    let deadline = Instant::now() + Duration::from_secs(5);
    // SAFETY: F_GETFD only reads the fd table.
    while unsafe { libc::fcntl(LATE_FD, libc::F_GETFD) } < 0 {
        if Instant::now() > deadline {
            return Err(format!(
                "fd {LATE_FD} opened by the parent never appeared: fd table not shared"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: rs_fs_share RESULT_DIR");
    nix::unistd::setsid().expect("setsid");
    let handler = nix::sys::signal::SigHandler::Handler(on_usr1);
    // SAFETY: the handler only stores to an atomic.
    unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGUSR1, handler) }
        .expect("signal");
    let cdir = CString::new(dir.clone()).unwrap();
    // SAFETY: a NUL-terminated path; checked below.
    let dirfd = unsafe { libc::open(cdir.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY) };
    assert!(dirfd >= 0, "open result dir");
    // SAFETY: clone without a new stack works like fork; CLONE_FILES shares the fd table.
    // The program is single-threaded.
    let child = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::CLONE_FILES | libc::SIGCHLD,
            0,
            0,
            0,
            0,
        )
    };
    assert!(child >= 0, "clone");
    if child == 0 {
        let (low, high) = map_grows_down();
        nix::unistd::chroot(format!("{dir}/jail").as_str()).expect("chroot");
        nix::unistd::chdir("/sub").expect("chdir");
        write_at(dirfd, "child", "READY\n");
        wait_usr1();
        let verdict = match check_child(low, high) {
            Ok(()) => "PASS\n".to_string(),
            Err(why) => format!("FAIL: {why}\n"),
        };
        write_at(dirfd, "child", &verdict);
        return;
    }
    write_at(dirfd, "parent", "READY\n");
    wait_usr1();
    let f = std::fs::File::open("/proc/self/status").expect("open a file");
    // SAFETY: dup2 of our own open fd to a free number; the result is checked.
    let got = unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&f), LATE_FD) };
    let verdict = if got == LATE_FD {
        "PASS\n".to_string()
    } else {
        format!(
            "FAIL: dup2 to {LATE_FD}: {}\n",
            std::io::Error::last_os_error()
        )
    };
    write_at(dirfd, "parent", &verdict);
    // Keep fd 100 open until the child has looked.
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child as i32), None);
}
