//! eventfd at restore: a new one with its counter and semaphore mode, its status flags set
//! again. Also the status-flag step the other anonymous-inode fds share.

use std::os::fd::{AsFd, OwnedFd};

use criu_proto::images::FdTypes;
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::registry::{SharedError, SharedFiles};
use criu_proto::dump_images::DumpImages;

/// EFD_SEMAPHORE as the dump keeps it in the entry's flags (see dump::eventfd).
const EFD_SEMAPHORE: u32 = 1;

pub fn open_all(images: &DumpImages, shared: &mut SharedFiles) -> Result<(), SharedError> {
    for (id, e) in shared.to_make(images, FdTypes::Eventfd, "efd", |f| f.efd.as_ref())? {
        let err = failed(id, "eventfd");
        let mut flags = EfdFlags::EFD_CLOEXEC;
        if e.flags & EFD_SEMAPHORE != 0 {
            flags |= EfdFlags::EFD_SEMAPHORE;
        }
        let efd = EventFd::from_flags(flags).map_err(err("eventfd"))?;
        // The initial value eventfd() takes is 32-bit; a write adds the full 64-bit count.
        if e.counter != 0 {
            efd.write(e.counter).map_err(err("write counter"))?;
        }
        let fd = OwnedFd::from(efd);
        set_status_flags(fd.as_fd(), e.flags).map_err(err("F_SETFL"))?;
        shared.restore_fown(id, &fd, &e.fown)?;
        shared.add_description(id, fd);
    }
    Ok(())
}

/// An error maker for file `id` (`what` names the kind), by step.
pub fn failed(
    id: u32,
    what: &'static str,
) -> impl Fn(&'static str) -> Box<dyn FnOnce(nix::errno::Errno) -> SharedError> {
    move |step| {
        Box::new(move |errno| SharedError::File {
            id,
            path: what.to_string(),
            what: step,
            errno,
        })
    }
}

/// Sets the status flags F_SETFL can change (O_NONBLOCK above all) from a dumped `flags`.
pub fn set_status_flags(fd: std::os::fd::BorrowedFd<'_>, flags: u32) -> nix::Result<()> {
    let settable =
        flags as i32 & (libc::O_NONBLOCK | libc::O_APPEND | libc::O_ASYNC | libc::O_NOATIME);
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::from_bits_retain(settable)),
    )
    .map(drop)
}
