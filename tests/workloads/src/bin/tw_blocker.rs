//! A process whose main thread blocks in one syscall, then reports how it ended.
//!
//! * `tw_blocker read`: read(0) of up to 64 bytes; prints "READ <ret> <text>".
//! * `tw_blocker nanosleep MS`: nanosleep(MS); prints "SLEPT <ret> <elapsed ms>".
//! * `tw_blocker futex`: futex_wait on a word a helper thread sets and wakes when a line comes
//!   on stdin; prints "WOKE <ret> <word>".
//!
//! Prints "READY <pid>" just before blocking (the test waits for the syscall in /proc).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

static WORD: AtomicU32 = AtomicU32::new(0);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pid = std::process::id();
    match args.get(1).map(String::as_str) {
        Some("read") => {
            let mut buf = [0u8; 64];
            criu_test_workloads::say(&format!("READY {pid}"));
            let ret = criu_test_workloads::raw_syscall(
                libc::SYS_read,
                [0, buf.as_mut_ptr() as u64, 64, 0, 0, 0],
            );
            let n = ret.max(0) as usize;
            criu_test_workloads::say(&format!(
                "READ {ret} {}",
                String::from_utf8_lossy(&buf[..n]).trim_end()
            ));
        }
        Some("nanosleep") => {
            let ms: i64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
            let ts = libc::timespec {
                tv_sec: ms / 1000,
                tv_nsec: (ms % 1000) * 1_000_000,
            };
            criu_test_workloads::say(&format!("READY {pid}"));
            let start = Instant::now();
            let ret = criu_test_workloads::raw_syscall(
                libc::SYS_nanosleep,
                [&ts as *const _ as u64, 0, 0, 0, 0, 0],
            );
            criu_test_workloads::say(&format!("SLEPT {ret} {}", start.elapsed().as_millis()));
        }
        Some("futex") => {
            std::thread::spawn(|| {
                let _ = criu_test_workloads::read_stdin_line();
                WORD.store(1, Ordering::SeqCst);
                criu_test_workloads::raw_syscall(
                    libc::SYS_futex,
                    [WORD.as_ptr() as u64, libc::FUTEX_WAKE as u64, 1, 0, 0, 0],
                );
            });
            criu_test_workloads::say(&format!("READY {pid}"));
            let ret = criu_test_workloads::raw_syscall(
                libc::SYS_futex,
                [WORD.as_ptr() as u64, libc::FUTEX_WAIT as u64, 0, 0, 0, 0],
            );
            criu_test_workloads::say(&format!("WOKE {ret} {}", WORD.load(Ordering::SeqCst)));
        }
        _ => {
            eprintln!("usage: tw_blocker read | nanosleep MS | futex");
            std::process::exit(2);
        }
    }
}
