//! File probes: what /proc/PID/fdinfo shows for eventfd, epoll, signalfd, inotify, locks and
//! mnt_id; timerfd ticks; locked ptys; kcmp; openat2.

use super::{check_ret, missing, own_fd, sys, ProbeError, ProbeResult};
use nix::errno::Errno;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(0))
}

/// The text of /proc/self/fdinfo/FD.
pub fn fdinfo(fd: RawFd) -> Result<String, ProbeError> {
    let path = format!("/proc/self/fdinfo/{fd}");
    std::fs::read_to_string(&path).map_err(|e| sys(format!("read {path}"))(io_errno(e)))
}

/// The value after `key` (e.g. "eventfd-count:") on the first line that starts with it.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
}

/// fdinfo of an eventfd made with count 13 says so.
pub fn fdinfo_eventfd() -> ProbeResult {
    const COUNT: u64 = 13;
    // SAFETY: plain eventfd(2) with integer arguments.
    let fd = own_fd(
        check_ret(unsafe { libc::eventfd(COUNT as u32, 0) } as libc::c_long)
            .map_err(sys("Can't make eventfd"))?,
    );
    let info = fdinfo(fd.as_raw_fd())?;
    let count = field(&info, "eventfd-count:").and_then(|v| u64::from_str_radix(v, 16).ok());
    match count {
        Some(COUNT) => Ok(()),
        other => Err(missing(format!(
            "eventfd counter mismatch (or not met) {other:?} want {COUNT}"
        ))),
    }
}

/// fdinfo of an epoll fd lists the watched pipe as a `tfd:`.
pub fn fdinfo_epoll() -> ProbeResult {
    let (r, _w) = nix::unistd::pipe().map_err(sys("Can't make pipe to watch"))?;
    // SAFETY: plain epoll_create1(2).
    let efd = own_fd(
        check_ret(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) } as libc::c_long)
            .map_err(sys("Can't make epoll fd"))?,
    );
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLOUT) as u32,
        u64: 0,
    };
    // SAFETY: `ev` is a live epoll_event.
    let ret =
        unsafe { libc::epoll_ctl(efd.as_raw_fd(), libc::EPOLL_CTL_ADD, r.as_raw_fd(), &mut ev) };
    check_ret(ret as libc::c_long).map_err(sys("Can't add epoll tfd"))?;
    let info = fdinfo(efd.as_raw_fd())?;
    let tfds: Vec<i32> = info
        .lines()
        .filter_map(|l| l.strip_prefix("tfd:"))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .collect();
    if tfds == [r.as_raw_fd()] {
        Ok(())
    } else {
        Err(missing(format!(
            "epoll TFD mismatch (or not met): {tfds:?}"
        )))
    }
}

/// fdinfo of a signalfd for SIGUSR1 shows that mask.
pub fn fdinfo_signalfd() -> ProbeResult {
    let mut mask = nix::sys::signal::SigSet::empty();
    mask.add(nix::sys::signal::Signal::SIGUSR1);
    let sfd = nix::sys::signalfd::SignalFd::new(&mask).map_err(sys("Can't make signalfd"))?;
    let info = fdinfo(sfd.as_raw_fd())?;
    let shown = field(&info, "sigmask:").and_then(|v| u64::from_str_radix(v, 16).ok());
    let want = 1u64 << (libc::SIGUSR1 - 1);
    if shown == Some(want) {
        Ok(())
    } else {
        Err(missing(format!(
            "signalfd sigmask mismatch (or not met): {shown:?}"
        )))
    }
}

/// fdinfo of an inotify fd lists our watch with its wd.
pub fn fdinfo_inotify() -> ProbeResult {
    // SAFETY: plain inotify_init1(2).
    let ifd = own_fd(
        check_ret(unsafe { libc::inotify_init1(libc::IN_CLOEXEC) } as libc::c_long)
            .map_err(sys("Can't make inotify fd"))?,
    );
    // SAFETY: a NUL-terminated path and an integer mask.
    let wd =
        unsafe { libc::inotify_add_watch(ifd.as_raw_fd(), c"/".as_ptr(), libc::IN_ALL_EVENTS) };
    let wd = check_ret(wd as libc::c_long).map_err(sys("Can't add watch"))?;
    let info = fdinfo(ifd.as_raw_fd())?;
    let wds: Vec<i64> = info
        .lines()
        .filter_map(|l| l.strip_prefix("inotify wd:"))
        .filter_map(|v| i64::from_str_radix(v.split_whitespace().next()?, 16).ok())
        .collect();
    if wds == [wd] {
        Ok(())
    } else {
        Err(missing(format!(
            "inotify WD mismatch (or not met): {wds:?}, want [{wd}]"
        )))
    }
}

/// All four fdinfo formats above.
pub fn fdinfo_ext() -> ProbeResult {
    fdinfo_eventfd()?;
    fdinfo_epoll()?;
    fdinfo_signalfd()?;
    fdinfo_inotify()
}

/// fdinfo has the `mnt_id:` field.
pub fn mnt_id() -> ProbeResult {
    let f = std::fs::File::open("/proc/self/status")
        .map_err(|e| sys("open /proc/self/status")(io_errno(e)))?;
    let info = fdinfo(f.as_raw_fd())?;
    match field(&info, "mnt_id:").map(str::parse::<i64>) {
        Some(Ok(_)) => Ok(()),
        _ => Err(missing("fdinfo doesn't contain the mnt_id field")),
    }
}

/// fdinfo of a flock()ed file shows the `lock:` line.
pub fn fdinfo_lock() -> ProbeResult {
    let f = std::fs::File::open("/proc/locks").map_err(|e| sys("open /proc/locks")(io_errno(e)))?;
    // SAFETY: plain flock(2) on our own fd.
    check_ret(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH) } as libc::c_long)
        .map_err(sys("Can't take a lock"))?;
    let info = fdinfo(f.as_raw_fd())?;
    if info.contains("lock:") {
        Ok(())
    } else {
        Err(missing("fdinfo doesn't contain the lock field"))
    }
}

/// The TFD_IOC_SET_TICKS ioctl exists: with a NULL argument it fails with EFAULT.
pub fn timerfd() -> ProbeResult {
    const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400; // _IOW('T', 0, u64)
                                                          // SAFETY: plain timerfd_create(2).
    let fd = own_fd(
        check_ret(
            unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC) }
                as libc::c_long,
        )
        .map_err(sys("timerfd_create failed"))?,
    );
    // SAFETY: a NULL argument: the kernel must fail to read it (EFAULT) and touches nothing.
    let ret = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            TFD_IOC_SET_TICKS,
            std::ptr::null_mut::<u64>(),
        )
    };
    match check_ret(ret as libc::c_long) {
        Err(Errno::EFAULT) => Ok(()),
        Err(e) => Err(sys("No timerfd support for c/r (TFD_IOC_SET_TICKS)")(e)),
        Ok(_) => Err(missing("TFD_IOC_SET_TICKS accepted a NULL pointer")),
    }
}

/// A locked pty: the peer of a /dev/ptmx master locked with TIOCSPTLCK can't be opened (EIO).
pub fn tty() -> ProbeResult {
    let master = nix::fcntl::open(
        "/dev/ptmx",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(sys("Can't open /dev/ptmx"))?;
    let lock: libc::c_int = 1;
    // SAFETY: TIOCSPTLCK reads one int from a live local.
    check_ret(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &lock) } as libc::c_long)
        .map_err(sys("Can't lock pty master"))?;
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int into a live local.
    check_ret(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) } as libc::c_long)
        .map_err(sys("Can't get the pty number"))?;
    let peer = format!("/dev/pts/{n}");
    match nix::fcntl::open(
        peer.as_str(),
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) {
        Err(Errno::EIO) => Ok(()),
        Err(e) => Err(sys(format!("Unexpected error on locked pty {peer}"))(e)),
        Ok(_) => Err(missing("Managed to open locked pty.")),
    }
}

const KCMP_FILE: libc::c_int = 0;
const KCMP_EPOLL_TFD: libc::c_int = 7;

fn kcmp(
    type_: libc::c_int,
    idx1: libc::c_ulong,
    idx2: libc::c_ulong,
) -> Result<libc::c_long, Errno> {
    let pid = std::process::id();
    // SAFETY: raw kcmp; for KCMP_EPOLL_TFD `idx2` is the address of a live slot.
    check_ret(unsafe { libc::syscall(libc::SYS_kcmp, pid, pid, type_, idx1, idx2) })
}

/// kcmp(KCMP_FILE) says an fd and its dup are the same open file.
pub fn kcmp_file() -> ProbeResult {
    let f = std::fs::File::open("/proc/self/status")
        .map_err(|e| sys("open /proc/self/status")(io_errno(e)))?;
    let dup: OwnedFd = f.try_clone().map_err(|e| sys("dup")(io_errno(e)))?.into();
    match kcmp(
        KCMP_FILE,
        f.as_raw_fd() as libc::c_ulong,
        dup.as_raw_fd() as libc::c_ulong,
    ) {
        Ok(0) => Ok(()),
        Ok(r) => Err(missing(format!(
            "kcmp(KCMP_FILE) says a dup'ed fd differs ({r})"
        ))),
        Err(Errno::ENOSYS) => Err(missing("System call kcmp is not supported")),
        Err(e) => Err(sys("kcmp(KCMP_FILE)")(e)),
    }
}

/// kcmp(KCMP_EPOLL_TFD) finds a file registered in an epoll.
pub fn kcmp_epoll() -> ProbeResult {
    let (r, _w) = nix::unistd::pipe().map_err(sys("Can't create pipe"))?;
    // SAFETY: plain epoll_create1(2).
    let efd = own_fd(
        check_ret(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) } as libc::c_long)
            .map_err(sys("Can't create epoll"))?,
    );
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLOUT) as u32,
        u64: u64::MAX,
    };
    // SAFETY: `ev` is a live epoll_event.
    check_ret(unsafe {
        libc::epoll_ctl(efd.as_raw_fd(), libc::EPOLL_CTL_ADD, r.as_raw_fd(), &mut ev)
    } as libc::c_long)
    .map_err(sys("Can't add event"))?;
    #[repr(C)]
    struct Slot {
        efd: u32,
        tfd: u32,
        toff: u32,
    }
    let slot = Slot {
        efd: efd.as_raw_fd() as u32,
        tfd: r.as_raw_fd() as u32,
        toff: 0,
    };
    match kcmp(
        KCMP_EPOLL_TFD,
        r.as_raw_fd() as libc::c_ulong,
        &slot as *const Slot as libc::c_ulong,
    ) {
        Ok(0) => Ok(()),
        Ok(v) => Err(missing(format!(
            "kcmp(KCMP_EPOLL_TFD) says the target differs ({v})"
        ))),
        Err(e) => Err(missing(format!(
            "kcmp(KCMP_EPOLL_TFD) is not supported: {e}"
        ))),
    }
}

/// openat2() opens "/" with RESOLVE_NO_SYMLINKS.
pub fn openat2() -> ProbeResult {
    const RESOLVE_NO_SYMLINKS: u64 = 0x04;
    // SAFETY: open_how is plain integers; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    how.resolve = RESOLVE_NO_SYMLINKS;
    // SAFETY: raw openat2 with a NUL-terminated path and a live open_how of the stated size.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            &how,
            std::mem::size_of_val(&how),
        )
    };
    match check_ret(ret) {
        Ok(fd) => {
            drop(own_fd(fd));
            Ok(())
        }
        Err(Errno::ENOSYS) => Err(missing("No openat2 syscall support")),
        Err(e) => Err(sys("openat2(\"/\")")(e)),
    }
}
