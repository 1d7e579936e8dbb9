//! fds passed over a unix socket, each with a 4-byte tag as the message's data (a pid, a pty
//! index): the pidfd store and the mount helper's pty masters.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};

/// Sends `fd` with `tag` (SCM_RIGHTS).
pub fn send_tagged(sock: &OwnedFd, tag: u32, fd: RawFd) -> Result<(), Errno> {
    let data = tag.to_ne_bytes();
    let fds = [fd];
    socket::sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&data)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map(drop)
}

/// Sends `fds` in one message (SCM_RIGHTS, at most 253), with one byte of data.
pub fn send_fds(sock: &OwnedFd, fds: &[RawFd]) -> Result<(), Errno> {
    socket::sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&[0u8])],
        &[ControlMessage::ScmRights(fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map(drop)
}

/// Every (tag, fd) message queued on `sock`, without waiting; a message without both is
/// EBADMSG.
pub fn recv_tagged_all(sock: &OwnedFd) -> Result<Vec<(u32, OwnedFd)>, Errno> {
    let mut out = Vec::new();
    loop {
        let mut data = [0u8; 4];
        let mut iov = [IoSliceMut::new(&mut data)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = match socket::recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EAGAIN) => return Ok(out),
            other => other?,
        };
        let mut fds = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: fds that came with SCM_RIGHTS are new fds of this process that
                // nothing else owns.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        let bytes = msg.bytes;
        if bytes == 0 && fds.is_empty() {
            return Ok(out);
        }
        match (bytes, fds.into_iter().next()) {
            (4, Some(fd)) => out.push((u32::from_ne_bytes(data), fd)),
            _ => return Err(Errno::EBADMSG),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_fds_come_back_in_order_with_their_tags() {
        let (a, b) = socket::socketpair(
            socket::AddressFamily::Unix,
            socket::SockType::SeqPacket,
            None,
            socket::SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        assert!(recv_tagged_all(&b).unwrap().is_empty());
        let f = std::fs::File::open("/proc/self/status").unwrap();
        send_tagged(&a, 7, f.as_raw_fd()).unwrap();
        send_tagged(&a, 9, f.as_raw_fd()).unwrap();
        let got = recv_tagged_all(&b).unwrap();
        let tags: Vec<u32> = got.iter().map(|(t, _)| *t).collect();
        assert_eq!(tags, [7, 9]);
        socket::send(a.as_raw_fd(), b"xy", MsgFlags::empty()).unwrap();
        assert_eq!(recv_tagged_all(&b).unwrap_err(), Errno::EBADMSG);
    }
}
