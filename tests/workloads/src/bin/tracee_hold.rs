//! Stands in for a criu that gets killed half-way: it seizes a process (or tree), gets as far
//! as MODE says, prints "HOLDING", then waits to be killed (SIGTERM/SIGINT) or panics.
//!
//! Usage: tracee_hold MODE PID [TID] (injections go into thread TID, the leader by default)
//! * `seize`: the whole tree seized and stopped.
//! * `inject-idle`: an injector set up on the leader (scratch area mapped, sigmask changed).
//! * `inject-running`: the leader runs an injected nanosleep(1000 s) when the signal comes.
//! * `inject-thread`: like inject-running, but on a tracer thread other than the main one.
//! * `inject-brief`, `inject-brief-thread`: the same with a nanosleep of 2 s (a holder killed
//!   with SIGKILL cannot interrupt it: the task comes back when it ends).
//! * `panic`: an injector set up, then a panic on the tracer thread.

use criu_tracee::{Injector, SeizeOptions, SeizedTree, TracerThread};
use std::time::Duration;

fn hold_forever() -> ! {
    criu_test_workloads::say("HOLDING");
    loop {
        std::thread::sleep(Duration::from_secs(1000));
    }
}

/// Seizes the tree, maps the scratch area and, if `block`, runs a blocking syscall in it.
fn inject(pid: i32, tid: i32, block: Option<i64>, announce: bool) {
    let mut tree = SeizedTree::seize(pid, &SeizeOptions::default()).expect("seize");
    let thread = tree
        .process_mut(pid)
        .and_then(|p| p.thread_mut(tid))
        .expect("thread");
    let mut inj = Injector::new(thread, 64).expect("injector");
    let getpid = inj.syscall(libc::SYS_getpid, &[]).expect("getpid");
    assert_eq!(getpid, pid as i64);
    let Some(secs) = block else {
        hold_forever();
    };
    let ts = libc::timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    // SAFETY: timespec is plain data; viewing it as bytes is sound.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&ts as *const libc::timespec).cast::<u8>(),
            std::mem::size_of::<libc::timespec>(),
        )
    };
    let addr = inj.write_data(0, bytes).expect("write timespec");
    if announce {
        criu_test_workloads::say("HOLDING");
    }
    let _ = inj.syscall(libc::SYS_nanosleep, &[addr, 0]);
    unreachable!("the injected nanosleep returned");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(pid)) = (args.get(1), args.get(2).and_then(|p| p.parse::<i32>().ok()))
    else {
        eprintln!(
            "usage: tracee_hold seize|inject-idle|inject-running|inject-brief|inject-thread|\
             inject-brief-thread|panic PID"
        );
        std::process::exit(2);
    };
    let tid = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(pid);
    match mode.as_str() {
        "seize" => {
            let _tree = SeizedTree::seize(pid, &SeizeOptions::default()).expect("seize");
            hold_forever();
        }
        "inject-idle" => inject(pid, tid, None, true),
        "inject-running" => inject(pid, tid, Some(1000), true),
        "inject-brief" => inject(pid, tid, Some(2), true),
        "inject-thread" | "inject-brief-thread" => {
            let secs = if mode == "inject-thread" { 1000 } else { 2 };
            let tracer = TracerThread::spawn("tracer", || ()).expect("tracer thread");
            std::thread::spawn(move || {
                let _ = tracer.call(move |_| inject(pid, tid, Some(secs), true));
            });
            loop {
                std::thread::sleep(Duration::from_secs(1000));
            }
        }
        "panic" => {
            let mut tree = SeizedTree::seize(pid, &SeizeOptions::default()).expect("seize");
            let leader = tree
                .process_mut(pid)
                .and_then(|p| p.thread_mut(pid))
                .expect("leader");
            let _inj = Injector::new(leader, 64).expect("injector");
            criu_test_workloads::say("HOLDING");
            std::thread::sleep(Duration::from_millis(200));
            panic!("deliberate panic with an injection in flight");
        }
        other => {
            eprintln!("tracee_hold: unknown mode {other}");
            std::process::exit(2);
        }
    }
}
