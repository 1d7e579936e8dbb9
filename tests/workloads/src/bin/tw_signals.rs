//! A process with state for the tracee's per-thread queries: SIGUSR1 and SIGUSR2 blocked,
//! SIGUSR1 queued for the main thread (tgkill), SIGUSR2 queued for the process with value 4242
//! (sigqueue), an allow-all seccomp filter, glibc's rseq registration. Prints
//! "READY <pid> <rseq area address>" and blocks in read(0).

fn main() {
    let pid = std::process::id() as i32;
    // SAFETY: plain libc calls on local, initialised values.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::syscall(libc::SYS_tgkill, pid, pid, libc::SIGUSR1);
        let value = libc::sigval {
            sival_ptr: 4242usize as *mut libc::c_void,
        };
        libc::sigqueue(pid, libc::SIGUSR2, value);
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        // One instruction: return SECCOMP_RET_ALLOW.
        let mut insn = [libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0x7fff_0000,
        }];
        let prog = libc::sock_fprog {
            len: 1,
            filter: insn.as_mut_ptr(),
        };
        let r = libc::syscall(libc::SYS_seccomp, 1, 0, &prog as *const libc::sock_fprog);
        if r != 0 {
            eprintln!("seccomp: {}", std::io::Error::last_os_error());
        }
    }
    criu_test_workloads::say(&format!("READY {pid} {:#x}", rseq_area()));
    let mut buf = [0u8; 8];
    criu_test_workloads::raw_syscall(libc::SYS_read, [0, buf.as_mut_ptr() as u64, 8, 0, 0, 0]);
}

extern "C" {
    /// glibc (2.35+): offset of the thread's rseq area from the thread pointer.
    static __rseq_offset: isize;
}

/// Where glibc registered this thread's rseq area: thread pointer + __rseq_offset.
fn rseq_area() -> u64 {
    let tp: u64;
    // SAFETY: on x86_64 glibc keeps the thread pointer at fs:0; reading it has no side effect.
    unsafe { std::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly)) };
    // SAFETY: a plain read of a glibc constant.
    let off = unsafe { __rseq_offset };
    tp.wrapping_add(off as u64)
}
