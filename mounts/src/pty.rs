//! pty slaves bind-mounted elsewhere (a container's `/dev/console` is a bind of its terminal's
//! `/dev/pts/N`): the slave's node exists only while its pair does, so before the bind the
//! mount helper makes the pair (opening `ptmx` of that devpts instance until it hands out N,
//! as CRIU does) and keeps its master, which the files domain then uses for pty N instead of
//! making another. The helper hands its masters to criu over a socket: the index as data, the
//! master as SCM_RIGHTS.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};
use rustix::fs::{Mode, OFlags};

use crate::MountError;

/// Masters made for bind-mounted slaves, by pty index.
pub type HeldPtys = Vec<(u32, OwnedFd)>;

/// The pty index a bind of `rel` inside a devpts mount names ("3" for /dev/pts/3).
pub fn index_of(rel: &Path) -> Option<u32> {
    rel.to_str()?.trim_start_matches('/').parse().ok()
}

/// Opens `ptmx` of the devpts mount `devpts` until pty `index` comes, unlocked; the others
/// opened on the way are closed again.
pub fn open_index(devpts: &OwnedFd, index: u32) -> Result<OwnedFd, MountError> {
    let fail = |what: &str, e: nix::errno::Errno| {
        MountError::Other(format!("pty {index} (a bind-mounted slave): {what}: {e}"))
    };
    let mut held = Vec::new();
    loop {
        let flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(devpts, "ptmx", flags, Mode::empty()).map_err(|e| {
            fail(
                "cannot open ptmx",
                nix::errno::Errno::from_raw(e.raw_os_error()),
            )
        })?;
        let got = criu_sys::tty::pty_number(&fd).map_err(|e| fail("TIOCGPTN", e))?;
        if got == index {
            criu_sys::tty::set_pty_lock(&fd, false).map_err(|e| fail("cannot unlock it", e))?;
            return Ok(fd);
        }
        if got > index {
            return Err(fail(
                &format!("in use (the next free one is {got})"),
                nix::errno::Errno::EBUSY,
            ));
        }
        held.push(fd);
    }
}

/// The helper's side: each master with its index.
pub fn send(sock: &OwnedFd, held: &HeldPtys) -> Result<(), MountError> {
    for (index, fd) in held {
        let data = index.to_ne_bytes();
        let fds = [fd.as_raw_fd()];
        socket::sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(&data)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .map_err(|e| MountError::Other(format!("cannot hand pty {index} to criu: {e}")))?;
    }
    Ok(())
}

/// criu's side, once the helper exited: every master it sent.
pub fn receive(sock: &OwnedFd) -> Result<HeldPtys, MountError> {
    let mut held = Vec::new();
    loop {
        let mut data = [0u8; 4];
        let mut iov = [IoSliceMut::new(&mut data)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = socket::recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
        );
        let msg = match msg {
            Err(nix::errno::Errno::EAGAIN) => return Ok(held),
            Err(e) => return Err(MountError::Other(format!("ptys of the mount helper: {e}"))),
            Ok(m) => m,
        };
        let fds: Vec<OwnedFd> = msg
            .cmsgs()
            .map_err(|e| MountError::Other(format!("ptys of the mount helper: {e}")))?
            .filter_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => Some(fds),
                _ => None,
            })
            .flatten()
            .filter_map(|fd| criu_sys::fd::own_inherited(fd).ok())
            .collect();
        let bytes = msg.bytes;
        match (bytes, fds.into_iter().next()) {
            (4, Some(fd)) => held.push((u32::from_ne_bytes(data), fd)),
            (0, _) => return Ok(held),
            _ => {
                return Err(MountError::Other(
                    "a pty message of the mount helper is short".into(),
                ))
            }
        }
    }
}
