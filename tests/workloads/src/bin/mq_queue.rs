//! POSIX message queues, checked from inside after a restore: `mq_queue NAME RESULT_FILE
//! WORK_DIR`.
//!
//! It opens queue /NAME (8 messages of 64 bytes, mode 0640) read-write and queues four
//! messages of three priorities, opens it again write-only with O_NONBLOCK, makes /NAME-gone
//! (3 of 16 bytes) with one message and unlinks it while open, and makes /NAME-free with two
//! messages and closes it (only its namespace keeps it). Then READY, SIGUSR1, and it checks
//! attributes, flags, names and every message in order, and that both descriptions of /NAME
//! are one queue; it writes "PASS" or "FAIL: reason". With `notify` it registers a
//! notification on a queue, which a dump must refuse; with `foreign` it moves to an IPC
//! namespace of its own, away from its queues, which a dump must refuse too.

use std::ffi::CString;

use criu_test_workloads::verdict::{catch_usr1, ensure, fail, ready_then_wait, Check};

const MSGS: [(u32, &[u8]); 4] = [(2, b"b1"), (5, b"a"), (2, b"b2"), (0, b"")];
/// The order a receiver gets them: highest priority first, oldest first within one.
const ORDER: [(u32, &[u8]); 4] = [(5, b"a"), (2, b"b1"), (2, b"b2"), (0, b"")];

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn open(name: &str, flags: i32, maxmsg: i64, msgsize: i64) -> Result<i32, String> {
    let c = CString::new(name).unwrap();
    // SAFETY: mq_attr is plain data.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    attr.mq_maxmsg = maxmsg;
    attr.mq_msgsize = msgsize;
    // SAFETY: a valid name and attributes, both alive across the call.
    let fd = unsafe { libc::mq_open(c.as_ptr(), flags, 0o640 as libc::mode_t, &attr) };
    if fd < 0 {
        return Err(format!("mq_open {name}: {}", errno()));
    }
    Ok(fd)
}

fn send(fd: i32, msg: &[u8], prio: u32) -> Result<(), String> {
    // SAFETY: the message is readable for its length.
    let r = unsafe { libc::mq_send(fd, msg.as_ptr().cast(), msg.len(), prio) };
    ensure(r == 0, || format!("mq_send: {}", errno()))
}

fn attr(fd: i32) -> Result<libc::mq_attr, String> {
    // SAFETY: mq_attr is plain data, written by mq_getattr.
    let mut a: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let r = unsafe { libc::mq_getattr(fd, &mut a) };
    ensure(r == 0, || format!("mq_getattr fd {fd}: {}", errno()))?;
    Ok(a)
}

/// Every message left, without waiting.
fn drain(fd: i32, msgsize: usize) -> Result<Vec<(u32, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; msgsize];
    let now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        let mut prio = 0;
        // SAFETY: buf is writable for msgsize bytes; a timeout in the past never waits.
        let n =
            unsafe { libc::mq_timedreceive(fd, buf.as_mut_ptr().cast(), msgsize, &mut prio, &now) };
        if n < 0 {
            let e = errno();
            if e.raw_os_error() == Some(libc::ETIMEDOUT) || e.raw_os_error() == Some(libc::EAGAIN) {
                return Ok(out);
            }
            return Err(format!("mq_receive fd {fd}: {e}"));
        }
        out.push((prio, buf[..n as usize].to_vec()));
    }
}

fn link(fd: i32) -> String {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

struct Queues {
    name: String,
    rw: i32,
    wo: i32,
    gone: i32,
}

/// Registers a SIGEV_SIGNAL notification on `fd` (SIGUSR2), which a dump refuses.
fn notify(fd: i32) -> Result<(), String> {
    // SAFETY: sigevent is plain data.
    let mut ev: libc::sigevent = unsafe { std::mem::zeroed() };
    ev.sigev_notify = libc::SIGEV_SIGNAL;
    ev.sigev_signo = libc::SIGUSR2;
    // SAFETY: a valid sigevent alive across the call.
    let r = unsafe { libc::mq_notify(fd, &ev) };
    ensure(r == 0, || format!("mq_notify: {}", errno()))
}

fn setup(name: &str) -> Result<Queues, String> {
    let main = format!("/{name}");
    let rw = open(&main, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 8, 64)?;
    for (prio, m) in MSGS {
        send(rw, m, prio)?;
    }
    let wo = open(&main, libc::O_WRONLY | libc::O_NONBLOCK, 0, 0)?;
    let gone_name = format!("/{name}-gone");
    let gone = open(
        &gone_name,
        libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
        3,
        16,
    )?;
    send(gone, b"ghost", 1)?;
    let c = CString::new(gone_name).unwrap();
    // SAFETY: a valid name.
    ensure(unsafe { libc::mq_unlink(c.as_ptr()) } == 0, || {
        format!("mq_unlink: {}", errno())
    })?;
    let free = open(
        &format!("/{name}-free"),
        libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
        4,
        32,
    )?;
    send(free, b"kept by the namespace", 3)?;
    send(free, b"second", 3)?;
    // SAFETY: closing our own fd.
    unsafe { libc::mq_close(free) };
    Ok(Queues {
        name: name.to_string(),
        rw,
        wo,
        gone,
    })
}

fn check(q: &Queues) -> Check {
    let a = attr(q.rw)?;
    ensure(
        (a.mq_maxmsg, a.mq_msgsize, a.mq_curmsgs, a.mq_flags) == (8, 64, 4, 0),
        || format!("/{} attributes {a:?}", q.name),
    )?;
    let b = attr(q.wo)?;
    ensure(b.mq_flags == libc::O_NONBLOCK as i64, || {
        format!("write-only description lost O_NONBLOCK: {b:?}")
    })?;
    // SAFETY: F_GETFL on our own fd.
    let fl = unsafe { libc::fcntl(q.wo, libc::F_GETFL) };
    ensure(fl & libc::O_ACCMODE == libc::O_WRONLY, || {
        format!("write-only description has flags {fl:o}")
    })?;
    ensure(link(q.rw) == format!("/{}", q.name), || {
        format!("fd names {}", link(q.rw))
    })?;
    let got = drain(q.rw, 64)?;
    let want: Vec<(u32, Vec<u8>)> = ORDER.iter().map(|(p, m)| (*p, m.to_vec())).collect();
    ensure(got == want, || format!("/{} held {got:?}", q.name))?;
    // Both descriptions are one queue.
    send(q.wo, b"through the other", 4)?;
    let got = drain(q.rw, 64)?;
    ensure(got == vec![(4, b"through the other".to_vec())], || {
        format!("the two descriptions are not one queue: {got:?}")
    })?;
    let g = attr(q.gone)?;
    ensure((g.mq_maxmsg, g.mq_msgsize) == (3, 16), || {
        format!("unlinked queue attributes {g:?}")
    })?;
    ensure(link(q.gone).ends_with(" (deleted)"), || {
        format!("unlinked queue fd names {}", link(q.gone))
    })?;
    let got = drain(q.gone, 16)?;
    ensure(got == vec![(1, b"ghost".to_vec())], || {
        format!("unlinked queue held {got:?}")
    })?;
    let free = open(&format!("/{}-free", q.name), libc::O_RDONLY, 0, 0)?;
    let got = drain(free, 32)?;
    let want = vec![
        (3, b"kept by the namespace".to_vec()),
        (3, b"second".to_vec()),
    ];
    ensure(got == want, || format!("/{}-free held {got:?}", q.name))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // mq_queue NAME [notify|foreign] RESULT_FILE WORK_DIR
    let (name, result) = (&args[1], &args[args.len() - 2]);
    // SAFETY: setsid takes no arguments; the dump wants a session leader as root.
    unsafe { libc::setsid() };
    catch_usr1();
    let q = setup(name).unwrap_or_else(|e| fail(result, format!("setup: {e}")));
    if args[2] == "foreign" {
        // Its queues now belong to another IPC namespace than its own.
        // SAFETY: unshare takes flags only.
        if unsafe { libc::unshare(libc::CLONE_NEWIPC) } != 0 {
            fail(result, format!("unshare: {}", errno()));
        }
    }
    if args[2] == "notify" {
        // The queue holds a message: nothing fires it unless it is emptied and refilled.
        notify(q.gone).unwrap_or_else(|e| fail(result, format!("setup: {e}")));
    }
    ready_then_wait(result);
    match check(&q) {
        Ok(()) => std::fs::write(result, "PASS\n").unwrap(),
        Err(e) => fail(result, e),
    }
}
