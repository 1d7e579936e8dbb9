//! pty slaves bind-mounted elsewhere (a container's `/dev/console` is a bind of its terminal's
//! `/dev/pts/N`): the slave's node exists only while its pair does, so before the bind the
//! mount helper makes the pair (opening `ptmx` of that devpts instance until it hands out N,
//! as CRIU does) and keeps its master, which the files domain then uses for pty N instead of
//! making another. The helper hands its masters to criu over a socket: the index as data, the
//! master as SCM_RIGHTS.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

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
        criu_sys::scm::send_tagged(sock, *index, fd.as_raw_fd())
            .map_err(|e| MountError::Other(format!("cannot hand pty {index} to criu: {e}")))?;
    }
    Ok(())
}

/// criu's side, once the helper exited: every master it sent.
pub fn receive(sock: &OwnedFd) -> Result<HeldPtys, MountError> {
    criu_sys::scm::recv_tagged_all(sock)
        .map_err(|e| MountError::Other(format!("ptys of the mount helper: {e}")))
}
