//! Socket options of a unix socket, as `sk_opts_entry` keeps them.

use std::os::fd::OwnedFd;

use criu_proto::images::SkOptsEntry;
use nix::errno::Errno;
use nix::sys::socket::{getsockopt, sockopt};
use nix::{getsockopt_impl, setsockopt_impl, sockopt_impl};

sockopt_impl!(
    /// SO_PASSSEC: receive the sender's security context.
    PassSec,
    Both,
    libc::SOL_SOCKET,
    libc::SO_PASSSEC,
    bool
);

sockopt_impl!(
    /// SO_RCVLOWAT: fewest bytes a read waits for.
    RcvLowat,
    Both,
    libc::SOL_SOCKET,
    libc::SO_RCVLOWAT,
    i32
);

sockopt_impl!(
    /// SO_PRIORITY: the protocol priority of sent packets.
    Priority,
    Both,
    libc::SOL_SOCKET,
    libc::SO_PRIORITY,
    i32
);

/// Reads the options of `sock`; the buffer sizes are kept as getsockopt shows them.
pub fn read(sock: &OwnedFd) -> Result<SkOptsEntry, (&'static str, Errno)> {
    let get = |what| move |e| (what, e);
    let snd_tmo = getsockopt(sock, sockopt::SendTimeout).map_err(get("SO_SNDTIMEO"))?;
    let rcv_tmo = getsockopt(sock, sockopt::ReceiveTimeout).map_err(get("SO_RCVTIMEO"))?;
    Ok(SkOptsEntry {
        so_sndbuf: getsockopt(sock, sockopt::SndBuf).map_err(get("SO_SNDBUF"))? as u32,
        so_rcvbuf: getsockopt(sock, sockopt::RcvBuf).map_err(get("SO_RCVBUF"))? as u32,
        so_snd_tmo_sec: snd_tmo.tv_sec() as u64,
        so_snd_tmo_usec: snd_tmo.tv_usec() as u64,
        so_rcv_tmo_sec: rcv_tmo.tv_sec() as u64,
        so_rcv_tmo_usec: rcv_tmo.tv_usec() as u64,
        so_priority: Some(getsockopt(sock, Priority).map_err(get("SO_PRIORITY"))? as u32),
        so_rcvlowat: Some(getsockopt(sock, RcvLowat).map_err(get("SO_RCVLOWAT"))? as u32),
        so_mark: Some(getsockopt(sock, sockopt::Mark).map_err(get("SO_MARK"))?),
        so_passcred: Some(getsockopt(sock, sockopt::PassCred).map_err(get("SO_PASSCRED"))?),
        so_passsec: Some(getsockopt(sock, PassSec).map_err(get("SO_PASSSEC"))?),
        ..Default::default()
    })
}
