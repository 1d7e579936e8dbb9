//! Robust release: a tracer (tracee_hold, standing in for criu) is killed or panics half-way,
//! with the target seized, with an injection set up, and with an injected syscall running;
//! killed with SIGKILL too, where nothing of the holder can clean up.
//! The target must come out untraced, with the same memory map, and its blocked read must
//! still complete normally.

#[path = "workloads/src/harness.rs"]
mod harness;

use harness::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn kill_holder_midway(mode: &str, signal: Option<Signal>) {
    require_root();
    let mut target = Workload::start("tw_blocker", &["read"]);
    target.expect("READY", LONG);
    wait_in_syscall(target.pid, target.pid, libc::SYS_read);
    let maps_before = maps(target.pid);

    let mut holder = Workload::start("tracee_hold", &[mode, &target.pid.to_string()]);
    holder.expect("HOLDING", LONG);
    let by = tracer(target.pid, target.pid);
    assert!(
        threads(holder.pid).contains(&by),
        "{mode}: target traced by {by}, not by the holder"
    );
    if mode.ends_with("running") || mode.ends_with("thread") || mode.ends_with("brief") {
        // The injected nanosleep is running in the target.
        wait_in_syscall(target.pid, target.pid, libc::SYS_nanosleep);
    } else {
        assert_eq!(state(target.pid, target.pid), Some('t'));
    }
    if let Some(sig) = signal {
        kill(Pid::from_raw(holder.pid), sig).unwrap();
    }
    let code = holder.wait_exit(LONG);
    match signal {
        Some(sig) => assert_eq!(
            code,
            Exit::Signal(sig as i32),
            "{mode}: the holder must die of the signal"
        ),
        None => assert_eq!(
            code,
            Exit::Code(101),
            "{mode}: the holder must end with a panic"
        ),
    }
    assert!(
        wait_until(LONG, || tracer(target.pid, target.pid) == 0),
        "{mode}: target still traced"
    );
    // After SIGKILL, an injected call still running ends before the task lands back.
    assert!(
        wait_until(LONG, || maps(target.pid) == maps_before),
        "{mode}: target's memory map changed"
    );
    // Blocked in its read again (restarted), and the read completes normally.
    wait_in_syscall(target.pid, target.pid, libc::SYS_read);
    target.send("hello\n");
    assert_eq!(target.expect("READ", LONG), vec!["6", "hello"], "{mode}");
    assert_eq!(target.wait_exit(LONG), Exit::Code(0));
}

#[test]
fn sigterm_with_tree_seized() {
    kill_holder_midway("seize", Some(Signal::SIGTERM));
}

#[test]
fn sigint_with_injection_set_up() {
    kill_holder_midway("inject-idle", Some(Signal::SIGINT));
}

#[test]
fn sigterm_while_injected_syscall_runs() {
    kill_holder_midway("inject-running", Some(Signal::SIGTERM));
}

#[test]
fn sigterm_while_injected_syscall_runs_on_another_thread() {
    kill_holder_midway("inject-thread", Some(Signal::SIGTERM));
}

#[test]
fn panic_with_injection_set_up() {
    kill_holder_midway("panic", None);
}

// SIGKILL: nothing in the holder runs. The task must land back on its own state by itself.

#[test]
fn sigkill_with_injection_set_up() {
    kill_holder_midway("inject-idle", Some(Signal::SIGKILL));
}

#[test]
fn sigkill_while_injected_syscall_runs() {
    kill_holder_midway("inject-brief", Some(Signal::SIGKILL));
}

#[test]
fn sigkill_while_injected_syscall_runs_on_another_thread() {
    kill_holder_midway("inject-brief-thread", Some(Signal::SIGKILL));
}

/// The landing puts back every register, the signal mask and the vector state: tw_regs holds
/// known values in GP and YMM registers in a thread looping on pause().
#[test]
fn sigkill_during_injection_keeps_registers_and_vector_state() {
    use criu_tracee::SeizedProcess;
    require_root();
    let w = Workload::start("tw_regs", &[]);
    let tid: i32 = w.expect("READY", LONG)[0].parse().unwrap();
    wait_in_syscall(w.pid, tid, libc::SYS_pause);
    let snapshot = || {
        let p = SeizedProcess::seize(w.pid, LONG).unwrap();
        let t = p.thread(tid).unwrap();
        let state = (t.regs().unwrap(), t.xsave().unwrap(), t.sigmask().unwrap());
        p.release().unwrap();
        state
    };
    let (regs, xsave, sigmask) = snapshot();
    let mut holder = Workload::start(
        "tracee_hold",
        &["inject-idle", &w.pid.to_string(), &tid.to_string()],
    );
    holder.expect("HOLDING", LONG);
    kill(Pid::from_raw(holder.pid), Signal::SIGKILL).unwrap();
    assert_eq!(holder.wait_exit(LONG), Exit::Signal(libc::SIGKILL));
    assert!(wait_until(LONG, || tracer(w.pid, tid) == 0), "still traced");
    // Back in its pause(), restarted: the same state as before, to the byte.
    wait_in_syscall(w.pid, tid, libc::SYS_pause);
    let (regs_after, xsave_after, sigmask_after) = snapshot();
    assert_eq!(regs_after, regs, "{regs_after:?} != {regs:?}");
    assert_eq!(sigmask_after, sigmask);
    for n in 0..16 {
        assert_eq!(xsave_after.xmm(n), xsave.xmm(n), "xmm{n}");
        assert_eq!(
            xsave_after.ymm_high(n),
            xsave.ymm_high(n),
            "ymm{n} high half"
        );
    }
}
