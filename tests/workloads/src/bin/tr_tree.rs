//! A big process tree with every shape a restore must bring back: `tr_tree RESULT_FILE SCALE`.
//!
//! The root leads its session and is a child subreaper. Under it (about 1000 processes at
//! SCALE 1000, fewer for smaller SCALE):
//! - a deep chain, a wide fan whose members lead or join process groups, and a balanced tree
//!   with group leaders, session leaders and a task that forked a child before its setsid;
//! - an orphan: its parent exited and it was handed to the root (same session);
//! - the members of a session whose leader exited (a member in the dead leader's group, one
//!   leading its own group, one that joined it), handed to the root;
//! - the member of a group whose leader exited: one handed to the root, one whose parent lives;
//! - a task stopped by SIGSTOP, and one stopped by SIGTSTP in a group of its own (so that the
//!   group is not orphaned and the signal stops it).
//!
//! Once all is set up it writes "READY b=B t=T s=S g=G l=L" (the orphan, the stopped task, the
//! dead session leader, the dead group leaders) to RESULT_FILE and waits. On SIGUSR1 it checks
//! what only the root can see: the orphans are its children, it can reap the orphan, nothing
//! else waits to be reaped, and the stopped task is stopped and goes on once continued (it then
//! writes RESULT_FILE.cont). It writes "PASS" or "FAIL: reason" to RESULT_FILE.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static GOT_USR1: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    GOT_USR1.store(true, Ordering::SeqCst);
}

/// The pipe every process writes one byte to once it is set up (read end, write end).
static mut READY_FDS: [i32; 2] = [-1, -1];

fn ready_fds() -> [i32; 2] {
    // SAFETY: written once by the root before any fork; read-only afterwards.
    unsafe { READY_FDS }
}

/// Says "set up" to the root and lets go of the readiness pipe.
fn report_ready() {
    let [r, w] = ready_fds();
    // SAFETY: a one-byte write from a live buffer, then closes of our own fds.
    unsafe {
        libc::write(w, b"r".as_ptr().cast(), 1);
        libc::close(w);
        libc::close(r);
    }
}

/// Lets go of the readiness pipe without reporting.
fn forget_ready() {
    let [r, w] = ready_fds();
    // SAFETY: closes of our own fds.
    unsafe {
        libc::close(w);
        libc::close(r);
    }
}

/// Sleeps forever.
fn idle() -> ! {
    loop {
        // SAFETY: pause takes no arguments.
        unsafe { libc::pause() };
    }
}

/// Forks a child that runs `body` (which must report readiness) and then idles.
fn spawn(body: impl FnOnce()) -> i32 {
    // SAFETY: the process is single-threaded; the child only runs our own code.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        body();
        idle();
    }
    pid
}

/// Forks a child that only reports readiness and idles.
fn leaf() -> i32 {
    spawn(report_ready)
}

fn setpgid(pid: i32, pgid: i32) {
    // SAFETY: plain syscall on integers.
    unsafe { libc::setpgid(pid, pgid) };
}

fn setsid() {
    // SAFETY: plain syscall.
    unsafe { libc::setsid() };
}

/// A chain `depth` long: each link forks the next.
fn chain(depth: usize) {
    if depth > 1 {
        spawn(|| chain(depth - 1));
    }
    report_ready();
}

/// A hub with `n` children: every tenth leads a group, the next four join that group.
fn fan(n: usize) {
    let mut leader = 0;
    for j in 0..n {
        let child = leaf();
        if j % 10 == 0 {
            setpgid(child, child);
            leader = child;
        } else if j % 10 < 5 {
            setpgid(child, leader);
        }
    }
    report_ready();
}

/// A balanced tree of fan-out 3 and `depth` levels; node `k` (its number in a level-order
/// walk) leads a group, or a session, or forks its first child before starting a session.
fn balanced(depth: usize, k: usize) {
    let kids = if depth > 1 { 3 } else { 0 };
    let late_setsid = depth > 1 && k % 17 == 3;
    if k % 13 == 2 && !late_setsid {
        setsid();
    } else if k % 5 == 1 && !late_setsid {
        setpgid(0, 0);
    }
    for i in 0..kids {
        spawn(move || balanced(depth - 1, k * 3 + i + 1));
        if late_setsid && i == 0 {
            setsid();
        }
    }
    report_ready();
}

fn fail(result: &str, why: String) -> ! {
    let _ = std::fs::write(result, format!("FAIL: {why}\n"));
    std::process::exit(1);
}

fn waitpid(pid: i32, flags: i32) -> (i32, i32) {
    let mut status = 0;
    // SAFETY: status is a live local.
    let r = unsafe { libc::waitpid(pid, &mut status, flags) };
    (r, status)
}

fn state_of(pid: i32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| {
            t.rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next())
        })
        .unwrap_or('?')
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = args
        .get(1)
        .cloned()
        .expect("usage: tr_tree RESULT_FILE SCALE");
    let scale: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let cont_file = format!("{result}.cont");
    let _ = std::fs::remove_file(&cont_file);
    setsid();
    // SAFETY: prctl with integer arguments; a handler that only stores to an atomic.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t);
    }
    let mut fds = [0; 2];
    // SAFETY: fds is a live two-int array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: set before any fork, never written again.
    unsafe { READY_FDS = fds };
    let mut expected = 0usize;

    // The bulk: sizes add up to about `scale` processes.
    let chain_len = (scale / 4).max(2);
    spawn(|| chain(chain_len));
    expected += chain_len;
    let mut depth = 2;
    while (3usize.pow(depth as u32 + 1) - 1) / 2 <= scale * 45 / 100 {
        depth += 1;
    }
    spawn(move || balanced(depth, 0));
    expected += (3usize.pow(depth as u32) - 1) / 2;
    // The rest, but for the root, the hub and the 12 special processes below.
    let fan_n = scale.saturating_sub(expected + 14).max(10);
    spawn(|| fan(fan_n));
    expected += fan_n + 1;

    // An orphan in the root's session: its parent exits.
    let (to_orphan, from_orphan) = pipe();
    let a = spawn(move || {
        close(from_orphan);
        let b = leaf();
        write_pid(to_orphan, b);
        report_ready();
        std::process::exit(0);
    });
    close(to_orphan);
    let b = read_pid(from_orphan);
    expected += 2;

    // A session whose leader exits, with its members handed to the root.
    let s = spawn(|| {
        setsid();
        leaf(); // in the dead leader's group
        let m2 = spawn(|| {
            setpgid(0, 0);
            report_ready();
        });
        setpgid(m2, m2);
        let m3 = leaf();
        setpgid(m3, m2);
        report_ready();
        std::process::exit(0);
    });
    expected += 4;

    // A group whose leader exits: its member goes to the root.
    let g = spawn(|| {
        setpgid(0, 0);
        leaf();
        report_ready();
        std::process::exit(0);
    });
    setpgid(g, g);
    expected += 2;

    // A group whose leader exits while the member's parent lives.
    let (to_l, from_l) = pipe();
    spawn(move || {
        close(from_l);
        let l = spawn(|| {
            setpgid(0, 0);
            forget_ready();
        });
        setpgid(l, l);
        let x = leaf();
        setpgid(x, l);
        // SAFETY: plain kill of our own child.
        unsafe { libc::kill(l, libc::SIGKILL) };
        waitpid(l, 0);
        write_pid(to_l, l);
        report_ready();
    });
    close(to_l);
    let l = read_pid(from_l);
    expected += 2;

    // A stopped task.
    let cont = cont_file.clone();
    let t = spawn(move || {
        report_ready();
        // SAFETY: stopping ourselves.
        unsafe { libc::raise(libc::SIGSTOP) };
        let _ = std::fs::write(&cont, "continued\n");
    });
    expected += 1;
    let t2 = spawn(|| {
        setpgid(0, 0);
        report_ready();
        // SAFETY: stopping ourselves.
        unsafe { libc::raise(libc::SIGTSTP) };
    });
    setpgid(t2, t2);
    expected += 1;

    // SAFETY: closing our own write end; the root's byte is not counted.
    unsafe { libc::close(fds[1]) };
    let mut got = 0usize;
    let mut buf = [0u8; 4096];
    while got < expected {
        // SAFETY: reading into a live buffer.
        let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            fail(
                &result,
                format!("only {got} of {expected} processes got ready"),
            );
        }
        got += n as usize;
    }
    // SAFETY: closing our own fd.
    unsafe { libc::close(fds[0]) };
    for dead in [a, s, g] {
        if waitpid(dead, 0).0 != dead {
            fail(&result, format!("cannot reap {dead}"));
        }
    }
    if waitpid(t, libc::WUNTRACED).0 != t {
        fail(&result, format!("{t} never stopped"));
    }
    let (r, st) = waitpid(t2, libc::WUNTRACED);
    if r != t2 || !libc::WIFSTOPPED(st) || libc::WSTOPSIG(st) != libc::SIGTSTP {
        fail(
            &result,
            format!("{t2} was not stopped by SIGTSTP: {r} {st:#x}"),
        );
    }
    let _ = std::fs::write(
        &result,
        format!("READY b={b} t={t} s={s} g={g} l={l} t2={t2}\n"),
    );
    while !GOT_USR1.load(Ordering::SeqCst) {
        // SAFETY: pause takes no arguments.
        unsafe { libc::pause() };
    }
    check(&result, b, t, &cont_file);
    // The restored stop reports the signal that stopped it at dump time.
    let (r, st) = waitpid(t2, libc::WUNTRACED | libc::WNOHANG);
    if r != t2 || !libc::WIFSTOPPED(st) || libc::WSTOPSIG(st) != libc::SIGTSTP {
        fail(
            &result,
            format!("{t2} is not stopped by SIGTSTP after restore: {r} {st:#x}"),
        );
    }
    let _ = std::fs::write(&result, "PASS\n");
    idle();
}

/// What the root checks after the restore.
fn check(result: &str, b: i32, t: i32, cont_file: &str) {
    // SAFETY: plain syscalls.
    let (me, sid, pgrp) = unsafe { (libc::getpid(), libc::getsid(0), libc::getpgrp()) };
    if sid != me || pgrp != me {
        fail(result, format!("root {me}: session {sid}, group {pgrp}"));
    }
    let (r, st) = waitpid(-1, libc::WNOHANG | libc::__WALL);
    if r != 0 {
        fail(
            result,
            format!("a child waited to be reaped: {r} (status {st:#x})"),
        );
    }
    if waitpid(b, libc::WNOHANG).0 != 0 {
        fail(
            result,
            format!("orphan {b} is not a living child of the root"),
        );
    }
    // SAFETY: killing the orphan, which is ours.
    unsafe { libc::kill(b, libc::SIGKILL) };
    if waitpid(b, 0).0 != b {
        fail(result, format!("cannot reap orphan {b}"));
    }
    if state_of(t) != 'T' {
        fail(result, format!("{t} is not stopped but {}", state_of(t)));
    }
    // SAFETY: continuing our own child.
    unsafe { libc::kill(t, libc::SIGCONT) };
    let (r, st) = waitpid(t, libc::WCONTINUED);
    if r != t || !libc::WIFCONTINUED(st) {
        fail(
            result,
            format!("{t} did not report continuing: {r} {st:#x}"),
        );
    }
    let end = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(cont_file).unwrap_or_default() != "continued\n" {
        if Instant::now() > end {
            fail(result, format!("{t} did not go on after SIGCONT"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn close(fd: i32) {
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
}

fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: fds is a live two-int array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[1], fds[0])
}

fn write_pid(fd: i32, pid: i32) {
    let b = pid.to_le_bytes();
    // SAFETY: writing a live 4-byte buffer, then closing our fd.
    unsafe {
        libc::write(fd, b.as_ptr().cast(), 4);
        libc::close(fd);
    }
}

fn read_pid(fd: i32) -> i32 {
    let mut b = [0u8; 4];
    // SAFETY: reading into a live 4-byte buffer, then closing our fd.
    unsafe {
        libc::read(fd, b.as_mut_ptr().cast(), 4);
        libc::close(fd);
    }
    i32::from_le_bytes(b)
}
