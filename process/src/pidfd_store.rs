//! CRIU's pidfd store (RPC `pidfd_store_sk`): a unix datagram socket of the client's that
//! keeps, between the dumps of a series, a pidfd of each task the last one dumped, with its
//! pid as the message's data. A later dump drains it first: a task whose pid is not there, or
//! whose pidfd says it exited, is another process that reused the pid, and gets all its
//! memory dumped rather than the pages written since the parent. Then this dump leaves the
//! pidfds of its own tasks there for the next.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket;

#[derive(Debug, thiserror::Error)]
#[error("pidfd store: {what}: {source}")]
pub struct PidfdStoreError {
    what: String,
    source: nix::errno::Errno,
}

fn err(what: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> PidfdStoreError {
    let what = what.into();
    move |source| PidfdStoreError { what, source }
}

/// The store, and the pidfds the last dump left there, by pid.
#[derive(Debug)]
pub struct PidfdStore {
    sock: OwnedFd,
    left: BTreeMap<i32, OwnedFd>,
}

impl PidfdStore {
    /// Takes `sock` (a copy of the client's socket), which must be an AF_UNIX datagram
    /// socket. An unnamed one (the first dump of a series) is bound to an abstract name
    /// made of `name` and connected to itself, with large buffers, as CRIU does.
    pub fn open(sock: OwnedFd, name: &str) -> Result<PidfdStore, PidfdStoreError> {
        let kind = socket::getsockopt(&sock, socket::sockopt::SockType)
            .map_err(err("the socket's type"))?;
        if kind != socket::SockType::Datagram {
            return Err(PidfdStoreError {
                what: format!("the socket is {kind:?}, not a datagram socket"),
                source: nix::errno::Errno::EINVAL,
            });
        }
        let own: socket::UnixAddr =
            socket::getsockname(sock.as_raw_fd()).map_err(err("the socket is not AF_UNIX"))?;
        if own.path().is_none() && own.as_abstract().is_none() {
            // Each buffer at INT_MAX/2 (the kernel doubles it), so the store never blocks.
            let size = (i32::MAX / 2) as usize;
            socket::setsockopt(&sock, socket::sockopt::SndBufForce, &size)
                .map_err(err("SO_SNDBUFFORCE"))?;
            socket::setsockopt(&sock, socket::sockopt::RcvBufForce, &size)
                .map_err(err("SO_RCVBUFFORCE"))?;
            let addr =
                socket::UnixAddr::new_abstract(name.as_bytes()).map_err(err("the store's name"))?;
            socket::bind(sock.as_raw_fd(), &addr).map_err(err(format!("bind to @{name}")))?;
            socket::connect(sock.as_raw_fd(), &addr).map_err(err(format!("connect to @{name}")))?;
        }
        let mut store = PidfdStore {
            sock,
            left: BTreeMap::new(),
        };
        store.drain()?;
        Ok(store)
    }

    /// Reads every (pid, pidfd) message queued, without waiting.
    fn drain(&mut self) -> Result<(), PidfdStoreError> {
        let left =
            criu_sys::scm::recv_tagged_all(&self.sock).map_err(err("read the pidfds left"))?;
        self.left
            .extend(left.into_iter().map(|(pid, fd)| (pid as i32, fd)));
        Ok(())
    }

    /// How many pidfds the last dump left.
    pub fn len(&self) -> usize {
        self.left.len()
    }

    pub fn is_empty(&self) -> bool {
        self.left.is_empty()
    }

    /// Whether `pid` is the process the last dump saw: its pidfd is in the store and says it
    /// has not exited.
    pub fn same_process(&self, pid: i32) -> bool {
        let Some(fd) = self.left.get(&pid) else {
            return false;
        };
        let mut poll = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        // A pidfd polls readable once its process exited.
        matches!(
            nix::poll::poll(&mut poll, nix::poll::PollTimeout::ZERO),
            Ok(0)
        )
    }

    /// Leaves a pidfd of each of `pids` for the next dump (the one already held for a pid
    /// whose process is the same).
    pub fn leave(&self, pids: &[i32]) -> Result<(), PidfdStoreError> {
        for &pid in pids {
            let fresh;
            let fd = match self.left.get(&pid).filter(|_| self.same_process(pid)) {
                Some(fd) => fd,
                None => {
                    fresh =
                        criu_sys::pidfd::open(pid, 0).map_err(err(format!("pidfd of {pid}")))?;
                    &fresh
                }
            };
            criu_sys::scm::send_tagged(&self.sock, pid as u32, fd.as_raw_fd())
                .map_err(err(format!("leave the pidfd of {pid}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram_socket() -> OwnedFd {
        socket::socket(
            socket::AddressFamily::Unix,
            socket::SockType::Datagram,
            socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap()
    }

    #[test]
    fn pidfds_left_by_one_dump_tell_the_next_which_processes_are_the_same() {
        let sock = datagram_socket();
        let copy = sock.try_clone().unwrap();
        let name = format!("criu-rs-pidfd-store-test-{}", std::process::id());
        let first = PidfdStore::open(copy, &name).unwrap();
        assert!(first.is_empty());
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let (me, kid) = (std::process::id() as i32, child.id() as i32);
        first.leave(&[me, kid]).unwrap();
        drop(first);
        child.kill().unwrap();
        child.wait().unwrap();
        // The same socket, already named: the next dump drains what the first left.
        let second = PidfdStore::open(sock, &name).unwrap();
        assert_eq!(second.len(), 2);
        assert!(second.same_process(me));
        assert!(
            !second.same_process(kid),
            "an exited process is not the same"
        );
        assert!(!second.same_process(1), "a pid the last dump did not see");
    }

    #[test]
    fn a_stream_socket_is_refused() {
        let (a, _b) = socket::socketpair(
            socket::AddressFamily::Unix,
            socket::SockType::Stream,
            None,
            socket::SockFlag::empty(),
        )
        .unwrap();
        let e = PidfdStore::open(a, "x").unwrap_err().to_string();
        assert!(e.contains("not a datagram socket"), "{e}");
    }
}
