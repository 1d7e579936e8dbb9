//! signalfd at dump: the signals it takes and its status flags, from fdinfo.

use std::sync::Mutex;

use criu_proto::images::{FdTypes, FdinfoEntry, FileEntry, SignalfdEntry};

use crate::eventfd::dump::{lock, read_anon_fd, AnonFdError};
use crate::table::{fdinfo, FileTable};

pub fn dump_signalfd_fd(
    pid: i32,
    fd: i32,
    table: &Mutex<FileTable>,
) -> Result<FdinfoEntry, AnonFdError> {
    let kind = "signalfd";
    let a = read_anon_fd(pid, fd, kind)?;
    let sigmask = a.info.signalfd_mask.ok_or(AnonFdError::NoState {
        pid,
        fd,
        kind,
        what: "sigmask",
    })?;
    let flags = a.flags;
    let id = lock(table).described(pid, fd, a.st, |id| {
        Ok::<_, AnonFdError>(FileEntry {
            r#type: FdTypes::Signalfd as i32,
            id,
            sgfd: Some(SignalfdEntry {
                id,
                flags,
                fown: crate::fown::dump::read(pid, fd, flags)?,
                sigmask,
            }),
            ..Default::default()
        })
    })?;
    Ok(fdinfo(id, fd, a.fd_flags, FdTypes::Signalfd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn mask_and_flags_are_dumped() {
        let me = std::process::id() as i32;
        let mask = (1u64 << (libc::SIGUSR2 - 1)) | (1u64 << (libc::SIGRTMIN() + 3));
        let s = criu_sys::anon_fds::signalfd(mask).unwrap();
        nix::fcntl::fcntl(
            &s,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        let table = Mutex::new(FileTable::new(Default::default()));
        let e = dump_signalfd_fd(me, s.as_raw_fd(), &table).unwrap();
        assert_eq!(e.flags, 1, "signalfd() made it close-on-exec");
        let t = table.into_inner().unwrap();
        let sg = t.entries()[0].sgfd.unwrap();
        assert_eq!(sg.sigmask, mask);
        assert_eq!(sg.flags, libc::O_RDWR as u32 | libc::O_NONBLOCK as u32);
    }
}
