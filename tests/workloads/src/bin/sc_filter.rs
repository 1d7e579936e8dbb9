//! Seccomp filters a restore must bring back, checked from inside, in the manner of CRIU's zdtm
//! seccomp_filter tests: `sc_filter RESULT_FILE WORK_DIR`.
//!
//! A second thread starts first (no filter); then the main thread installs two filters, one
//! failing getppid with errno 1234 and one failing getpriority with EPERM. It writes "READY"
//! to RESULT_FILE and waits for SIGUSR1; then both filters must still act on the main thread,
//! its /proc status must count two filters, and the other thread must have none.

use criu_test_workloads::verdict::{self, catch_usr1, fail, ready_then_wait};

/// A filter that fails syscall `nr` with `errno` and allows everything else.
fn install(nr: i64, errno: u32) -> i64 {
    let prog = [
        // ld [0]: the syscall number
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0,
        },
        // jeq #nr, 0, 1
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: nr as u32,
        },
        // ret SECCOMP_RET_ERRNO | errno
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0x0005_0000 | errno,
        },
        // ret SECCOMP_RET_ALLOW
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0x7fff_0000,
        },
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points at `prog`, both alive for the call.
    unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            1i64,
            0i64,
            &fprog as *const libc::sock_fprog,
        )
    }
}

/// The errno of a raw syscall that takes no pointer, or 0.
fn errno_of(nr: i64, args: [i64; 2]) -> i32 {
    // SAFETY: the syscalls used here take integers only.
    let r = unsafe { libc::syscall(nr, args[0], args[1]) };
    if r < 0 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    } else {
        0
    }
}

fn status_field(path: &str, field: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = args.get(1).expect("RESULT_FILE").clone();
    let _ = nix::unistd::setsid();
    catch_usr1();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: gettid takes no arguments.
        tid_tx
            .send(unsafe { libc::syscall(libc::SYS_gettid) })
            .unwrap();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(100));
        }
    });
    let other = tid_rx.recv().unwrap();
    for (nr, errno) in [
        (libc::SYS_getppid, 1234),
        (libc::SYS_getpriority, libc::EPERM as u32),
    ] {
        let r = install(nr, errno);
        if r != 0 {
            fail(
                &result,
                format!("seccomp: {}", std::io::Error::last_os_error()),
            );
        }
    }
    ready_then_wait(&result);
    let check = |ok: bool, what: String| verdict::check(&result, ok, what);
    let e = errno_of(libc::SYS_getppid, [0, 0]);
    check(e == 1234, format!("getppid gave errno {e}, not 1234"));
    let e = errno_of(libc::SYS_getpriority, [libc::PRIO_PROCESS as i64, 0]);
    check(
        e == libc::EPERM,
        format!("getpriority gave errno {e}, not EPERM"),
    );
    let e = errno_of(libc::SYS_getpid, [0, 0]);
    check(e == 0, format!("getpid gave errno {e}"));
    let me = status_field("/proc/thread-self/status", "Seccomp_filters:");
    check(me == "2", format!("main thread has {me} filters"));
    let theirs = status_field(&format!("/proc/self/task/{other}/status"), "Seccomp:");
    check(
        theirs == "0",
        format!("the other thread has seccomp mode {theirs}"),
    );
    std::fs::write(&result, "PASS\n").expect("write PASS");
}
