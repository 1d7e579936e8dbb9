//! A self-checking process for restore tests, in the manner of CRIU's zdtm tests:
//! `rs_state RESULT_FILE WORK_DIR`.
//!
//! It becomes a session leader, sets up state of every group a restore must bring back,
//! writes "READY" to RESULT_FILE and waits in pause() with known values in r12..r15 and
//! xmm0..xmm3. On SIGUSR1 it checks everything and writes "PASS" or "FAIL: reason".

use std::arch::asm;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static GOT_USR1: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    GOT_USR1.store(true, Ordering::SeqCst);
}

extern "C" fn on_usr2(_: libc::c_int) {}

const PAGE: usize = 4096;
const PRIVATE_PAGES: usize = 64;

fn pattern(i: usize) -> u8 {
    (i * 7 % 251) as u8
}

fn fail(result: &str, why: String) -> ! {
    let _ = std::fs::write(result, format!("FAIL: {why}\n"));
    std::process::exit(1);
}

/// Anonymous mapping helper.
fn map(len: usize, prot: i32, flags: i32) -> *mut u8 {
    // SAFETY: a fresh mapping at a kernel-chosen address; checked for failure.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, -1, 0) };
    assert_ne!(p, libc::MAP_FAILED, "mmap");
    p.cast()
}

/// Waits for SIGUSR1 in pause(), holding known values in r12..r15 and xmm0..xmm3 across the
/// wait; returns what those registers hold afterwards.
fn wait_with_known_registers() -> ([u64; 4], [u64; 4]) {
    let mut gp = [0u64; 4];
    let mut xmm = [0u64; 4];
    while !GOT_USR1.load(Ordering::SeqCst) {
        let (a, b, c, d): (u64, u64, u64, u64);
        let (x0, x1, x2, x3): (u64, u64, u64, u64);
        // SAFETY: a pause syscall with registers the compiler is told about; the values are
        // only compared afterwards.
        unsafe {
            asm!(
                "movq xmm0, {x0}",
                "movq xmm1, {x1}",
                "movq xmm2, {x2}",
                "movq xmm3, {x3}",
                "syscall",
                "movq {x0}, xmm0",
                "movq {x1}, xmm1",
                "movq {x2}, xmm2",
                "movq {x3}, xmm3",
                x0 = inout(reg) 0x1111_2222_3333_4444u64 => x0,
                x1 = inout(reg) 0x5555_6666_7777_8888u64 => x1,
                x2 = inout(reg) 0x9999_aaaa_bbbb_ccccu64 => x2,
                x3 = inout(reg) 0xdddd_eeee_ffff_0000u64 => x3,
                inlateout("rax") libc::SYS_pause => _,
                inlateout("r12") 0xa12u64 => a,
                inlateout("r13") 0xa13u64 => b,
                inlateout("r14") 0xa14u64 => c,
                inlateout("r15") 0xa15u64 => d,
                out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
                lateout("rcx") _,
                lateout("r11") _,
            );
        }
        gp = [a, b, c, d];
        xmm = [x0, x1, x2, x3];
    }
    (gp, xmm)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = args.get(1).expect("RESULT_FILE").clone();
    let work = args.get(2).expect("WORK_DIR").clone();
    // SAFETY: plain syscalls on our own process.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        libc::setsid();
    }

    // Memory: private pattern, a shared anonymous page, read-only and PROT_NONE pieces.
    let private = map(
        PRIVATE_PAGES * PAGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
    );
    for i in 0..PRIVATE_PAGES * PAGE {
        // SAFETY: within the mapping just made.
        unsafe { *private.add(i) = pattern(i) };
    }
    // SAFETY: the upper half of the mapping made above.
    unsafe {
        libc::mprotect(
            private.add(PRIVATE_PAGES / 2 * PAGE).cast(),
            PRIVATE_PAGES / 2 * PAGE,
            libc::PROT_READ,
        )
    };
    let shared = map(
        PAGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED | libc::MAP_ANONYMOUS,
    );
    // SAFETY: within the shared page.
    unsafe { std::ptr::copy_nonoverlapping(b"shared!".as_ptr(), shared, 7) };
    let _guard = map(
        PAGE,
        libc::PROT_NONE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
    );

    // Files: cwd, a file open at an offset, /dev/null.
    std::env::set_current_dir(&work).expect("chdir WORK_DIR");
    std::fs::write("data.txt", "0123456789").expect("write data.txt");
    let file = std::fs::File::open("data.txt").expect("open data.txt");
    use std::os::fd::AsRawFd;
    // SAFETY: seeking our own fd.
    unsafe { libc::lseek(file.as_raw_fd(), 4, libc::SEEK_SET) };
    let devnull = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("/dev/null");

    // Identity and limits.
    // SAFETY: plain syscalls on our own process.
    unsafe {
        libc::umask(0o027);
        let lim = libc::rlimit {
            rlim_cur: 123,
            rlim_max: 456,
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::prctl(libc::PR_SET_NAME, c"rs-state".as_ptr());
        libc::setpriority(libc::PRIO_PROCESS, 0, 5);
    }

    // Signals: handlers, a blocked SIGUSR2 with one queued, an interval timer.
    // SAFETY: installing handlers that only touch an atomic, and plain signal syscalls.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaddset(&mut sa.sa_mask, libc::SIGHUP);
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
        sa.sa_sigaction = on_usr2 as *const () as usize;
        libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::sigqueue(
            libc::getpid(),
            libc::SIGUSR2,
            libc::sigval {
                sival_ptr: 77 as *mut libc::c_void,
            },
        );
        sa.sa_sigaction = libc::SIG_IGN;
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
        let it = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 1000,
                tv_usec: 0,
            },
            it_value: libc::timeval {
                tv_sec: 1000,
                tv_usec: 0,
            },
        };
        libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut());
    }
    // A POSIX timer that never fires (SIGEV_NONE), created second so its id is not 0.
    let mut timer: libc::timer_t = std::ptr::null_mut();
    // SAFETY: creating and arming timers of our own process.
    unsafe {
        let mut sev: libc::sigevent = std::mem::zeroed();
        sev.sigev_notify = libc::SIGEV_NONE;
        let mut first: libc::timer_t = std::ptr::null_mut();
        libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut first);
        libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer);
        libc::timer_delete(first);
        let its = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 500,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: 500,
                tv_nsec: 0,
            },
        };
        libc::timer_settime(timer, 0, &its, std::ptr::null_mut());
    }

    std::fs::write(&result, "READY\n").expect("write READY");
    let (gp, xmm) = wait_with_known_registers();

    let check = |ok: bool, what: &str| {
        if !ok {
            fail(&result, what.to_string());
        }
    };
    check(
        gp == [0xa12, 0xa13, 0xa14, 0xa15],
        &format!("r12..r15 are {gp:x?}"),
    );
    check(
        xmm == [
            0x1111_2222_3333_4444,
            0x5555_6666_7777_8888,
            0x9999_aaaa_bbbb_cccc,
            0xdddd_eeee_ffff_0000,
        ],
        &format!("xmm0..3 are {xmm:x?}"),
    );
    for i in 0..PRIVATE_PAGES * PAGE {
        // SAFETY: within the private mapping.
        let v = unsafe { *private.add(i) };
        check(v == pattern(i), &format!("private byte {i} is {v}"));
    }
    // SAFETY: reading the shared page.
    let s = unsafe { std::slice::from_raw_parts(shared, 7) };
    check(s == b"shared!", "shared page content");
    // The read-only half must still be read-only.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let ro_start = format!("{:x}-", private as usize + PRIVATE_PAGES / 2 * PAGE);
    check(
        maps.lines()
            .any(|l| l.starts_with(&ro_start) && l.contains(" r--p ")),
        "read-only half lost its protection",
    );
    // SAFETY: querying our own fds and process state.
    unsafe {
        check(
            libc::lseek(file.as_raw_fd(), 0, libc::SEEK_CUR) == 4,
            "file offset",
        );
        let mut buf = [0u8; 6];
        check(
            libc::read(file.as_raw_fd(), buf.as_mut_ptr().cast(), 6) == 6 && &buf == b"456789",
            "file content",
        );
        check(
            libc::write(devnull.as_raw_fd(), b"x".as_ptr().cast(), 1) == 1,
            "/dev/null write",
        );
        let old = libc::umask(0);
        check(old == 0o027, &format!("umask is {old:o}"));
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        check(
            lim.rlim_cur == 123 && lim.rlim_max == 456,
            &format!("NOFILE limit is {}/{}", lim.rlim_cur, lim.rlim_max),
        );
        *libc::__errno_location() = 0;
        check(libc::getpriority(libc::PRIO_PROCESS, 0) == 5, "nice value");
        let mut old_sa: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGUSR1, std::ptr::null(), &mut old_sa);
        check(
            old_sa.sa_sigaction == on_usr1 as *const () as usize,
            "SIGUSR1 handler",
        );
        check(old_sa.sa_flags & libc::SA_RESTART != 0, "SIGUSR1 flags");
        check(
            libc::sigismember(&old_sa.sa_mask, libc::SIGHUP) == 1,
            "SIGUSR1 handler mask",
        );
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut pending);
        check(
            libc::sigismember(&pending, libc::SIGUSR2) == 1,
            "queued SIGUSR2 lost",
        );
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        let mut info: libc::siginfo_t = std::mem::zeroed();
        check(
            libc::sigwaitinfo(&set, &mut info) == libc::SIGUSR2,
            "sigwaitinfo",
        );
        check(
            info.si_value().sival_ptr as usize == 77,
            "queued SIGUSR2 value",
        );
        let mut it: libc::itimerval = std::mem::zeroed();
        libc::getitimer(libc::ITIMER_REAL, &mut it);
        check(
            it.it_interval.tv_sec == 1000 && it.it_value.tv_sec > 900,
            "ITIMER_REAL",
        );
        let mut its: libc::itimerspec = std::mem::zeroed();
        check(
            libc::timer_gettime(timer, &mut its) == 0,
            "POSIX timer is gone",
        );
        check(
            its.it_interval.tv_sec == 500 && its.it_value.tv_sec > 400,
            "POSIX timer times",
        );
        let mut comm = [0u8; 16];
        libc::prctl(libc::PR_GET_NAME, comm.as_mut_ptr());
        check(comm.starts_with(b"rs-state\0"), "comm");
    }
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    check(cwd == work, &format!("cwd is {cwd}"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&result)
        .expect("result file");
    let _ = f.write_all(b"PASS\n");
}
