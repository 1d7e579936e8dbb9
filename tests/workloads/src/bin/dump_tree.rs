//! A small process tree for dump tests: `dump_tree READY_FILE`.
//!
//! The root forks A (which moves to its own process group and forks G) and B; then it
//! writes "A B G" to READY_FILE. Everyone waits in pause().

use std::time::Duration;

fn write_atomic(path: &str, text: &str) {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn pause_forever() -> ! {
    loop {
        // SAFETY: pause has no arguments.
        unsafe { libc::pause() };
    }
}

fn fork() -> i32 {
    // SAFETY: this program is single-threaded when it forks.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    pid
}

fn main() {
    // A dump root leads its own session: criu, like CRIU, refuses one that does not without
    // --shell-job.
    let _ = nix::unistd::setsid();
    // Only stdio belongs to the test: fds inherited from whoever ran it would be dumped too.
    // SAFETY: closing descriptors this program does not use.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    let ready = std::env::args().nth(1).expect("READY_FILE");
    let g_file = format!("{ready}.g");
    let a = fork();
    if a == 0 {
        // SAFETY: plain syscall.
        unsafe { libc::setpgid(0, 0) };
        let g = fork();
        if g == 0 {
            pause_forever();
        }
        write_atomic(&g_file, &g.to_string());
        pause_forever();
    }
    let b = fork();
    if b == 0 {
        pause_forever();
    }
    let g = loop {
        if let Ok(t) = std::fs::read_to_string(&g_file) {
            break t;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    write_atomic(&ready, &format!("{a} {b} {g}\n"));
    pause_forever();
}
