//! Anonymous-inode fds whose creation takes raw values the safe wrappers do not cover: a
//! signalfd from a raw 64-bit mask (real-time signals included), a timerfd of any clock with
//! its time set from raw numbers, and the timerfd expiry count (TFD_IOC_SET_TICKS).

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;

/// `_IOW('T', 0, u64)` from linux/timerfd.h: sets the expirations a read will return.
const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;

/// A new close-on-exec signalfd for the signals whose bits (bit n-1 for signal n) are set.
pub fn signalfd(mask: u64) -> Result<OwnedFd, Errno> {
    // The kernel's sigset is 8 bytes on x86_64: the mask itself.
    let set = mask;
    // SAFETY: signalfd4 reads 8 bytes at `&set`, a live u64; -1 asks for a new fd.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1 as libc::c_long,
            &set as *const u64,
            std::mem::size_of::<u64>() as libc::c_ulong,
            libc::SFD_CLOEXEC as libc::c_long,
        )
    };
    crate::ret::new_fd(fd)
}

/// A new close-on-exec timerfd on `clockid`, disarmed.
pub fn timerfd(clockid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: timerfd_create takes only integers.
    let fd = unsafe { libc::timerfd_create(clockid, libc::TFD_CLOEXEC) };
    crate::ret::new_fd(fd)
}

/// A time as (seconds, nanoseconds).
pub type Time = (u64, u64);

/// timerfd_settime: first expiry `value` (absolute if `flags` has TFD_TIMER_ABSTIME, zero to
/// disarm), then every `interval`.
pub fn timerfd_settime(
    fd: BorrowedFd<'_>,
    flags: i32,
    value: Time,
    interval: Time,
) -> Result<(), Errno> {
    let spec = |(s, ns): Time| libc::timespec {
        tv_sec: s as libc::time_t,
        tv_nsec: ns as libc::c_long,
    };
    let new = libc::itimerspec {
        it_interval: spec(interval),
        it_value: spec(value),
    };
    // SAFETY: `new` is a live itimerspec read by the kernel; no old value is asked for.
    let r = unsafe { libc::timerfd_settime(fd.as_raw_fd(), flags, &new, std::ptr::null_mut()) };
    crate::ret::check(r)?;
    Ok(())
}

/// Sets the number of expirations not yet read from timerfd `fd`.
pub fn timerfd_set_ticks(fd: BorrowedFd<'_>, ticks: u64) -> Result<(), Errno> {
    // SAFETY: the ioctl reads one u64 at `&ticks`, a live local.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TFD_IOC_SET_TICKS, &ticks as *const u64) };
    crate::ret::check(r)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn signalfd_takes_real_time_signals_in_its_mask() {
        let mask = (1u64 << (libc::SIGUSR1 - 1)) | (1u64 << (libc::SIGRTMIN() + 1));
        let fd = signalfd(mask).unwrap();
        let info =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
        assert!(info.contains(&format!("sigmask:\t{mask:016x}")), "{info}");
    }

    #[test]
    fn timerfd_ticks_are_read_back() {
        let fd = timerfd(libc::CLOCK_MONOTONIC).unwrap();
        timerfd_settime(fd.as_fd(), 0, (100, 0), (1, 0)).unwrap();
        timerfd_set_ticks(fd.as_fd(), 7).unwrap();
        let mut buf = [0u8; 8];
        nix::unistd::read(&fd, &mut buf).unwrap();
        assert_eq!(u64::from_ne_bytes(buf), 7);
    }
}
