//! A process with known state for dump tests: `dump_state READY_FILE THREADS MIB`.
//!
//! Fills MIB MiB of anonymous memory with a known pattern (page i: its index in the first 8
//! bytes, then byte (i * 7 + 1) % 251), installs a SIGUSR1 handler with a known mask, lowers
//! RLIMIT_NOFILE, sets umask 027, opens /etc/hostname on fd 5 at offset 3, arms ITIMER_REAL,
//! starts THREADS extra threads, then writes "ADDR LEN TID..." to READY_FILE and waits in
//! pause() with r12..r15 holding 0x1200+k .. 0x1500+k (k = 0 in the main thread, 1.. in the
//! others), so that a dump can be checked against them.

use std::arch::asm;
use std::io::Write;

extern "C" fn on_usr1(_: libc::c_int) {}

/// Waits in pause() forever with known values in r12..r15.
fn pause_with_known_regs(k: u64) -> ! {
    loop {
        // SAFETY: a plain pause syscall; r12..r15 are only read by an observer, and the
        // clobbers tell the compiler which registers change.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") libc::SYS_pause => _,
                in("r12") 0x1200 + k,
                in("r13") 0x1300 + k,
                in("r14") 0x1400 + k,
                in("r15") 0x1500 + k,
                lateout("rcx") _,
                lateout("r11") _,
            );
        }
    }
}

fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

fn main() {
    // A dump root leads its own session: criu, like CRIU, refuses one that does not without
    // --shell-job.
    let _ = nix::unistd::setsid();
    // Only stdio belongs to the test: fds inherited from whoever ran it would be dumped too.
    // SAFETY: closing descriptors this program does not use.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    let args: Vec<String> = std::env::args().collect();
    let ready = args.get(1).expect("READY_FILE").clone();
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mib: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);

    let len = mib << 20;
    // SAFETY: a fresh private anonymous mapping, checked below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(addr, libc::MAP_FAILED, "mmap");
    // SAFETY: the mapping is len bytes, readable and writable, and only used here.
    let mem = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) };
    for (i, page) in mem.chunks_mut(4096).enumerate() {
        page.fill(((i * 7 + 1) % 251) as u8);
        page[..8].copy_from_slice(&(i as u64).to_le_bytes());
    }

    // SAFETY: plain libc calls with valid arguments.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaddset(&mut sa.sa_mask, libc::SIGUSR2);
        libc::sigaddset(&mut sa.sa_mask, libc::SIGHUP);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
        let rl = libc::rlimit {
            rlim_cur: 777,
            rlim_max: 4096,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &rl), 0);
        libc::umask(0o027);
        let fd = libc::open(c"/etc/hostname".as_ptr(), libc::O_RDONLY);
        assert!(fd >= 0);
        assert_eq!(libc::dup2(fd, 5), 5);
        libc::close(fd);
        assert_eq!(libc::lseek(5, 3, libc::SEEK_SET), 3);
        let it = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 500,
                tv_usec: 0,
            },
            it_value: libc::timeval {
                tv_sec: 1000,
                tv_usec: 0,
            },
        };
        assert_eq!(
            libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()),
            0
        );
    }

    let (tx, rx) = std::sync::mpsc::channel();
    for k in 1..=threads {
        let tx = tx.clone();
        std::thread::spawn(move || {
            tx.send(gettid()).expect("report tid");
            pause_with_known_regs(k as u64);
        });
    }
    let mut tids: Vec<i32> = (0..threads)
        .map(|_| rx.recv().expect("thread tid"))
        .collect();
    // Block SIGUSR2 in the main thread only (threads started above keep their mask).
    // SAFETY: plain libc calls on a local signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    tids.sort_unstable();

    let mut line = format!("{:#x} {len}", addr as u64);
    for t in &tids {
        line.push_str(&format!(" {t}"));
    }
    let tmp = format!("{ready}.tmp");
    let mut f = std::fs::File::create(&tmp).expect("ready file");
    writeln!(f, "{line}").expect("write ready file");
    drop(f);
    std::fs::rename(&tmp, &ready).expect("rename ready file");
    // Let the threads reach pause() before anyone looks.
    std::thread::sleep(std::time::Duration::from_millis(50));
    pause_with_known_regs(0);
}
