//! A job run from a shell, for shell-job tests: `sj_job READY_FILE`.
//!
//! Its stdio must be a terminal. It writes "PID SID PGID" to READY_FILE, then reads lines
//! from stdin: on "ping" it answers on stdout "pong PID SID PGID TTY" with its session,
//! process group and the terminal behind its fd 0 as they are now (after a restore, the
//! restored ones); on "exit" or end of input it exits.

use std::io::{BufRead, Write};

fn main() {
    let ready = std::env::args().nth(1).expect("READY_FILE");
    for fd in 0..3 {
        // SAFETY: isatty only looks at the fd number.
        if unsafe { libc::isatty(fd) } != 1 {
            eprintln!("sj_job: fd {fd} is not a terminal");
            std::process::exit(2);
        }
    }
    let pid = std::process::id();
    let ids = || {
        format!(
            "{} {}",
            nix::unistd::getsid(None).expect("getsid"),
            nix::unistd::getpgrp()
        )
    };
    let tmp = format!("{ready}.tmp");
    std::fs::write(&tmp, format!("{pid} {}", ids())).expect("write ready file");
    std::fs::rename(&tmp, &ready).expect("rename ready file");

    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "ping" => {
                let tty = std::fs::read_link("/proc/self/fd/0")
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "pong {pid} {} {tty}", ids());
                let _ = out.flush();
            }
            "exit" => break,
            _ => {}
        }
    }
}
