//! A self-checking process for the anonymous-file restore tests:
//! `af_anon KIND RESULT_FILE`, KIND one of eventfd, signalfd, timerfd, memfd.
//!
//! It sets up fds of that kind, writes "READY" to RESULT_FILE and waits in pause(). On SIGUSR1
//! (sent once it is restored) it checks, from inside, that the fds behave as before the dump
//! and writes "PASS" or "FAIL: reason".

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static GOT_USR1: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    GOT_USR1.store(true, Ordering::SeqCst);
}

const PAGE: usize = 4096;

/// A failed check: what went wrong.
type Check = Result<(), String>;

fn ensure(ok: bool, why: impl FnOnce() -> String) -> Check {
    if ok {
        Ok(())
    } else {
        Err(why())
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A raw return value or the errno it failed with.
fn sys(r: libc::c_long, what: &str) -> Result<libc::c_long, String> {
    if r < 0 {
        Err(format!("{what}: errno {}", errno()))
    } else {
        Ok(r)
    }
}

fn read_u64(fd: i32) -> Result<u64, i32> {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into a live u64.
    let n = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
    if n == 8 {
        Ok(v)
    } else {
        Err(errno())
    }
}

fn write_u64(fd: i32, v: u64) -> Result<libc::c_long, String> {
    // SAFETY: writes 8 bytes from a live u64.
    sys(
        unsafe { libc::write(fd, (&v as *const u64).cast(), 8) } as _,
        "write",
    )
}

fn fdinfo(fd: i32) -> String {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default()
}

fn getfl(fd: i32) -> i32 {
    // SAFETY: F_GETFL takes no pointer.
    unsafe { libc::fcntl(fd, libc::F_GETFL) }
}

// ---- eventfd ----

/// A non-blocking counter above 32 bits, shared with a dup; a blocking-free semaphore.
struct Eventfds {
    counter: i32,
    dup: i32,
    sem: i32,
}

const BIG: u64 = (1 << 40) + 5;

fn setup_eventfd() -> Result<Eventfds, String> {
    // SAFETY: plain eventfd/dup calls.
    let (counter, sem) = unsafe {
        (
            libc::eventfd(0, libc::EFD_NONBLOCK),
            libc::eventfd(
                3,
                libc::EFD_SEMAPHORE | libc::EFD_NONBLOCK | libc::EFD_CLOEXEC,
            ),
        )
    };
    sys(counter as _, "eventfd")?;
    sys(sem as _, "eventfd(semaphore)")?;
    write_u64(counter, BIG)?;
    // SAFETY: dup2 of our own fd to a free number.
    let dup = sys(unsafe { libc::dup2(counter, 20) } as _, "dup2")? as i32;
    Ok(Eventfds { counter, dup, sem })
}

fn check_eventfd(e: &Eventfds) -> Check {
    ensure(getfl(e.counter) & libc::O_NONBLOCK != 0, || {
        "counter lost O_NONBLOCK".into()
    })?;
    // SAFETY: F_GETFD takes no pointer.
    let cloexec = unsafe { libc::fcntl(e.sem, libc::F_GETFD) } & libc::FD_CLOEXEC;
    ensure(cloexec != 0, || "semaphore lost FD_CLOEXEC".into())?;
    let got = read_u64(e.counter);
    ensure(got == Ok(BIG), || {
        format!("counter read {got:?}, want {BIG}")
    })?;
    let again = read_u64(e.counter);
    ensure(again == Err(libc::EAGAIN), || {
        format!("empty counter read {again:?}")
    })?;
    // One description: what the dup writes, the first fd reads.
    write_u64(e.dup, 7)?;
    let got = read_u64(e.counter);
    ensure(got == Ok(7), || format!("write via dup, read {got:?}"))?;
    for i in 0..3 {
        let got = read_u64(e.sem);
        ensure(got == Ok(1), || {
            format!("semaphore read {i} gave {got:?}, want 1")
        })?;
    }
    let got = read_u64(e.sem);
    ensure(got == Err(libc::EAGAIN), || {
        format!("spent semaphore read {got:?}")
    })
}

// ---- signalfd ----

fn sigbit(sig: i32) -> u64 {
    1 << (sig - 1)
}

fn block(sigs: &[i32]) {
    // SAFETY: a local sigset filled and passed to sigprocmask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn setup_signalfd() -> Result<i32, String> {
    let rt = libc::SIGRTMIN() + 2;
    block(&[libc::SIGUSR2, rt]);
    // SAFETY: a local sigset filled and passed to signalfd.
    let fd = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        libc::sigaddset(&mut set, rt);
        libc::signalfd(-1, &set, libc::SFD_NONBLOCK)
    };
    sys(fd as _, "signalfd")?;
    // A signal left pending across the dump.
    // SAFETY: raise takes no pointer.
    unsafe { libc::raise(libc::SIGUSR2) };
    Ok(fd)
}

fn read_signo(fd: i32) -> Result<u32, i32> {
    // SAFETY: reads one signalfd_siginfo into a zeroed local of that type.
    unsafe {
        let mut info: libc::signalfd_siginfo = std::mem::zeroed();
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        let n = libc::read(fd, (&mut info as *mut libc::signalfd_siginfo).cast(), size);
        if n == size as isize {
            Ok(info.ssi_signo)
        } else {
            Err(errno())
        }
    }
}

fn check_signalfd(fd: i32) -> Check {
    let rt = libc::SIGRTMIN() + 2;
    let mask = sigbit(libc::SIGUSR2) | sigbit(rt);
    let info = fdinfo(fd);
    ensure(info.contains(&format!("sigmask:\t{mask:016x}")), || {
        format!("mask changed: {info}")
    })?;
    ensure(getfl(fd) & libc::O_NONBLOCK != 0, || {
        "lost O_NONBLOCK".into()
    })?;
    let got = read_signo(fd);
    ensure(got == Ok(libc::SIGUSR2 as u32), || {
        format!("pending SIGUSR2 not read: {got:?}")
    })?;
    ensure(read_signo(fd) == Err(libc::EAGAIN), || {
        "more than one signal".into()
    })?;
    // A signal sent after the restore comes through too.
    // SAFETY: raise takes no pointer.
    unsafe { libc::raise(rt) };
    let got = read_signo(fd);
    ensure(got == Ok(rt as u32), || {
        format!("SIGRTMIN+2 not read: {got:?}")
    })
}

// ---- timerfd ----

struct Timerfds {
    /// 30 s relative, 30 s interval.
    slow: i32,
    /// 40 ms interval, left unread so ticks pile up.
    fast: i32,
    /// CLOCK_REALTIME, absolute, 60 s ahead.
    abs: i32,
    ready_at: Instant,
    /// Ticks of `fast` when READY was written.
    fast_ticks: u64,
}

fn ts(sec: i64, nsec: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

fn arm(
    clock: i32,
    flags: i32,
    value: libc::timespec,
    interval: libc::timespec,
) -> Result<i32, String> {
    // SAFETY: timerfd calls with a live itimerspec.
    unsafe {
        let fd = sys(
            libc::timerfd_create(clock, libc::TFD_NONBLOCK) as _,
            "timerfd_create",
        )? as i32;
        let spec = libc::itimerspec {
            it_interval: interval,
            it_value: value,
        };
        sys(
            libc::timerfd_settime(fd, flags, &spec, std::ptr::null_mut()) as _,
            "timerfd_settime",
        )?;
        Ok(fd)
    }
}

fn gettime(fd: i32) -> Result<libc::itimerspec, String> {
    // SAFETY: timerfd_gettime fills a zeroed local itimerspec.
    unsafe {
        let mut cur: libc::itimerspec = std::mem::zeroed();
        sys(libc::timerfd_gettime(fd, &mut cur) as _, "timerfd_gettime")?;
        Ok(cur)
    }
}

fn fdinfo_ticks(fd: i32) -> u64 {
    fdinfo(fd)
        .lines()
        .find_map(|l| l.strip_prefix("ticks:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn setup_timerfd() -> Result<Timerfds, String> {
    let slow = arm(libc::CLOCK_MONOTONIC, 0, ts(30, 0), ts(30, 0))?;
    let fast = arm(
        libc::CLOCK_MONOTONIC,
        0,
        ts(0, 40_000_000),
        ts(0, 40_000_000),
    )?;
    let mut now = ts(0, 0);
    // SAFETY: clock_gettime fills a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let abs = arm(
        libc::CLOCK_REALTIME,
        libc::TFD_TIMER_ABSTIME,
        ts(now.tv_sec + 60, 0),
        ts(0, 0),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(Timerfds {
        slow,
        fast,
        abs,
        ready_at: Instant::now(),
        fast_ticks: fdinfo_ticks(fast),
    })
}

fn check_timerfd(t: &Timerfds) -> Check {
    let elapsed = t.ready_at.elapsed().as_secs_f64();
    let secs = |s: libc::timespec| s.tv_sec as f64 + s.tv_nsec as f64 / 1e9;
    let slow = gettime(t.slow)?;
    let left = secs(slow.it_value);
    // The time between dump and restore does not count, as with CRIU: what is left is at most
    // 30 s, and at least 30 s less the time since READY.
    ensure(
        left > 0.0 && left <= 30.0 && left >= 30.0 - elapsed - 1.0,
        || format!("slow timer: {left} s left, {elapsed} s since ready"),
    )?;
    ensure(secs(slow.it_interval) == 30.0, || {
        "slow timer lost its interval".into()
    })?;
    let abs = gettime(t.abs)?;
    let left = secs(abs.it_value);
    ensure(left > 0.0 && left <= 60.0, || {
        format!("absolute timer: {left} s left")
    })?;
    ensure(getfl(t.fast) & libc::O_NONBLOCK != 0, || {
        "lost O_NONBLOCK".into()
    })?;
    let first = read_u64(t.fast);
    ensure(matches!(first, Ok(n) if n >= t.fast_ticks), || {
        format!("fast timer read {first:?}, had {} ticks", t.fast_ticks)
    })?;
    std::thread::sleep(Duration::from_millis(400));
    let later = read_u64(t.fast);
    ensure(matches!(later, Ok(n) if (4..=15).contains(&n)), || {
        format!("fast timer fired {later:?} times in 400 ms at a 40 ms interval")
    })
}

// ---- memfd ----

struct Memfds {
    fd: i32,
    shared: *mut u8,
    private: *mut u8,
    sealed: i32,
    sealed_ro: i32,
    /// Sealed against future writes while mapped writable.
    future: i32,
    future_map: *mut u8,
}

fn setup_memfd() -> Result<Memfds, String> {
    // SAFETY: memfd and mapping calls on our own fds; pointers stay inside the 3-page
    // mappings made here.
    unsafe {
        let fd = sys(
            libc::memfd_create(c"af-memfd".as_ptr(), libc::MFD_ALLOW_SEALING) as _,
            "memfd_create",
        )? as i32;
        sys(libc::ftruncate(fd, 3 * PAGE as i64) as _, "ftruncate")?;
        sys(
            libc::pwrite(fd, b"hello".as_ptr().cast(), 5, 0) as _,
            "pwrite",
        )?;
        sys(
            libc::pwrite(fd, b"page2".as_ptr().cast(), 5, 2 * PAGE as i64) as _,
            "pwrite",
        )?;
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let shared = libc::mmap(std::ptr::null_mut(), 3 * PAGE, rw, libc::MAP_SHARED, fd, 0);
        let private = libc::mmap(std::ptr::null_mut(), 3 * PAGE, rw, libc::MAP_PRIVATE, fd, 0);
        if shared == libc::MAP_FAILED || private == libc::MAP_FAILED {
            return Err("mmap".into());
        }
        let (shared, private) = (shared.cast::<u8>(), private.cast::<u8>());
        std::ptr::copy_nonoverlapping(b"via-map".as_ptr(), shared.add(PAGE), 7);
        // Page 0 of the private mapping is copied on write; page 2 stays the file's.
        std::ptr::copy_nonoverlapping(b"mine".as_ptr(), private, 4);
        let _ = std::ptr::read_volatile(private.add(2 * PAGE));
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        sys(
            libc::fcntl(fd, libc::F_ADD_SEALS, seals) as _,
            "F_ADD_SEALS",
        )?;
        sys(libc::fchmod(fd, 0o640) as _, "fchmod")?;
        sys(libc::lseek(fd, 4, libc::SEEK_SET) as _, "lseek")?;

        let sealed = sys(
            libc::memfd_create(
                c"af-sealed".as_ptr(),
                libc::MFD_ALLOW_SEALING | libc::MFD_CLOEXEC,
            ) as _,
            "memfd_create",
        )? as i32;
        sys(
            libc::write(sealed, b"sealed!".as_ptr().cast(), 7) as _,
            "write",
        )?;
        sys(
            libc::fcntl(sealed, libc::F_ADD_SEALS, libc::F_SEAL_WRITE) as _,
            "seal",
        )?;
        let path = std::ffi::CString::new(format!("/proc/self/fd/{sealed}")).unwrap();
        let sealed_ro = sys(libc::open(path.as_ptr(), libc::O_RDONLY) as _, "reopen")? as i32;
        let future = sys(
            libc::memfd_create(c"af-future".as_ptr(), libc::MFD_ALLOW_SEALING) as _,
            "memfd_create",
        )? as i32;
        sys(libc::ftruncate(future, PAGE as i64) as _, "ftruncate")?;
        let future_map = libc::mmap(std::ptr::null_mut(), PAGE, rw, libc::MAP_SHARED, future, 0);
        if future_map == libc::MAP_FAILED {
            return Err("mmap future".into());
        }
        let future_map = future_map.cast::<u8>();
        std::ptr::copy_nonoverlapping(b"future".as_ptr(), future_map, 6);
        let seals = libc::F_SEAL_FUTURE_WRITE | libc::F_SEAL_SEAL;
        sys(
            libc::fcntl(future, libc::F_ADD_SEALS, seals) as _,
            "seal future",
        )?;
        Ok(Memfds {
            fd,
            shared,
            private,
            sealed,
            sealed_ro,
            future,
            future_map,
        })
    }
}

fn pread_str(fd: i32, len: usize, at: usize) -> String {
    let mut buf = vec![0u8; len];
    // SAFETY: reads at most len bytes into a buffer of len bytes.
    let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), len, at as i64) };
    buf.truncate(n.max(0) as usize);
    String::from_utf8_lossy(&buf).into_owned()
}

/// `len` bytes at `p` as text.
///
/// # Safety
/// `p..p+len` must be mapped and readable.
unsafe fn mem_str(p: *const u8, len: usize) -> String {
    // SAFETY: the caller's promise.
    String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(p, len) }).into_owned()
}

fn check_memfd(m: &Memfds) -> Check {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", m.fd)).unwrap_or_default();
    ensure(
        link.to_string_lossy() == "/memfd:af-memfd (deleted)",
        || format!("memfd is {}", link.display()),
    )?;
    // SAFETY: fcntl/lseek/fstat on our own fd with a zeroed local stat.
    let (seals, pos, st) = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(m.fd, &mut st);
        (
            libc::fcntl(m.fd, libc::F_GET_SEALS),
            libc::lseek(m.fd, 0, libc::SEEK_CUR),
            st,
        )
    };
    ensure(seals == libc::F_SEAL_SHRINK | libc::F_SEAL_GROW, || {
        format!("seals {seals:#x}")
    })?;
    ensure(pos == 4, || format!("offset {pos}"))?;
    ensure(st.st_mode & 0o7777 == 0o640, || {
        format!("mode {:o}", st.st_mode)
    })?;
    ensure(st.st_size == 3 * PAGE as i64, || {
        format!("size {}", st.st_size)
    })?;
    ensure(pread_str(m.fd, 5, 0) == "hello", || {
        "page 0 contents".into()
    })?;
    ensure(pread_str(m.fd, 7, PAGE) == "via-map", || {
        "mapping's write lost".into()
    })?;
    ensure(pread_str(m.fd, 5, 2 * PAGE) == "page2", || {
        "page 2 contents".into()
    })?;
    // SAFETY: the 3-page mappings made in setup.
    unsafe {
        ensure(mem_str(m.private, 4) == "mine", || {
            "private copy lost".into()
        })?;
        // One object: a write through the fd shows in both mappings' shared pages...
        sys(
            libc::pwrite(m.fd, b"after".as_ptr().cast(), 5, 2 * PAGE as i64) as _,
            "pwrite",
        )?;
        ensure(mem_str(m.shared.add(2 * PAGE), 5) == "after", || {
            "fd write not seen in the shared mapping".into()
        })?;
        ensure(mem_str(m.private.add(2 * PAGE), 5) == "after", || {
            "fd write not seen in the private mapping".into()
        })?;
        // ...and a write through the mapping shows through the fd.
        std::ptr::copy_nonoverlapping(b"again".as_ptr(), m.shared, 5);
    }
    ensure(pread_str(m.fd, 5, 0) == "again", || {
        "mapping write not seen by fd".into()
    })?;

    ensure(pread_str(m.sealed_ro, 7, 0) == "sealed!", || {
        "sealed contents".into()
    })?;
    // SAFETY: fcntl takes no pointer; the write reads 1 live byte.
    let (seals, w) = unsafe {
        (
            libc::fcntl(m.sealed, libc::F_GET_SEALS),
            libc::write(m.sealed, b"x".as_ptr().cast(), 1),
        )
    };
    ensure(seals == libc::F_SEAL_WRITE, || {
        format!("sealed seals {seals:#x}")
    })?;
    ensure(w < 0 && errno() == libc::EPERM, || {
        "write to a sealed memfd worked".into()
    })?;
    ensure(
        getfl(m.sealed_ro) & libc::O_ACCMODE == libc::O_RDONLY,
        || "read-only reopen changed access".into(),
    )?;

    // SAFETY: fcntl takes no pointer; the write reads 1 live byte; the mapping is the page
    // made in setup.
    let (seals, w, old) = unsafe {
        (
            libc::fcntl(m.future, libc::F_GET_SEALS),
            libc::pwrite(m.future, b"x".as_ptr().cast(), 1, 0),
            mem_str(m.future_map, 6),
        )
    };
    let want = libc::F_SEAL_FUTURE_WRITE | libc::F_SEAL_SEAL;
    ensure(seals == want, || format!("future seals {seals:#x}"))?;
    ensure(w < 0 && errno() == libc::EPERM, || {
        "write under F_SEAL_FUTURE_WRITE worked".into()
    })?;
    ensure(old == "future", || {
        format!("future memfd mapping holds {old:?}")
    })?;
    // The mapping made before the seal still writes, to the same object.
    // SAFETY: the page mapped in setup.
    unsafe { std::ptr::copy_nonoverlapping(b"later!".as_ptr(), m.future_map, 6) };
    ensure(pread_str(m.future, 6, 0) == "later!", || {
        "old mapping write lost".into()
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).expect("KIND").clone();
    let result = args.get(2).expect("RESULT_FILE").clone();
    // SAFETY: plain syscalls on our own process; the handler only stores an atomic.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        libc::setsid();
        libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t);
    }
    let fail = |why: String| -> ! {
        let _ = std::fs::write(&result, format!("FAIL: {why}\n"));
        std::process::exit(1);
    };
    let check: Box<dyn Fn() -> Check> = match kind.as_str() {
        "eventfd" => {
            let e = setup_eventfd().unwrap_or_else(|e| fail(e));
            Box::new(move || check_eventfd(&e))
        }
        "signalfd" => {
            let fd = setup_signalfd().unwrap_or_else(|e| fail(e));
            Box::new(move || check_signalfd(fd))
        }
        "timerfd" => {
            let t = setup_timerfd().unwrap_or_else(|e| fail(e));
            Box::new(move || check_timerfd(&t))
        }
        "memfd" => {
            let m = setup_memfd().unwrap_or_else(|e| fail(e));
            Box::new(move || check_memfd(&m))
        }
        other => fail(format!("unknown kind {other}")),
    };
    let _ = std::fs::write(&result, "READY\n");
    while !GOT_USR1.load(Ordering::SeqCst) {
        // SAFETY: pause takes nothing.
        unsafe { libc::pause() };
    }
    match check() {
        Ok(()) => {
            let _ = std::fs::write(&result, "PASS\n");
        }
        Err(why) => fail(why),
    }
}
