//! Shut-down directions, socket options and file status flags, set last on each restored
//! unix socket (the dump half is unix/dump/opts.rs).

use std::os::fd::{AsRawFd, OwnedFd};

use criu_proto::images::UnixSkEntry;
use nix::errno::Errno;
use nix::sys::socket::{self, getsockopt, setsockopt, sockopt};
use nix::{getsockopt_impl, setsockopt_impl, sockopt_impl};

use super::{sys, UnixRestoreError};

sockopt_impl!(PassSec, Both, libc::SOL_SOCKET, libc::SO_PASSSEC, bool);
sockopt_impl!(RcvLowat, Both, libc::SOL_SOCKET, libc::SO_RCVLOWAT, i32);
sockopt_impl!(Priority, Both, libc::SOL_SOCKET, libc::SO_PRIORITY, i32);

/// Shut-down directions, options and status flags.
pub(super) fn finish(e: &UnixSkEntry, fd: &OwnedFd) -> Result<(), UnixRestoreError> {
    let how = match e.shutdown.unwrap_or(0) {
        1 => Some(socket::Shutdown::Read),
        2 => Some(socket::Shutdown::Write),
        3 => Some(socket::Shutdown::Both),
        _ => None,
    };
    if let Some(how) = how {
        match socket::shutdown(fd.as_raw_fd(), how) {
            Ok(()) | Err(Errno::ENOTCONN) => {}
            Err(err) => return Err(sys(e.ino, "shutdown")(err)),
        }
    }
    set_options(e, fd)?;
    let settable = e.flags as i32 & (libc::O_NONBLOCK | libc::O_APPEND | libc::O_ASYNC);
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::from_bits_retain(settable)),
    )
    .map_err(sys(e.ino, "F_SETFL"))?;
    Ok(())
}

fn set_options(e: &UnixSkEntry, fd: &OwnedFd) -> Result<(), UnixRestoreError> {
    let o = &e.opts;
    let ino = e.ino;
    // getsockopt shows twice what setsockopt asked for.
    let snd = o.so_sndbuf as usize;
    if snd != 0 && getsockopt(fd, sockopt::SndBuf).map_err(sys(ino, "SO_SNDBUF"))? != snd {
        setsockopt(fd, sockopt::SndBufForce, &(snd / 2)).map_err(sys(ino, "SO_SNDBUFFORCE"))?;
    }
    let rcv = o.so_rcvbuf as usize;
    if rcv != 0 && getsockopt(fd, sockopt::RcvBuf).map_err(sys(ino, "SO_RCVBUF"))? != rcv {
        setsockopt(fd, sockopt::RcvBufForce, &(rcv / 2)).map_err(sys(ino, "SO_RCVBUFFORCE"))?;
    }
    let snd_tmo = (o.so_snd_tmo_sec, o.so_snd_tmo_usec);
    set_timeout(fd, sockopt::SendTimeout, snd_tmo).map_err(sys(ino, "SO_SNDTIMEO"))?;
    let rcv_tmo = (o.so_rcv_tmo_sec, o.so_rcv_tmo_usec);
    set_timeout(fd, sockopt::ReceiveTimeout, rcv_tmo).map_err(sys(ino, "SO_RCVTIMEO"))?;
    if o.so_passcred == Some(true) {
        setsockopt(fd, sockopt::PassCred, &true).map_err(sys(ino, "SO_PASSCRED"))?;
    }
    if o.so_passsec == Some(true) {
        setsockopt(fd, PassSec, &true).map_err(sys(ino, "SO_PASSSEC"))?;
    }
    if let Some(p) = o.so_priority.filter(|&p| p != 0) {
        setsockopt(fd, Priority, &(p as i32)).map_err(sys(ino, "SO_PRIORITY"))?;
    }
    if let Some(m) = o.so_mark.filter(|&m| m != 0) {
        setsockopt(fd, sockopt::Mark, &m).map_err(sys(ino, "SO_MARK"))?;
    }
    if let Some(l) = o.so_rcvlowat.filter(|&l| l > 1) {
        setsockopt(fd, RcvLowat, &(l as i32)).map_err(sys(ino, "SO_RCVLOWAT"))?;
    }
    Ok(())
}

/// A send or receive timeout (seconds, microseconds), set only when the dump has one.
fn set_timeout<O>(fd: &OwnedFd, opt: O, (sec, usec): (u64, u64)) -> nix::Result<()>
where
    O: socket::SetSockOpt<Val = nix::sys::time::TimeVal>,
{
    if sec == 0 && usec == 0 {
        return Ok(());
    }
    let tv = nix::sys::time::TimeVal::new(sec as libc::time_t, usec as libc::suseconds_t);
    setsockopt(fd, opt, &tv)
}
