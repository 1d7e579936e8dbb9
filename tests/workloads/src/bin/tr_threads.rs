//! A process of many threads whose per-thread state a restore must bring back:
//! `tr_threads RESULT_FILE THREADS`.
//!
//! Every thread but the main one gets its own signal mask, signal stack and thread-local value,
//! remembers its tid and TLS base (fs_base); thread 7 switches its own uids (raw setresuid, so
//! the other threads keep theirs) and thread 9 its gids. Then even threads wait on a futex and
//! odd ones in read(2) on a pipe of their own. Once all of them wait, the main thread writes
//! "READY" to RESULT_FILE and waits for SIGUSR1 in sigwaitinfo. After the restore it wakes the
//! futex and writes each reader its byte; every thread checks its state and the main thread
//! writes "PASS" or "FAIL: reasons".

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use criu_test_workloads::{gettid, raw_syscall};

static WORD: AtomicU32 = AtomicU32::new(0);

thread_local! {
    static VALUE: Cell<u64> = const { Cell::new(0) };
}

const ARCH_GET_FS: u64 = 0x1003;

fn fs_base() -> u64 {
    let mut base = 0u64;
    raw_syscall(
        libc::SYS_arch_prctl,
        [ARCH_GET_FS, &mut base as *mut u64 as u64, 0, 0, 0, 0],
    );
    base
}

fn sigmask() -> u64 {
    let mut mask = 0u64;
    raw_syscall(
        libc::SYS_rt_sigprocmask,
        [
            libc::SIG_BLOCK as u64,
            0,
            &mut mask as *mut u64 as u64,
            8,
            0,
            0,
        ],
    );
    mask
}

fn set_sigmask(mask: u64) {
    raw_syscall(
        libc::SYS_rt_sigprocmask,
        [
            libc::SIG_SETMASK as u64,
            &mask as *const u64 as u64,
            0,
            8,
            0,
            0,
        ],
    );
}

fn bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// (sp, size) of the thread's signal stack.
fn altstack() -> (u64, u64, i32) {
    let mut ss = [0u64; 3];
    raw_syscall(
        libc::SYS_sigaltstack,
        [0, ss.as_mut_ptr() as u64, 0, 0, 0, 0],
    );
    (ss[0], ss[2], ss[1] as i32)
}

fn ids(nr: i64) -> [u32; 3] {
    let mut v = [0u32; 3];
    let p = v.as_mut_ptr() as u64;
    raw_syscall(nr, [p, p + 4, p + 8, 0, 0, 0]);
    v
}

/// What one thread set up and must find again.
struct Expect {
    tid: i32,
    mask: u64,
    stack: (u64, u64, i32),
    fs: u64,
    value: u64,
    uids: [u32; 3],
    gids: [u32; 3],
}

fn snapshot() -> Expect {
    Expect {
        tid: gettid(),
        mask: sigmask(),
        stack: altstack(),
        fs: fs_base(),
        value: VALUE.with(Cell::get),
        uids: ids(libc::SYS_getresuid),
        gids: ids(libc::SYS_getresgid),
    }
}

fn compare(i: usize, want: &Expect) -> Result<(), String> {
    let got = snapshot();
    let mut bad = Vec::new();
    if got.tid != want.tid {
        bad.push(format!("tid {} != {}", got.tid, want.tid));
    }
    if got.mask != want.mask {
        bad.push(format!("mask {:#x} != {:#x}", got.mask, want.mask));
    }
    if got.stack != want.stack {
        bad.push(format!("altstack {:x?} != {:x?}", got.stack, want.stack));
    }
    if got.fs != want.fs {
        bad.push(format!("fs_base {:#x} != {:#x}", got.fs, want.fs));
    }
    if got.value != want.value {
        bad.push(format!("thread-local {} != {}", got.value, want.value));
    }
    if got.uids != want.uids || got.gids != want.gids {
        bad.push(format!(
            "ids {:?}/{:?} != {:?}/{:?}",
            got.uids, got.gids, want.uids, want.gids
        ));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("thread {i}: {}", bad.join(", ")))
    }
}

fn thread_body(i: usize, pipe_rd: i32, ready: std::sync::mpsc::Sender<i32>) -> Result<(), String> {
    let mut mask = bit(libc::SIGUSR1);
    for b in 0..6 {
        if i >> b & 1 == 1 {
            mask |= bit(40 + b);
        }
    }
    set_sigmask(mask);
    let size = 16384 + i as u64 * 64;
    let stack: &'static mut [u8] = Vec::leak(vec![0u8; size as usize]);
    let ss = [stack.as_mut_ptr() as u64, 0, size];
    raw_syscall(libc::SYS_sigaltstack, [ss.as_ptr() as u64, 0, 0, 0, 0, 0]);
    VALUE.with(|v| v.set(i as u64 * 1000 + 7));
    if i == 7 {
        raw_syscall(libc::SYS_setresuid, [1000, 1001, 1002, 0, 0, 0]);
    }
    if i == 9 {
        raw_syscall(libc::SYS_setresgid, [2000, 2001, 2002, 0, 0, 0]);
    }
    let want = snapshot();
    let _ = ready.send(want.tid);
    if i.is_multiple_of(2) {
        while WORD.load(Ordering::SeqCst) == 0 {
            raw_syscall(
                libc::SYS_futex,
                [
                    WORD.as_ptr() as u64,
                    (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as u64,
                    0,
                    0,
                    0,
                    0,
                ],
            );
        }
    } else {
        let mut b = [0u8; 1];
        let n = loop {
            let n = raw_syscall(
                libc::SYS_read,
                [pipe_rd as u64, b.as_mut_ptr() as u64, 1, 0, 0, 0],
            );
            if n != -(libc::EINTR as i64) {
                break n;
            }
        };
        if n != 1 || b[0] != i as u8 {
            return Err(format!("thread {i}: read gave {n}, byte {}", b[0]));
        }
    }
    compare(i, &want)
}

/// /proc's `syscall` of our thread `tid` (its id as it sees itself), found by NSpid: the
/// /proc mounted may be an outer pid namespace's, where the thread has another id.
fn syscall_of(tid: i32) -> String {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return String::new();
    };
    for entry in dir.flatten() {
        let path = entry.path();
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        let own = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|ids| ids.split_whitespace().last()?.parse::<i32>().ok());
        if own == Some(tid) {
            return std::fs::read_to_string(path.join("syscall")).unwrap_or_default();
        }
    }
    String::new()
}

fn main() {
    // A dump root leads its own session: criu, like CRIU, refuses one that does not without
    // --shell-job.
    let _ = nix::unistd::setsid();
    let args: Vec<String> = std::env::args().collect();
    let result = args
        .get(1)
        .cloned()
        .expect("usage: tr_threads RESULT_FILE THREADS");
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(50);
    set_sigmask(bit(libc::SIGUSR1));
    let (tx, rx) = std::sync::mpsc::channel();
    let mut writers = Vec::new();
    let mut handles = Vec::new();
    for i in 1..n {
        let mut fds = [-1; 2];
        if i % 2 == 1 {
            // SAFETY: fds is a live two-int array.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        }
        writers.push(fds[1]);
        let tx = tx.clone();
        let rd = fds[0];
        handles.push(
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || thread_body(i, rd, tx))
                .expect("spawn thread"),
        );
    }
    let tids: Vec<i32> = (1..n).map(|_| rx.recv().expect("thread ready")).collect();
    // Wait until every thread sleeps in its futex or read.
    let end = Instant::now() + Duration::from_secs(20);
    for tid in &tids {
        loop {
            let text = syscall_of(*tid);
            let nr = text.split_whitespace().next().unwrap_or("");
            if nr == "202" || nr == "0" {
                break;
            }
            if Instant::now() > end {
                let _ = std::fs::write(&result, format!("FAIL: thread {tid} never slept\n"));
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let _ = std::fs::write(&result, "READY\n");
    let me = gettid();
    let set = bit(libc::SIGUSR1);
    loop {
        let r = raw_syscall(
            libc::SYS_rt_sigtimedwait,
            [&set as *const u64 as u64, 0, 0, 8, 0, 0],
        );
        if r == libc::SIGUSR1 as i64 {
            break;
        }
    }
    let mut bad = Vec::new();
    if gettid() != me || sigmask() != bit(libc::SIGUSR1) {
        bad.push(format!("main: tid {} mask {:#x}", gettid(), sigmask()));
    }
    WORD.store(1, Ordering::SeqCst);
    raw_syscall(
        libc::SYS_futex,
        [
            WORD.as_ptr() as u64,
            (libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG) as u64,
            i32::MAX as u64,
            0,
            0,
            0,
        ],
    );
    for (i, w) in writers.iter().enumerate() {
        if *w >= 0 {
            let b = [(i + 1) as u8];
            // SAFETY: a one-byte write from a live buffer.
            unsafe { libc::write(*w, b.as_ptr().cast(), 1) };
        }
    }
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bad.push(e),
            Err(_) => bad.push("a thread panicked".into()),
        }
    }
    let verdict = if bad.is_empty() {
        "PASS\n".to_string()
    } else {
        format!("FAIL: {}\n", bad.join("; "))
    };
    let _ = std::fs::write(&result, verdict);
    loop {
        // SAFETY: pause takes no arguments.
        unsafe { libc::pause() };
    }
}
