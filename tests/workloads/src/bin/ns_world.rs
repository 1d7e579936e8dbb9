//! A container's process world, checked from inside after a restore: `ns_world RESULT_FILE
//! WORK_DIR`, started as the init (pid 1) of new pid, uts, ipc, net and time namespaces
//! (`unshare --pid --fork --uts --ipc --net --time ...`).
//!
//! It starts its session, names its host and domain, brings `lo` up, makes System V objects
//! (a segment it and its child keep mapped, a segment nobody maps, a semaphore set, a queue
//! with two messages), forks a child (pid 2, which waits) and one that exits (pid 3, left a
//! zombie), makes a pipe owned by its child (F_SETOWN) and a pidfd of it, listens on an
//! abstract unix socket name (which lives in the network namespace), starts a thread,
//! notes its clocks, writes "READY" and waits for SIGUSR1; then it checks each from inside
//! (pids as it sees them) and writes "PASS" or "FAIL: reason".

use criu_test_workloads::verdict::{catch_usr1, ensure, fail, ready_then_wait, Check};

const SEG_LEN: usize = 3 * 4096;
const LONELY_KEY: i32 = 0x5eed;
const SEMS: [u16; 3] = [1, 7, 300];
const MSGS: [(i64, &[u8]); 2] = [(3, b"first"), (9, b"second one")];

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn clock(id: libc::clockid_t) -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(id, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn pattern(i: usize) -> u8 {
    (i * 7 % 251) as u8
}

/// lo's flags through SIOCGIFFLAGS, or with `up` set IFF_UP first.
fn lo_flags(up: bool) -> i32 {
    // SAFETY: a plain datagram socket for the interface ioctls.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    // SAFETY: ifreq is plain data.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo") {
        *d = *s as libc::c_char;
    }
    // SAFETY: the interface ioctls read and write the ifreq only.
    unsafe {
        libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if up {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &mut req);
        }
        libc::close(fd);
        i32::from(req.ifr_ifru.ifru_flags)
    }
}

struct World {
    /// Listening on an abstract name: connecting by that name must reach it again.
    listener: std::os::unix::net::UnixListener,
    child: i32,
    zombie: i32,
    /// A pipe's read end owned by the child, and a pidfd of the child.
    owned: i32,
    pidfd: i32,
    thread: i32,
    seg: i32,
    at: *mut u8,
    lonely: i32,
    sem: i32,
    queue: i32,
    mono: f64,
    boot: f64,
}

fn setup(result: &str) -> World {
    let name = |f: unsafe extern "C" fn(*const libc::c_char, libc::size_t) -> libc::c_int,
                v: &str| {
        // SAFETY: the name is a valid buffer of the given length.
        unsafe { f(v.as_ptr().cast(), v.len()) }
    };
    // SAFETY: setsid takes no arguments.
    unsafe { libc::setsid() };
    if name(libc::sethostname, "ns-world") != 0 || name(libc::setdomainname, "ns-domain") != 0 {
        fail(result, format!("naming the host: {}", errno()));
    }
    if lo_flags(true) & libc::IFF_UP == 0 {
        fail(result, "cannot bring lo up".into());
    }
    // SAFETY: SysV calls with integer arguments; the attached area is used within its length.
    let (seg, at, lonely, sem, queue) = unsafe {
        let seg = libc::shmget(libc::IPC_PRIVATE, SEG_LEN, libc::IPC_CREAT | 0o600);
        let at = libc::shmat(seg, std::ptr::null(), 0) as *mut u8;
        if seg < 0 || at as isize == -1 {
            fail(result, format!("shm: {}", errno()));
        }
        for i in 0..SEG_LEN {
            *at.add(i) = pattern(i);
        }
        let lonely = libc::shmget(LONELY_KEY, 4096, libc::IPC_CREAT | 0o640);
        let l = libc::shmat(lonely, std::ptr::null(), 0) as *mut u8;
        *l.add(100) = 0x42;
        libc::shmdt(l.cast());
        let sem = libc::semget(
            libc::IPC_PRIVATE,
            SEMS.len() as i32,
            libc::IPC_CREAT | 0o600,
        );
        libc::semctl(sem, 0, libc::SETALL, SEMS.as_ptr());
        let queue = libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600);
        for (ty, text) in MSGS {
            let mut buf = ty.to_ne_bytes().to_vec();
            buf.extend_from_slice(text);
            libc::msgsnd(queue, buf.as_ptr().cast(), text.len(), 0);
        }
        (seg, at, lonely, sem, queue)
    };
    // SAFETY: the child only waits for signals (it keeps the segment mapped).
    let child = unsafe { libc::fork() };
    if child == 0 {
        loop {
            // SAFETY: waiting.
            unsafe { libc::pause() };
        }
    }
    // SAFETY: the child exits at once.
    let zombie = unsafe { libc::fork() };
    if zombie == 0 {
        // SAFETY: exits without running anything of the parent's.
        unsafe { libc::_exit(7) };
    }
    let mut pipe = [0i32; 2];
    // SAFETY: pipe writes two fds; F_SETOWN and pidfd_open take integers.
    let (owned, pidfd) = unsafe {
        libc::pipe(pipe.as_mut_ptr());
        libc::fcntl(pipe[0], libc::F_SETOWN, child);
        (
            pipe[0],
            libc::syscall(libc::SYS_pidfd_open, child, 0) as i32,
        )
    };
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: gettid takes no arguments.
        let _ = tid_tx.send(unsafe { libc::gettid() });
        loop {
            std::thread::park();
        }
    });
    let thread = tid_rx.recv().unwrap_or(0);
    let listener = abstract_addr()
        .and_then(|a| std::os::unix::net::UnixListener::bind_addr(&a))
        .unwrap_or_else(|e| fail(result, format!("abstract listener: {e}")));
    World {
        listener,
        child,
        zombie,
        owned,
        pidfd,
        thread,
        seg,
        at,
        lonely,
        sem,
        queue,
        mono: clock(libc::CLOCK_MONOTONIC),
        boot: clock(libc::CLOCK_BOOTTIME),
    }
}

fn abstract_addr() -> std::io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(b"ns-world-listener")
}

fn uname() -> (String, String) {
    // SAFETY: utsname is plain data that uname fills.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::uname(&mut u) };
    let s = |f: &[libc::c_char]| {
        let b: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&b).into_owned()
    };
    (s(&u.nodename), s(&u.domainname))
}

fn check_pids(w: &World) -> Check {
    // SAFETY: getpid, kill(0), tgkill(0), F_GETOWN and pidfd_send_signal(0) only ask.
    let (me, child_alive, thread_alive, owner, by_pidfd) = unsafe {
        (
            libc::getpid(),
            libc::kill(w.child, 0) == 0,
            libc::syscall(libc::SYS_tgkill, 1, w.thread, 0) == 0,
            libc::fcntl(w.owned, libc::F_GETOWN),
            libc::syscall(libc::SYS_pidfd_send_signal, w.pidfd, 0, 0usize, 0) == 0,
        )
    };
    // SAFETY: getuid and getgid only ask.
    let ids = unsafe { (libc::getuid(), libc::getgid()) };
    ensure(ids == (0, 0), || format!("uid and gid {ids:?}, not root's"))?;
    ensure(me == 1 && w.child == 2 && child_alive, || {
        format!("pid {me}, child {} alive {child_alive}", w.child)
    })?;
    ensure(thread_alive, || format!("thread {} is gone", w.thread))?;
    ensure(owner == w.child, || {
        format!("the pipe's owner is {owner}, not {}", w.child)
    })?;
    ensure(by_pidfd, || "the child's pidfd does not reach it".into())?;
    let mut status = 0;
    // SAFETY: waitpid writes the status.
    let got = unsafe { libc::waitpid(w.zombie, &mut status, libc::WNOHANG) };
    ensure(
        w.zombie == 3 && got == 3 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 7,
        || {
            format!(
                "zombie {}: waitpid gave {got}, status {status:#x}",
                w.zombie
            )
        },
    )
}

fn check_names_and_clocks(w: &World) -> Check {
    let names = uname();
    ensure(names == ("ns-world".into(), "ns-domain".into()), || {
        format!("names {names:?}")
    })?;
    let (mono, boot) = (clock(libc::CLOCK_MONOTONIC), clock(libc::CLOCK_BOOTTIME));
    let sane = |now: f64, then: f64| now >= then && now - then < 600.0;
    ensure(sane(mono, w.mono) && sane(boot, w.boot), || {
        format!(
            "clocks jumped: monotonic {} -> {mono}, boottime {} -> {boot}",
            w.mono, w.boot
        )
    })?;
    ensure(lo_flags(false) & libc::IFF_UP != 0, || "lo is down".into())?;
    let connected = abstract_addr().and_then(|a| std::os::unix::net::UnixStream::connect_addr(&a));
    ensure(connected.is_ok(), || {
        format!("connecting to the abstract listener: {connected:?}")
    })?;
    let accepted = w.listener.accept();
    ensure(accepted.is_ok(), || format!("accepting: {accepted:?}"))
}

fn check_ipc(w: &World) -> Check {
    for i in 0..SEG_LEN {
        // SAFETY: the segment is still attached at `at` for SEG_LEN bytes.
        let b = unsafe { *w.at.add(i) };
        ensure(b == pattern(i), || {
            format!("mapped segment byte {i} is {b}")
        })?;
    }
    // SAFETY: shmid_ds is plain data that IPC_STAT fills.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::shmctl(w.seg, libc::IPC_STAT, &mut ds) };
    ensure(ds.shm_segsz == SEG_LEN && ds.shm_nattch == 2, || {
        format!(
            "segment {}: size {} attached {}",
            w.seg, ds.shm_segsz, ds.shm_nattch
        )
    })?;
    // SAFETY: SysV calls with integer arguments; the segment is read within its length.
    let (lonely, byte) = unsafe {
        let id = libc::shmget(LONELY_KEY, 0, 0);
        let l = libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY) as *const u8;
        let b = if l as isize == -1 { 0 } else { *l.add(100) };
        (id, b)
    };
    ensure(lonely == w.lonely && byte == 0x42, || {
        format!(
            "keyed segment: id {lonely} (was {}), byte {byte:#x}",
            w.lonely
        )
    })?;
    for (i, want) in SEMS.iter().enumerate() {
        // SAFETY: GETVAL takes integers.
        let v = unsafe { libc::semctl(w.sem, i as i32, libc::GETVAL) };
        ensure(v == i32::from(*want), || {
            format!("semaphore {i} is {v}, not {want}")
        })?;
    }
    for (ty, text) in MSGS {
        let mut buf = [0u8; 64];
        // SAFETY: msgrcv writes at most 56 bytes of text after the type.
        let n = unsafe { libc::msgrcv(w.queue, buf.as_mut_ptr().cast(), 56, 0, libc::IPC_NOWAIT) };
        let got_ty = i64::from_ne_bytes(buf[..8].try_into().unwrap_or_default());
        ensure(
            n == text.len() as isize && got_ty == ty && &buf[8..8 + text.len()] == text,
            || format!("message: {n} bytes of type {got_ty}, wanted {ty} {text:?}"),
        )?;
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, result, _work] = &args[..] else {
        eprintln!("usage: ns_world RESULT_FILE WORK_DIR");
        std::process::exit(2);
    };
    // SAFETY: getpid takes no arguments.
    if unsafe { libc::getpid() } != 1 {
        fail(result, "not the init of a pid namespace".into());
    }
    catch_usr1();
    let world = setup(result);
    ready_then_wait(result);
    let verdict = check_pids(&world)
        .and_then(|()| check_names_and_clocks(&world))
        .and_then(|()| check_ipc(&world));
    match verdict {
        Ok(()) => std::fs::write(result, "PASS\n").expect("write verdict"),
        Err(why) => fail(result, why),
    }
}
