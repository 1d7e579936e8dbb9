//! Shared helpers for the test workloads. Workloads are test code: they may use `unsafe` to set
//! up exotic process state (registers, signal handlers), each block with a `// SAFETY:` note.

use std::io::Write;

/// Prints one line on stdout and flushes it: tests read these lines through a pipe.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The calling thread's id.
pub fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// Blocks until stdin has a line (or EOF); returns it without the newline.
pub fn read_stdin_line() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end().to_string()),
    }
}

/// A raw syscall with up to six arguments; returns the raw result (`-errno` on failure).
pub fn raw_syscall(nr: i64, args: [u64; 6]) -> i64 {
    // SAFETY: the workloads pass arguments valid for each call they make (pointers to live
    // buffers they own); the call itself is the test's subject.
    let r =
        unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) as i64 };
    if r == -1 {
        -(std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64)
    } else {
        r
    }
}

/// Asks the kernel to kill this process when the thread that started it ends, so trees of
/// workloads never outlive their test.
pub fn die_with_parent() {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
}
