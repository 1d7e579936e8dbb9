//! Creating a task or thread with an exact pid without clone3's `set_tid`: criu writes
//! `pid - 1` to /proc/sys/kernel/ns_last_pid (held locked, see criu_sys::clone) and the parent
//! clones without `set_tid`. Another program of the machine that forks in between takes the
//! pid (criu's own worker threads too): the child we got instead is done away with and the
//! clone tried again.

use std::time::{Duration, Instant};

use criu_sys::clone::claim_next_pid;
use criu_tracee::remote::DATA_LEN;
use criu_tracee::{Injector, Tracee};

use super::clone::CLONE_ARGS_LEN;
use super::rebuild::{task_err, RebuildError};

/// How often a clone is tried when others keep taking the pid.
const TRIES: usize = 20;

/// Injects clone3 with the clone_args at `args` (written by the caller: `flags`, no
/// `set_tid`) until the new task is `tid`.
pub fn clone_via_ns_last_pid(
    inj: &mut Injector,
    args: u64,
    tid: i32,
    flags: u64,
) -> Result<(), RebuildError> {
    for _ in 0..TRIES {
        let got = {
            let _next = claim_next_pid(tid).map_err(|e| {
                task_err(
                    tid,
                    format!("cannot claim the pid through ns_last_pid: {e}"),
                )
            })?;
            inj.clone_child(args, CLONE_ARGS_LEN)?
        };
        if got == i64::from(tid) {
            return Ok(());
        }
        if got < 0 {
            return Err(task_err(tid, format!("clone3: errno {}", -got)));
        }
        discard(inj, got as i32, flags)?;
        // criu's own short-lived worker threads (memory fill) may take it too: they end soon.
        let end = Instant::now() + Duration::from_secs(5);
        while held_by_criu(tid) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
        if std::path::Path::new(&format!("/proc/{tid}")).exists() {
            return Err(task_err(
                tid,
                format!("pid {tid} is in use by {}", holder(tid)),
            ));
        }
        tracing::debug!("pid {tid}: another program took it, got {got}; trying again");
    }
    Err(task_err(
        tid,
        format!("other programs took the pid {TRIES} times in a row"),
    ))
}

/// Who holds `tid`: its name, thread group and parent.
fn holder(tid: i32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map_or("?", str::trim)
            .to_string()
    };
    format!(
        "{} (thread group {}, parent {})",
        field("Name:"),
        field("Tgid:"),
        field("PPid:")
    )
}

/// Whether `tid` is a thread of criu itself.
fn held_by_criu(tid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse::<u32>().ok())
        == Some(std::process::id())
}

/// Ends a child or thread that got the wrong pid: a child is killed and reaped by its parent
/// (the injected task); a thread, which a signal cannot kill alone, exits by injection.
fn discard(inj: &mut Injector, wrong: i32, flags: u64) -> Result<(), RebuildError> {
    let parent = inj.tracee().tid();
    if flags & libc::CLONE_THREAD as u64 == 0 {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(wrong),
            nix::sys::signal::Signal::SIGKILL,
        );
        let r = inj.syscall(libc::SYS_wait4, &[wrong as u64, 0, libc::__WALL as u64, 0])?;
        if r != i64::from(wrong) {
            return Err(task_err(
                parent,
                format!("cannot reap stray child {wrong}: {r}"),
            ));
        }
        return Ok(());
    }
    let tgid = inj.tracee().tgid();
    let mut thread = Tracee::seize_stopped(tgid, wrong, Duration::from_secs(10))?;
    let mut stray = Injector::for_restore(&mut thread, DATA_LEN)?;
    // Never returns: the thread ends inside the call.
    let _ = stray.syscall(libc::SYS_exit, &[0]);
    stray.finish_exited();
    // Collect the exit we, its tracer, are told about.
    let _ = nix::sys::wait::waitpid(
        nix::unistd::Pid::from_raw(wrong),
        Some(nix::sys::wait::WaitPidFlag::__WALL),
    );
    Ok(())
}
