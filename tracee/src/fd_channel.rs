//! How a task being rebuilt takes the fds criu made for it. A task in criu's user namespace
//! takes each one itself with pidfd_getfd through a pidfd of criu (one injected call). A task
//! of another user namespace may not (pidfd_getfd needs ptrace rights over criu, which
//! capabilities inside a child namespace do not give): criu sends each fd over a socket pair
//! the task made, and the task receives it (one injected recvmsg). A task in another pid
//! namespace cannot name criu by pid either: its pidfd of criu comes over such a socket once.

use std::os::fd::{OwnedFd, RawFd};

use crate::remote::{words, Remote, ARG_AT};
use crate::{Result, TraceeError};

/// A way into the task for criu's fds; `close` it when done.
pub enum FdChannel {
    /// The task's pidfd of criu.
    Pidfd(u64),
    /// The task's receiving end, and criu's copy of the sending end.
    Socket { remote: u64, local: OwnedFd },
}

fn unexpected(r: &Remote, what: String) -> TraceeError {
    TraceeError::Unexpected {
        tid: r.inj.tracee().tid(),
        what,
    }
}

/// Offsets in the argument area for one received message.
const DATA: usize = 64;
const IOV: usize = 128;
const CONTROL: usize = 192;
const MSG: usize = 256;
/// cmsghdr (len, level, type) then room for one fd.
const CONTROL_LEN: u64 = 24;

impl FdChannel {
    /// Opens the channel into the task `host` (as criu sees it), driven through `r`; the fds
    /// the channel itself uses in the task are moved to `above` or higher.
    pub fn open(r: &mut Remote, host: i32, above: u64) -> Result<FdChannel> {
        let me = std::process::id() as i32;
        let same = |kind: &str| {
            let link = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok();
            link(host).is_some() && link(host) == link(me)
        };
        if same("user") && same("pid") {
            let p = r.call("pidfd_open", libc::SYS_pidfd_open, &[me as u64, 0])? as u64;
            return Ok(FdChannel::Pidfd(move_above(r, p, above)?));
        }
        let (a, b) = socket_pair(r)?;
        let local = criu_sys::pidfd::take_fd(host, a as RawFd)
            .map_err(|e| unexpected(r, format!("pidfd_getfd of its socket: {e}")))?;
        r.close(a)?;
        let remote = move_above(r, b, above)?;
        let channel = FdChannel::Socket { remote, local };
        if !same("user") {
            return Ok(channel);
        }
        // Same user namespace, another pid namespace: a pidfd of criu over the socket, then
        // the cheaper pidfd_getfd for every fd.
        let mine = criu_sys::pidfd::open(me, 0)
            .map_err(|e| unexpected(r, format!("pidfd_open of criu: {e}")))?;
        let p = channel.send(r, std::os::fd::AsRawFd::as_raw_fd(&mine))?;
        channel.close(r)?;
        Ok(FdChannel::Pidfd(move_above(r, p, above)?))
    }

    /// Gives the task a copy of criu's `fd` (the same open file description); returns its
    /// number in the task (close-on-exec).
    pub fn take(&self, r: &mut Remote, fd: RawFd) -> Result<u64> {
        match self {
            FdChannel::Pidfd(p) => {
                Ok(r.call("pidfd_getfd", libc::SYS_pidfd_getfd, &[*p, fd as u64, 0])? as u64)
            }
            FdChannel::Socket { .. } => self.send(r, fd),
        }
    }

    /// Sends criu's `fd`; the task receives it (an injected recvmsg).
    fn send(&self, r: &mut Remote, fd: RawFd) -> Result<u64> {
        let FdChannel::Socket { remote, local } = self else {
            return Err(unexpected(r, "sending over a pidfd channel".into()));
        };
        criu_sys::pidfd::send_fd(local, fd).map_err(|e| unexpected(r, format!("sendmsg: {e}")))?;
        let base = r.inj.data_addr() + ARG_AT as u64;
        let at = |off: usize| base + off as u64;
        let mut block = vec![0u8; MSG + 56];
        block[IOV..IOV + 16].copy_from_slice(&words(&[at(DATA), 1]));
        let hdr = words(&[0, 0, at(IOV), 1, at(CONTROL), CONTROL_LEN, 0]);
        block[MSG..MSG + hdr.len()].copy_from_slice(&hdr);
        r.inj.write_data(ARG_AT, &block)?;
        r.call(
            "recvmsg",
            libc::SYS_recvmsg,
            &[*remote, at(MSG), libc::MSG_CMSG_CLOEXEC as u64],
        )?;
        let mut cmsg = [0u8; 20];
        r.inj.read_data(ARG_AT + CONTROL, &mut cmsg)?;
        let int = |i: usize| i32::from_le_bytes([cmsg[i], cmsg[i + 1], cmsg[i + 2], cmsg[i + 3]]);
        if int(12) != libc::SCM_RIGHTS {
            return Err(unexpected(r, "recvmsg brought no fd".into()));
        }
        Ok(int(16) as u32 as u64)
    }

    /// Closes the task's end (criu's closes when dropped).
    pub fn close(self, r: &mut Remote) -> Result<()> {
        match self {
            FdChannel::Pidfd(p) => r.close(p),
            FdChannel::Socket { remote, .. } => r.close(remote),
        }
    }
}

/// A unix datagram socket pair made in the task: its two fds.
fn socket_pair(r: &mut Remote) -> Result<(u64, u64)> {
    let at = r.arg(&[0u8; 8])?;
    let flags = (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as u64;
    r.call(
        "socketpair",
        libc::SYS_socketpair,
        &[libc::AF_UNIX as u64, flags, 0, at],
    )?;
    let mut pair = [0u8; 8];
    r.inj.read_data(ARG_AT, &mut pair)?;
    let a = u32::from_le_bytes([pair[0], pair[1], pair[2], pair[3]]);
    let b = u32::from_le_bytes([pair[4], pair[5], pair[6], pair[7]]);
    Ok((u64::from(a), u64::from(b)))
}

/// Moves the task's fd `fd` to the lowest free number at or above `above` (close-on-exec).
fn move_above(r: &mut Remote, fd: u64, above: u64) -> Result<u64> {
    let high = r.call(
        "fcntl(F_DUPFD_CLOEXEC)",
        libc::SYS_fcntl,
        &[fd, libc::F_DUPFD_CLOEXEC as u64, above],
    )? as u64;
    r.close(fd)?;
    Ok(high)
}

/// The most fds one SCM_RIGHTS message carries (the kernel's SCM_MAX_FD).
pub const BATCH_MAX: usize = 253;

/// Many of criu's fds into the task at once: a socket pair made in the task, whose end the
/// task keeps above every fd it will use. Each message carries up to [`BATCH_MAX`] fds and
/// one injected recvmsg takes them all; the kernel gives them the lowest free numbers, in
/// order, so a batch sent in fd order lands on the numbers it had (see `files::install`).
pub struct FdBatch {
    remote: u64,
    local: OwnedFd,
}

impl FdBatch {
    /// Makes the pair in the task `host` (as criu sees it), its end at `above` or higher.
    pub fn open(r: &mut Remote, host: i32, above: u64) -> Result<FdBatch> {
        let (a, b) = socket_pair(r)?;
        let local = criu_sys::pidfd::take_fd(host, a as RawFd)
            .map_err(|e| unexpected(r, format!("pidfd_getfd of its socket: {e}")))?;
        r.close(a)?;
        let remote = move_above(r, b, above)?;
        Ok(FdBatch { remote, local })
    }

    /// Gives the task copies of `fds` (not close-on-exec); returns their numbers there, in
    /// order.
    pub fn receive(&self, r: &mut Remote, fds: &[RawFd]) -> Result<Vec<u64>> {
        let mut out = Vec::with_capacity(fds.len());
        for chunk in fds.chunks(BATCH_MAX) {
            criu_sys::scm::send_fds(&self.local, chunk)
                .map_err(|e| unexpected(r, format!("sendmsg of {} fds: {e}", chunk.len())))?;
            // cmsghdr (len, level, type) then the fds, 8-byte aligned.
            let control_len = (16 + 4 * chunk.len() as u64).next_multiple_of(8);
            let base = r.inj.data_addr() + ARG_AT as u64;
            let at = |off: usize| base + off as u64;
            let control = MSG + 64;
            let mut block = vec![0u8; control + control_len as usize];
            block[IOV..IOV + 16].copy_from_slice(&words(&[at(DATA), 1]));
            let hdr = words(&[0, 0, at(IOV), 1, at(control), control_len, 0]);
            block[MSG..MSG + hdr.len()].copy_from_slice(&hdr);
            r.inj.write_data(ARG_AT, &block)?;
            r.call("recvmsg", libc::SYS_recvmsg, &[self.remote, at(MSG), 0])?;
            let mut got = vec![0u8; control + control_len as usize];
            r.inj.read_data(ARG_AT, &mut got)?;
            let int = |i: usize| i32::from_le_bytes([got[i], got[i + 1], got[i + 2], got[i + 3]]);
            let truncated = int(MSG + 48) & libc::MSG_CTRUNC != 0;
            let len = u64::from_le_bytes(got[control..control + 8].try_into().unwrap_or_default());
            if truncated
                || int(control + 12) != libc::SCM_RIGHTS
                || len != 16 + 4 * chunk.len() as u64
            {
                return Err(unexpected(
                    r,
                    format!(
                        "recvmsg of {} fds brought {len} bytes of control (truncated: {truncated})",
                        chunk.len()
                    ),
                ));
            }
            out.extend((0..chunk.len()).map(|i| int(control + 16 + 4 * i) as u32 as u64));
        }
        Ok(out)
    }

    /// Closes the task's end (criu's closes when dropped).
    pub fn close(self, r: &mut Remote) -> Result<()> {
        r.close(self.remote)
    }
}
