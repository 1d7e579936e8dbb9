//! Self-checking fanotify workload for restore tests: `nt_fanotify RESULT_FILE WORK_DIR`.
//!
//! Makes a non-blocking notification group with an inode mark (modify) on WORK_DIR/f, an
//! ignored mask (modify) on WORK_DIR/quiet, and a mount mark (close-nowrite) on the mount of
//! WORK_DIR. Writes "READY" to RESULT_FILE and waits for SIGUSR1; then checks that fdinfo shows
//! the same marks and init flags, that writing f delivers a modify event for f, and writes
//! "PASS" or "FAIL: why" to RESULT_FILE.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};

static GOT_USR1: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    GOT_USR1.store(true, Ordering::SeqCst);
}

fn mark(fd: i32, flags: u32, mask: u64, path: &str) {
    let c = CString::new(path).unwrap();
    // SAFETY: `c` is a live NUL-terminated string.
    let r = unsafe {
        libc::fanotify_mark(
            fd,
            libc::FAN_MARK_ADD | flags,
            mask,
            libc::AT_FDCWD,
            c.as_ptr(),
        )
    };
    assert_eq!(r, 0, "fanotify_mark {path}");
}

/// Paths of the files of queued modify events (the event fds are closed).
fn modified(fd: i32) -> Vec<String> {
    let mut buf = [0u8; 8192];
    let mut out = Vec::new();
    loop {
        // SAFETY: reads into a live buffer of its own length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return out;
        }
        let mut off = 0usize;
        // struct fanotify_event_metadata: event_len u32, vers u8, reserved u8, metadata_len
        // u16, mask u64, fd i32, pid i32.
        while off + 24 <= n as usize {
            let b = &buf[off..];
            let len = u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize;
            let mask = u64::from_ne_bytes(b[8..16].try_into().unwrap());
            let efd = i32::from_ne_bytes(b[16..20].try_into().unwrap());
            if efd >= 0 {
                if mask & libc::FAN_MODIFY != 0 {
                    let p = std::fs::read_link(format!("/proc/self/fd/{efd}"))
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    out.push(p);
                }
                // SAFETY: the event's fd is ours to close.
                unsafe { libc::close(efd) };
            }
            off += len.max(24);
        }
    }
}

fn marks(fd: i32) -> Vec<String> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
    let mut v: Vec<String> = info
        .lines()
        .filter(|l| l.starts_with("fanotify "))
        .map(|l| {
            l.split_whitespace()
                .filter(|w| !w.starts_with("f_handle") && !w.starts_with("fhandle"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    v.sort();
    v
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
    let file = format!("{work}/f");
    let quiet = format!("{work}/quiet");
    std::fs::write(&file, b"x").unwrap();
    std::fs::write(&quiet, b"x").unwrap();
    // SAFETY: plain syscall.
    let fd = unsafe {
        libc::fanotify_init(
            libc::FAN_CLASS_NOTIF | libc::FAN_NONBLOCK | libc::FAN_CLOEXEC,
            (libc::O_RDONLY | libc::O_LARGEFILE) as u32,
        )
    };
    if fd < 0 {
        std::fs::write(&result, "FAIL: fanotify_init\n").unwrap();
        return;
    }
    mark(fd, 0, libc::FAN_MODIFY, &file);
    mark(fd, libc::FAN_MARK_IGNORED_MASK, libc::FAN_MODIFY, &quiet);
    mark(fd, libc::FAN_MARK_MOUNT, libc::FAN_CLOSE_NOWRITE, &work);
    modified(fd);
    let before = marks(fd);
    std::fs::write(&result, "READY\n").unwrap();
    while !GOT_USR1.load(Ordering::SeqCst) {
        // SAFETY: pause has no arguments.
        unsafe { libc::pause() };
    }

    let mut errors = Vec::new();
    let after = marks(fd);
    if after != before {
        errors.push(format!("marks {after:?}, expected {before:?}"));
    }
    modified(fd);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"z"))
        .unwrap();
    let got = modified(fd);
    if !got.contains(&file) {
        errors.push(format!("no modify event for {file} in {got:?}"));
    }
    let text = if errors.is_empty() {
        "PASS\n".to_string()
    } else {
        format!("FAIL: {}\n", errors.join("; "))
    };
    std::fs::write(&result, text).unwrap();
    loop {
        // SAFETY: pause has no arguments.
        unsafe { libc::pause() };
    }
}
