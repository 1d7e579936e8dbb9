//! Self-checking inotify workload for restore tests: `nt_inotify RESULT_FILE WORK_DIR`.
//!
//! Watches WORK_DIR/d (create, delete) and WORK_DIR/d/f (modify), with a watch added and
//! removed in between so that the wds are not consecutive. Writes "READY" to RESULT_FILE and
//! waits for SIGUSR1; then checks that fdinfo shows the same watches (wd, inode, mask), that
//! creating a file and writing f deliver events with the same wds, and writes "PASS" or
//! "FAIL: why" to RESULT_FILE.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};

static GOT_USR1: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    GOT_USR1.store(true, Ordering::SeqCst);
}

fn watch(fd: i32, path: &str, mask: u32) -> i32 {
    let c = CString::new(path).unwrap();
    // SAFETY: `c` is a live NUL-terminated string.
    let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), mask) };
    assert!(wd > 0, "inotify_add_watch {path}");
    wd
}

/// (wd, mask, name) of each queued event.
fn events(fd: i32) -> Vec<(i32, u32, String)> {
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    loop {
        // SAFETY: reads into a live buffer of its own length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return out;
        }
        let mut off = 0usize;
        while off + 16 <= n as usize {
            let b = &buf[off..];
            let wd = i32::from_ne_bytes(b[0..4].try_into().unwrap());
            let mask = u32::from_ne_bytes(b[4..8].try_into().unwrap());
            let len = u32::from_ne_bytes(b[12..16].try_into().unwrap()) as usize;
            let name = String::from_utf8_lossy(&b[16..16 + len])
                .trim_end_matches('\0')
                .to_string();
            out.push((wd, mask, name));
            off += 16 + len;
        }
    }
}

fn watches(fd: i32) -> Vec<String> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
    let mut v: Vec<String> = info
        .lines()
        .filter(|l| l.starts_with("inotify wd:"))
        .map(|l| {
            // wd, ino, sdev, mask, ignored_mask: the handle may be printed differently.
            l.split_whitespace().take(6).collect::<Vec<_>>().join(" ")
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
    let dir = format!("{work}/d");
    let file = format!("{dir}/f");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&file, b"x").unwrap();
    // SAFETY: plain syscall.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    assert!(fd >= 0);
    let wd_dir = watch(fd, &dir, libc::IN_CREATE | libc::IN_DELETE);
    let gone = watch(fd, &work, libc::IN_CREATE);
    // SAFETY: plain syscall.
    unsafe { libc::inotify_rm_watch(fd, gone) };
    let wd_file = watch(fd, &file, libc::IN_MODIFY);
    events(fd);
    let before = watches(fd);
    std::fs::write(&result, "READY\n").unwrap();
    while !GOT_USR1.load(Ordering::SeqCst) {
        // SAFETY: pause has no arguments.
        unsafe { libc::pause() };
    }

    let mut errors = Vec::new();
    let after = watches(fd);
    if after != before {
        errors.push(format!("watches {after:?}, expected {before:?}"));
    }
    // SAFETY: plain syscall.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags & libc::O_NONBLOCK == 0 {
        errors.push("O_NONBLOCK lost".into());
    }
    let queued = events(fd);
    if !queued.is_empty() {
        errors.push(format!("events queued by the restore: {queued:?}"));
    }
    std::fs::write(format!("{dir}/new"), b"y").unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"z"))
        .unwrap();
    let got = events(fd);
    let want = [
        (wd_dir, libc::IN_CREATE, "new".to_string()),
        (wd_file, libc::IN_MODIFY, String::new()),
    ];
    for w in &want {
        if !got.contains(w) {
            errors.push(format!("no event {w:?} in {got:?}"));
        }
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
