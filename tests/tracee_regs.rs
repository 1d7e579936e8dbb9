//! Per-thread state read through the tracee engine, compared with values the workloads set:
//! GP registers, XSAVE (XMM and YMM halves), sigmask, pending signals, seccomp, rseq, and the
//! syscall-restart state of threads stopped inside syscalls.

#[path = "workloads/src/harness.rs"]
mod harness;

use criu_tracee::{SeizedProcess, SyscallRestart};
use harness::*;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

/// The YMM pattern tw_regs loads: byte j of YMMn is (n * 32 + j) mod 256.
fn expected_ymm(n: usize) -> ([u8; 16], [u8; 16]) {
    let byte = |j: usize| ((n * 32 + j) % 256) as u8;
    (
        std::array::from_fn(byte),
        std::array::from_fn(|j| byte(j + 16)),
    )
}

#[test]
fn gp_registers_and_xsave_read_back_the_workloads_values() {
    require_root();
    let w = Workload::start("tw_regs", &[]);
    let tid: i32 = w.expect("READY", LONG)[0].parse().unwrap();
    let mut p = SeizedProcess::seize(w.pid, TIMEOUT).unwrap();
    let t = p.thread_mut(tid).unwrap();
    let regs = t.regs().unwrap();
    let r = &regs.raw;
    assert_eq!(
        [r.r8, r.r9, r.r12, r.r13, r.r14, r.r15],
        [
            0x0808080808080808,
            0x0909090909090909,
            0x1212121212121212,
            0x1313131313131313,
            0x1414141414141414,
            0x1515151515151515
        ]
    );
    // Stopped in pause() (-ERESTARTNOHAND) or, rarely, on the loop's jump.
    match regs.syscall_restart() {
        SyscallRestart::Restart { nr } => assert_eq!(nr, 34),
        SyscallRestart::NotInSyscall => {}
        other => panic!("unexpected syscall state {other:?}"),
    }
    let xsave = t.xsave().unwrap();
    assert!(
        xsave.xstate_bv() & 0b110 == 0b110,
        "SSE and AVX state present: {:?}",
        xsave
    );
    for n in 0..16 {
        let (low, high) = expected_ymm(n);
        assert_eq!(xsave.xmm(n), Some(low), "xmm{n}");
        assert_eq!(xsave.ymm_high(n), Some(high), "ymm{n} high half");
    }

    // Set, read back, put back.
    let mut changed = xsave.clone();
    assert!(changed.set_xmm(15, [0xab; 16]));
    assert!(changed.set_ymm_high(15, [0xcd; 16]));
    t.set_xsave(&changed).unwrap();
    let mut new_regs = regs;
    new_regs.raw.r15 = 0xdead_beef;
    t.set_regs(&new_regs).unwrap();
    let back = t.xsave().unwrap();
    assert_eq!(back.xmm(15), Some([0xab; 16]));
    assert_eq!(back.ymm_high(15), Some([0xcd; 16]));
    assert_eq!(t.regs().unwrap().raw.r15, 0xdead_beef);
    t.set_xsave(&xsave).unwrap();
    t.set_regs(&regs).unwrap();
    p.release().unwrap();

    // After running on, the workload still holds its own values.
    std::thread::sleep(Duration::from_millis(20));
    let p = SeizedProcess::seize(w.pid, TIMEOUT).unwrap();
    let t = p.thread(tid).unwrap();
    assert_eq!(t.regs().unwrap().raw.r15, 0x1515151515151515);
    assert_eq!(t.xsave().unwrap().xmm(15), Some(expected_ymm(15).0));
    assert_eq!(t.xsave().unwrap().ymm_high(15), Some(expected_ymm(15).1));
    p.release().unwrap();
}

#[test]
fn sigmask_pending_signals_seccomp_and_rseq() {
    require_root();
    let w = Workload::start("tw_signals", &[]);
    let words = w.expect("READY", LONG);
    let rseq_area = u64::from_str_radix(words[1].trim_start_matches("0x"), 16).unwrap();
    wait_in_syscall(w.pid, w.pid, 0);
    let p = SeizedProcess::seize(w.pid, TIMEOUT).unwrap();
    let t = p.thread(w.pid).unwrap();

    let mask = t.sigmask().unwrap();
    let bit = |s: i32| 1u64 << (s - 1);
    assert_eq!(
        mask & (bit(libc::SIGUSR1) | bit(libc::SIGUSR2)),
        bit(libc::SIGUSR1) | bit(libc::SIGUSR2)
    );

    let private = t.pending_signals(false).unwrap();
    assert_eq!(private.len(), 1, "{private:?}");
    assert_eq!(private[0].signo(), libc::SIGUSR1);
    assert_eq!(private[0].code(), libc::SI_TKILL);
    assert_eq!(private[0].pid(), w.pid);
    let shared = t.pending_signals(true).unwrap();
    assert_eq!(shared.len(), 1, "{shared:?}");
    assert_eq!(shared[0].signo(), libc::SIGUSR2);
    assert_eq!(shared[0].code(), libc::SI_QUEUE);
    assert_eq!(shared[0].value_int(), 4242);

    assert_eq!(t.seccomp_mode().unwrap(), 2);
    let filters = t.seccomp_filters().unwrap();
    assert_eq!(filters.len(), 1);
    assert_eq!(filters[0].instructions, vec![(0x06, 0, 0, 0x7fff_0000)]);

    let rseq = t.rseq().unwrap();
    assert_eq!(rseq.rseq_abi_pointer, rseq_area, "{rseq:?}");
    assert!(rseq.rseq_abi_size >= 32);
    assert_eq!(rseq.signature, 0x53053053, "glibc's x86 RSEQ_SIG");
    p.release().unwrap();
}

#[test]
fn restart_state_of_threads_stopped_in_syscalls() {
    require_root();
    let read = Workload::start("tw_blocker", &["read"]);
    read.expect("READY", LONG);
    wait_in_syscall(read.pid, read.pid, 0);
    let p = SeizedProcess::seize(read.pid, TIMEOUT).unwrap();
    assert_eq!(
        p.thread(read.pid).unwrap().syscall_restart().unwrap(),
        SyscallRestart::Restart { nr: 0 }
    );
    p.release().unwrap();

    let sleep = Workload::start("tw_blocker", &["nanosleep", "5000"]);
    sleep.expect("READY", LONG);
    wait_in_syscall(sleep.pid, sleep.pid, 35);
    let p = SeizedProcess::seize(sleep.pid, TIMEOUT).unwrap();
    assert_eq!(
        p.thread(sleep.pid).unwrap().syscall_restart().unwrap(),
        SyscallRestart::RestartBlock { nr: 35 }
    );
    p.release().unwrap();
}
