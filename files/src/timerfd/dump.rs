//! timerfd at dump: clock, settime flags, time left and interval, and expirations not yet
//! read, from fdinfo.

use std::sync::Mutex;

use criu_proto::images::{FdTypes, FdinfoEntry, FileEntry, TimerfdEntry};

use crate::eventfd::dump::{lock, read_anon_fd, AnonFdError};
use crate::table::{fdinfo, FileTable};

pub fn dump_timerfd_fd(
    pid: i32,
    fd: i32,
    table: &Mutex<FileTable>,
) -> Result<FdinfoEntry, AnonFdError> {
    let kind = "timerfd";
    let a = read_anon_fd(pid, fd, kind)?;
    let t = a.info.timerfd.clone().ok_or(AnonFdError::NoState {
        pid,
        fd,
        kind,
        what: "clockid/ticks/it_value",
    })?;
    let flags = a.flags;
    let id = lock(table).described(pid, fd, a.st, |id| {
        Ok::<_, AnonFdError>(FileEntry {
            r#type: FdTypes::Timerfd as i32,
            id,
            tfd: Some(TimerfdEntry {
                id,
                flags,
                fown: crate::fown::dump::read(pid, fd, flags)?,
                clockid: t.clockid as u32,
                ticks: t.ticks,
                settime_flags: t.settime_flags,
                vsec: t.it_value.0,
                vnsec: t.it_value.1,
                isec: t.it_interval.0,
                insec: t.it_interval.1,
            }),
            ..Default::default()
        })
    })?;
    Ok(fdinfo(id, fd, a.fd_flags, FdTypes::Timerfd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd};

    #[test]
    fn clock_times_and_ticks_are_dumped() {
        let me = std::process::id() as i32;
        let tfd = criu_sys::anon_fds::timerfd(libc::CLOCK_BOOTTIME).unwrap();
        criu_sys::anon_fds::timerfd_settime(tfd.as_fd(), 0, (50, 0), (2, 500)).unwrap();
        criu_sys::anon_fds::timerfd_set_ticks(tfd.as_fd(), 3).unwrap();
        let table = Mutex::new(FileTable::new(Default::default()));
        dump_timerfd_fd(me, tfd.as_raw_fd(), &table).unwrap();
        let t = table.into_inner().unwrap();
        let e = t.entries()[0].tfd.unwrap();
        assert_eq!(e.clockid, libc::CLOCK_BOOTTIME as u32);
        assert_eq!(e.ticks, 3);
        assert_eq!((e.isec, e.insec), (2, 500));
        assert!((48..=50).contains(&e.vsec), "{} s left", e.vsec);
    }
}
