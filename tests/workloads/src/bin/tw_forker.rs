//! A tree that never sits still: each member keeps starting short-lived threads and forking
//! short-lived children, and the root starts `depth` levels of long-lived members (fork+exec of
//! itself). Prints "READY" once its long-lived children are up.
//!
//! Usage: tw_forker DEPTH

use std::process::{Command, Stdio};
use std::time::Duration;

fn main() {
    let depth: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2);
    criu_test_workloads::die_with_parent();
    let mut kids = Vec::new();
    if depth > 0 {
        for _ in 0..2 {
            let mut child = Command::new(std::env::current_exe().expect("own path"))
                .arg((depth - 1).to_string())
                .stdout(Stdio::piped())
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn member");
            let mut out = std::io::BufReader::new(child.stdout.take().expect("piped"));
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut out, &mut line);
            kids.push((child, out));
        }
    }
    criu_test_workloads::say("READY");
    loop {
        // Short-lived threads.
        for _ in 0..2 {
            std::thread::spawn(|| std::thread::sleep(Duration::from_millis(3)));
        }
        // A short-lived child that only makes raw calls (this process has threads).
        // SAFETY: the child runs nanosleep and _exit only, both async-signal-safe.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 2_000_000,
            };
            // SAFETY: raw calls on a valid timespec, then exit without running any Rust code.
            unsafe {
                libc::nanosleep(&ts, std::ptr::null_mut());
                libc::_exit(0);
            }
        }
        // Reap the short-lived children (the long-lived ones never exit).
        loop {
            // SAFETY: waitpid with a null status pointer.
            let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
            if r <= 0 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
