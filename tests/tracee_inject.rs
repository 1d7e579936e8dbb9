//! Remote syscalls in tasks blocked in read, nanosleep and futex: getpid, mmap and open return
//! the right things, the task is left exactly as it was, and its blocked syscall then
//! completes normally.

#[path = "workloads/src/harness.rs"]
mod harness;

use criu_tracee::{Injector, SeizedProcess};
use harness::*;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Injects getpid, mmap, open (and cleans up with close and munmap) into the leader of `w`.
fn inject_and_check(w: &Workload) {
    let pid = w.pid;
    let path =
        std::env::temp_dir().join(format!("criu-tracee-inject-{}-{pid}", std::process::id()));
    std::fs::write(&path, b"x").unwrap();
    let maps_before = maps(pid);
    let mut p = SeizedProcess::seize(pid, TIMEOUT).unwrap();
    let t = p.thread_mut(pid).unwrap();
    let regs_before = t.regs().unwrap();
    let mask_before = t.sigmask().unwrap();
    let xsave_before = t.xsave().unwrap();
    {
        let mut inj = Injector::new(t, 4096).unwrap();
        assert_eq!(inj.syscall(libc::SYS_getpid, &[]).unwrap(), pid as i64);

        let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let addr = inj
            .syscall_ok("mmap", libc::SYS_mmap, &[0, 8192, prot, flags, u64::MAX, 0])
            .unwrap() as u64;
        let line = format!("{addr:x}-{:x} rw-p", addr + 8192);
        assert!(
            maps(pid).contains(&line),
            "mapping {line} not in the task's maps"
        );

        let mut cpath = path.as_os_str().as_encoded_bytes().to_vec();
        cpath.push(0);
        let ptr = inj.write_data(0, &cpath).unwrap();
        let fd = inj
            .syscall_ok("open", libc::SYS_open, &[ptr, libc::O_RDONLY as u64])
            .unwrap();
        assert_eq!(fd_target(pid, fd), Some(path.clone()));
        // A failing call reports -errno.
        assert_eq!(
            inj.syscall(libc::SYS_close, &[9999]).unwrap(),
            -(libc::EBADF as i64)
        );

        assert_eq!(inj.syscall(libc::SYS_close, &[fd as u64]).unwrap(), 0);
        assert_eq!(inj.syscall(libc::SYS_munmap, &[addr, 8192]).unwrap(), 0);
        inj.finish().unwrap();
    }
    assert_eq!(t.regs().unwrap(), regs_before, "registers changed");
    assert_eq!(t.sigmask().unwrap(), mask_before, "sigmask changed");
    assert_eq!(t.xsave().unwrap(), xsave_before, "xsave changed");
    assert_eq!(maps(pid), maps_before, "memory map changed");
    p.release().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn inject_into_task_blocked_in_read() {
    require_root();
    let mut w = Workload::start("tw_blocker", &["read"]);
    w.expect("READY", LONG);
    wait_in_syscall(w.pid, w.pid, libc::SYS_read);
    inject_and_check(&w);
    inject_and_check(&w);
    w.send("hello\n");
    assert_eq!(w.expect("READ", LONG), vec!["6", "hello"]);
    assert_eq!(w.wait_exit(LONG), Exit::Code(0));
}

#[test]
fn inject_into_task_blocked_in_nanosleep() {
    require_root();
    let mut w = Workload::start("tw_blocker", &["nanosleep", "1500"]);
    w.expect("READY", LONG);
    wait_in_syscall(w.pid, w.pid, libc::SYS_nanosleep);
    inject_and_check(&w);
    let slept = w.expect("SLEPT", LONG);
    assert_eq!(
        slept[0], "0",
        "nanosleep must complete with 0 (restarted, not EINTR)"
    );
    let ms: u64 = slept[1].parse().unwrap();
    assert!(ms >= 1500, "slept only {ms} ms");
    assert_eq!(w.wait_exit(LONG), Exit::Code(0));
}

#[test]
fn inject_into_task_blocked_in_futex() {
    require_root();
    let mut w = Workload::start("tw_blocker", &["futex"]);
    w.expect("READY", LONG);
    wait_in_syscall(w.pid, w.pid, libc::SYS_futex);
    inject_and_check(&w);
    // A wake sent before the interrupted wait is restarted would be missed (EAGAIN, as after any
    // stop): wake it once it waits again.
    assert!(
        wait_until(LONG, || state(w.pid, w.pid) == Some('S')),
        "futex wait not restarted"
    );
    wait_in_syscall(w.pid, w.pid, libc::SYS_futex);
    w.send("wake\n");
    assert_eq!(w.expect("WOKE", LONG), vec!["0", "1"]);
    assert_eq!(w.wait_exit(LONG), Exit::Code(0));
}

#[test]
fn injection_round_trips_from_a_tracer_thread() {
    require_root();
    let mut w = Workload::start("tw_blocker", &["read"]);
    w.expect("READY", LONG);
    wait_in_syscall(w.pid, w.pid, libc::SYS_read);
    let pid = w.pid;
    // The process is seized on the tracer thread and stays there; only closures cross.
    let tracer = criu_tracee::TracerThread::spawn("tracer", move || {
        SeizedProcess::seize(pid, TIMEOUT).unwrap()
    })
    .unwrap();
    let results = tracer
        .call(move |p| {
            let t = p.thread_mut(pid).unwrap();
            let mut inj = Injector::new(t, 64).unwrap();
            let r: Vec<i64> = (0..100)
                .map(|_| inj.syscall(libc::SYS_getppid, &[]).unwrap())
                .collect();
            inj.finish().unwrap();
            r
        })
        .unwrap();
    assert!(
        results.iter().all(|&r| r == std::process::id() as i64),
        "getppid in the workload is the test"
    );
    drop(tracer);
    assert!(wait_until(LONG, || tracer_of(pid) == 0));
    w.send("bye\n");
    assert_eq!(w.expect("READ", LONG), vec!["4", "bye"]);
}

fn tracer_of(pid: i32) -> i32 {
    tracer(pid, pid)
}

#[test]
fn finish_restored_leaves_the_task_with_the_given_registers() {
    require_root();
    let mut w = Workload::start("tw_blocker", &["read"]);
    w.expect("READY", LONG);
    wait_in_syscall(w.pid, w.pid, libc::SYS_read);
    let maps_before = maps(w.pid);
    let mut p = SeizedProcess::seize(w.pid, TIMEOUT).unwrap();
    let t = p.thread_mut(w.pid).unwrap();
    let inj = Injector::new(t, 64).unwrap();
    // As a restore would: registers whose interrupted read is restarted by hand.
    let regs = inj.original_regs().with_restart_applied(true);
    assert_eq!(regs.raw.rax, libc::SYS_read as u64);
    inj.finish_restored(&regs).unwrap();
    assert_eq!(t.regs().unwrap(), regs);
    assert_eq!(maps(w.pid), maps_before, "scratch area left mapped");
    p.release().unwrap();
    w.send("again\n");
    assert_eq!(w.expect("READ", LONG), vec!["6", "again"]);
}
