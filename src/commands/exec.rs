//! `criu exec -t PID SYSCALL ARGS...`: runs one system call inside process PID and prints its
//! return value (`-errno` when the call fails). Arguments starting with `&` are copied into
//! the task and passed as pointers; the others are numbers as strtol(3) reads them.

use criu_tracee::exec::{execute, parse};
use std::time::Duration;

/// How long to wait for the task's threads to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `criu exec -t pid args...`; `args` is the syscall name then its arguments. Returns the
/// exit code: 0 when the syscall ran (whatever it returned), 1 otherwise.
pub fn run(pid: i32, args: &[String]) -> i32 {
    let call = match parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error: exec: {e}");
            return 1;
        }
    };
    match execute(pid, &call, STOP_TIMEOUT) {
        Ok(ret) => {
            println!("{ret}");
            0
        }
        Err(e) => {
            eprintln!("Error: exec {}: {e}", call.name);
            1
        }
    }
}
