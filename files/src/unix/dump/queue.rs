//! The messages waiting in a unix socket's receive queue, copied without taking them: peeking
//! with SO_PEEK_OFF set makes each peek start where the last one ended, so datagrams keep their
//! boundaries. The owner's own peek offset is put back afterwards.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{getsockopt, recvmsg, setsockopt, ControlMessageOwned, MsgFlags, UnixAddr};
use nix::{getsockopt_impl, setsockopt_impl, sockopt_impl};

sockopt_impl!(
    /// SO_PEEK_OFF: where the next MSG_PEEK starts; -1 when unused.
    PeekOff,
    Both,
    libc::SOL_SOCKET,
    libc::SO_PEEK_OFF,
    i32
);

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{what}: {errno}")]
    Sys { what: &'static str, errno: Errno },
    #[error("the control data of a queued message does not fit")]
    Truncated,
}

fn sys(what: &'static str) -> impl Fn(Errno) -> QueueError {
    move |errno| QueueError::Sys { what, errno }
}

/// Stream data is taken in pieces of this size.
const STREAM_CHUNK: usize = 64 * 1024;

/// One queued message (or run of stream bytes) and the fds it carries (SCM_RIGHTS), which
/// peeking gave criu copies of: the caller closes them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Packet {
    pub bytes: Vec<u8>,
    pub fds: Vec<RawFd>,
}

/// The queued messages (datagram/seqpacket) or byte runs (stream) of `sock`, in order.
pub fn peek_queue(sock: &OwnedFd, stream: bool) -> Result<Vec<Packet>, QueueError> {
    let saved = getsockopt(sock, PeekOff).map_err(sys("getsockopt(SO_PEEK_OFF)"))?;
    setsockopt(sock, PeekOff, &0).map_err(sys("setsockopt(SO_PEEK_OFF)"))?;
    let taken = if stream {
        peek_stream(sock)
    } else {
        peek_messages(sock)
    };
    setsockopt(sock, PeekOff, &saved).map_err(sys("setsockopt(SO_PEEK_OFF) back"))?;
    taken
}

fn peek_stream(sock: &OwnedFd) -> Result<Vec<Packet>, QueueError> {
    let mut out = Vec::new();
    loop {
        let mut bytes = vec![0u8; STREAM_CHUNK];
        // A peek stops after a message that carries fds, so they stay with their bytes.
        match peek(sock, &mut bytes, MsgFlags::empty())? {
            Some((n, fds)) if n > 0 => {
                bytes.truncate(n);
                out.push(Packet { bytes, fds });
            }
            Some((_, fds)) => {
                close_all(&fds);
                return Ok(out);
            }
            None => return Ok(out),
        }
    }
}

fn peek_messages(sock: &OwnedFd) -> Result<Vec<Packet>, QueueError> {
    let mut out = Vec::new();
    loop {
        // The first peek copies nothing and tells the whole length of the next message.
        let len = match peek(sock, &mut [], MsgFlags::MSG_TRUNC)? {
            // Nothing left; a zero-length datagram cannot be told from an empty queue.
            None => return Ok(out),
            Some((n, fds)) => {
                close_all(&fds);
                if n == 0 {
                    return Ok(out);
                }
                n
            }
        };
        let mut bytes = vec![0u8; len];
        let (n, fds) = peek(sock, &mut bytes, MsgFlags::empty())?.unwrap_or_default();
        bytes.truncate(n);
        out.push(Packet { bytes, fds });
    }
}

pub fn close_all(fds: &[RawFd]) {
    for &fd in fds {
        let _ = nix::unistd::close(fd);
    }
}

/// One MSG_PEEK: the length and the fds the message carries; `None` when the queue is empty.
fn peek(
    sock: &OwnedFd,
    buf: &mut [u8],
    extra: MsgFlags,
) -> Result<Option<(usize, Vec<RawFd>)>, QueueError> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 253], libc::ucred);
    let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC | extra;
    let msg = match recvmsg::<UnixAddr>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags) {
        Ok(m) => m,
        Err(Errno::EAGAIN) => return Ok(None),
        Err(errno) => {
            return Err(QueueError::Sys {
                what: "recvmsg(MSG_PEEK)",
                errno,
            })
        }
    };
    let mut fds = Vec::new();
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(got) = c {
                fds.extend(got);
            }
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        close_all(&fds);
        return Err(QueueError::Truncated);
    }
    Ok(Some((msg.bytes, fds)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{send, socketpair, AddressFamily, SockFlag, SockType};

    fn pair(kind: SockType) -> (OwnedFd, OwnedFd) {
        socketpair(AddressFamily::Unix, kind, None, SockFlag::SOCK_CLOEXEC).unwrap()
    }

    #[test]
    fn datagrams_keep_their_boundaries_and_stay_queued() {
        for kind in [SockType::Datagram, SockType::SeqPacket] {
            let (a, b) = pair(kind);
            for m in [&b"one"[..], b"second", &[7u8; 5000]] {
                send(a.as_raw_fd(), m, MsgFlags::empty()).unwrap();
            }
            setsockopt(&b, PeekOff, &-1).unwrap();
            let q = peek_queue(&b, false).unwrap();
            let bytes: Vec<Vec<u8>> = q.into_iter().map(|p| p.bytes).collect();
            assert_eq!(
                bytes,
                vec![b"one".to_vec(), b"second".to_vec(), vec![7u8; 5000]]
            );
            assert_eq!(getsockopt(&b, PeekOff).unwrap(), -1);
            let mut buf = [0u8; 16];
            let n = nix::sys::socket::recv(b.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
            assert_eq!(&buf[..n], b"one");
        }
    }

    #[test]
    fn stream_bytes_are_all_copied() {
        let (a, b) = pair(SockType::Stream);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut off = 0;
                while off < 100_000 {
                    off += send(a.as_raw_fd(), &data[off..100_000], MsgFlags::empty()).unwrap();
                }
            });
        });
        let q = peek_queue(&b, true).unwrap();
        let bytes: Vec<u8> = q.into_iter().flat_map(|p| p.bytes).collect();
        assert_eq!(bytes, data[..100_000].to_vec());
        assert!(peek_queue(&a, true).unwrap().is_empty());
    }

    #[test]
    fn queued_fds_come_with_their_message() {
        let (a, b) = pair(SockType::Datagram);
        send(a.as_raw_fd(), b"plain", MsgFlags::empty()).unwrap();
        let fds = [a.as_raw_fd()];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        nix::sys::socket::sendmsg::<UnixAddr>(
            a.as_raw_fd(),
            &[std::io::IoSlice::new(b"x")],
            &cmsg,
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let q = peek_queue(&b, false).unwrap();
        assert_eq!(q.len(), 2);
        assert!(q[0].fds.is_empty());
        assert_eq!(q[1].fds.len(), 1);
        assert_eq!(q[1].bytes, b"x");
        let same = criu_sys::kcmp::same_file(
            std::process::id() as i32,
            q[1].fds[0],
            std::process::id() as i32,
            a.as_raw_fd(),
        );
        close_all(&q[1].fds);
        assert_eq!(same, Ok(true));
    }
}
