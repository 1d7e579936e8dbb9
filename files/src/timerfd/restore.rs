//! timerfd at restore: a new one on the same clock, armed with the time that was left (made
//! absolute again when it was set absolute) and its interval, with the expirations not yet
//! read put back (TFD_IOC_SET_TICKS), its status flags set again.

use std::os::fd::AsFd;

use criu_proto::images::{FdTypes, TimerfdEntry};

use crate::eventfd::restore::{failed, set_status_flags};
use crate::registry::{SharedError, SharedFiles};
use criu_proto::dump_images::DumpImages;

pub fn open_all(images: &DumpImages, shared: &mut SharedFiles) -> Result<(), SharedError> {
    for (id, e) in shared.to_make(images, FdTypes::Timerfd, "tfd", |f| f.tfd.as_ref())? {
        let err = failed(id, "timerfd");
        let fd = criu_sys::anon_fds::timerfd(e.clockid as i32).map_err(err("timerfd_create"))?;
        set_status_flags(fd.as_fd(), e.flags).map_err(err("F_SETFL"))?;
        let interval = (e.isec, e.insec);
        let left = (e.vsec, e.vnsec);
        if left == (0, 0) && interval != (0, 0) && e.ticks != 0 {
            // A periodic timer that expired and was not read since: the kernel stopped it
            // until a read moves it on, and shows no time left. It expires again at once
            // here, so that the next read moves it on from now.
            expire_now(fd.as_fd(), interval).map_err(err("timerfd_settime"))?;
        } else {
            let value = first_expiry(e).map_err(err("clock_gettime"))?;
            criu_sys::anon_fds::timerfd_settime(
                fd.as_fd(),
                e.settime_flags as i32,
                value,
                interval,
            )
            .map_err(err("timerfd_settime"))?;
        }
        if e.ticks != 0 {
            criu_sys::anon_fds::timerfd_set_ticks(fd.as_fd(), e.ticks)
                .map_err(err("TFD_IOC_SET_TICKS"))?;
        }
        shared.restore_fown(id, &fd, &e.fown)?;
        shared.add_description(id, fd);
    }
    Ok(())
}

/// Arms the timer to expire in a nanosecond and waits (a little) until it has.
fn expire_now(fd: std::os::fd::BorrowedFd<'_>, interval: (u64, u64)) -> nix::Result<()> {
    criu_sys::anon_fds::timerfd_settime(fd, 0, (0, 1), interval)?;
    let mut ready = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
    nix::poll::poll(&mut ready, nix::poll::PollTimeout::from(100u8))?;
    Ok(())
}

/// The dump keeps the time left; an absolute timer gets it added to the clock's time now.
fn first_expiry(e: &TimerfdEntry) -> nix::Result<(u64, u64)> {
    let left = (e.vsec, e.vnsec);
    let disarmed = left == (0, 0);
    if disarmed || e.settime_flags & libc::TFD_TIMER_ABSTIME as u32 == 0 {
        return Ok(left);
    }
    let clock = nix::time::ClockId::from_raw(e.clockid as i32);
    let now = nix::time::clock_gettime(clock)?;
    let nsec = now.tv_nsec() as u64 + left.1;
    Ok((
        now.tv_sec() as u64 + left.0 + nsec / 1_000_000_000,
        nsec % 1_000_000_000,
    ))
}
