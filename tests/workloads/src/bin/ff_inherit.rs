//! A workload for `--inherit-fd`: `ff_inherit RESULT_FILE LOG_FILE`. Its stdin is a pipe the
//! test holds. It opens LOG_FILE for appending, writes "READY" to RESULT_FILE and waits for
//! SIGUSR1; then it reads one line from stdin, appends "got: LINE" to its log fd and writes
//! "PASS" (or "FAIL: reason") to RESULT_FILE. Restored with its stdin and log inherited from
//! criu, the line comes from the new pipe and lands in the new file.

use std::io::{BufRead, Write};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = args.get(1).expect("RESULT_FILE").clone();
    let log_path = args.get(2).expect("LOG_FILE").clone();
    // SAFETY: plain syscalls on our own process.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        libc::setsid();
    }
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&log_path)
        .expect("open LOG_FILE");
    log.write_all(b"started\n").unwrap();
    // SAFETY: plain signal-mask calls on a zeroed set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::fs::write(&result, "READY\n").unwrap();
        let mut sig = 0;
        while libc::sigwait(&set, &mut sig) != 0 || sig != libc::SIGUSR1 {}
    }
    let mut line = String::new();
    let verdict = match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) => Err("stdin is at end of file".to_string()),
        Ok(_) => log
            .write_all(format!("got: {}\n", line.trim_end()).as_bytes())
            .map_err(|e| format!("write log: {e}")),
        Err(e) => Err(format!("read stdin: {e}")),
    };
    let text = match verdict {
        Ok(()) => "PASS\n".to_string(),
        Err(why) => format!("FAIL: {why}\n"),
    };
    std::fs::write(&result, text).unwrap();
}
