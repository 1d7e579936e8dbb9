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

/// The self-checking workloads' protocol (as zdtm's): "READY" in the result file, then wait for
/// SIGUSR1, check, and write "PASS" or "FAIL: reason".
pub mod verdict {
    use std::sync::atomic::{AtomicBool, Ordering};

    static GOT_USR1: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_usr1(_: libc::c_int) {
        GOT_USR1.store(true, Ordering::SeqCst);
    }

    /// Catches SIGUSR1, the signal to check.
    pub fn catch_usr1() {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t) };
    }

    /// Writes "READY" and waits for SIGUSR1.
    pub fn ready_then_wait(result: &str) {
        std::fs::write(result, "READY\n").expect("write READY");
        while !GOT_USR1.load(Ordering::SeqCst) {
            // SAFETY: waiting for a signal.
            unsafe { libc::pause() };
        }
    }

    /// The result of one check: Err says what is wrong.
    pub type Check = Result<(), String>;

    /// Ok when `ok`, else Err with `what`.
    pub fn ensure(ok: bool, what: impl FnOnce() -> String) -> Check {
        if ok {
            Ok(())
        } else {
            Err(what())
        }
    }

    /// Fails with `what` unless `ok`.
    pub fn check(result: &str, ok: bool, what: String) {
        if !ok {
            fail(result, what);
        }
    }

    /// Writes "FAIL: why" and exits.
    pub fn fail(result: &str, why: String) -> ! {
        let _ = std::fs::write(result, format!("FAIL: {why}\n"));
        std::process::exit(1);
    }
}
