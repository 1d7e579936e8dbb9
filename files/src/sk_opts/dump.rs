//! Reads `sk_opts_entry` as CRIU fills it (the restore half is sk_opts/restore.rs).

use std::os::fd::BorrowedFd;

use criu_proto::images::SkOptsEntry;
use criu_sys::sockopt::{get_bytes, get_filter, get_int};

use super::OptError;

fn int(sock: BorrowedFd<'_>, name: &'static str, opt: i32) -> Result<i32, OptError> {
    get_int(sock, libc::SOL_SOCKET, opt).map_err(|e| (name, e))
}

fn flag(sock: BorrowedFd<'_>, name: &'static str, opt: i32) -> Result<Option<bool>, OptError> {
    Ok(Some(int(sock, name, opt)? != 0))
}

/// A timeout option as (seconds, microseconds).
fn timeout(sock: BorrowedFd<'_>, name: &'static str, opt: i32) -> Result<(u64, u64), OptError> {
    let mut buf = [0u8; 16];
    get_bytes(sock, libc::SOL_SOCKET, opt, &mut buf).map_err(|e| (name, e))?;
    let half = |i: usize| u64::from_ne_bytes(buf[i..i + 8].try_into().unwrap_or_default());
    Ok((half(0), half(8)))
}

/// The options of `sock`, a socket of `family`; buffer sizes as getsockopt shows them.
pub fn read(sock: BorrowedFd<'_>, family: i32) -> Result<SkOptsEntry, OptError> {
    let (snd_sec, snd_usec) = timeout(sock, "SO_SNDTIMEO", libc::SO_SNDTIMEO)?;
    let (rcv_sec, rcv_usec) = timeout(sock, "SO_RCVTIMEO", libc::SO_RCVTIMEO)?;
    let mark = int(sock, "SO_MARK", libc::SO_MARK)? as u32;
    let mut linger = [0u8; 8];
    get_bytes(sock, libc::SOL_SOCKET, libc::SO_LINGER, &mut linger)
        .map_err(|e| ("SO_LINGER", e))?;
    let linger_on = i32::from_ne_bytes(linger[..4].try_into().unwrap_or_default()) != 0;
    let linger_secs = i32::from_ne_bytes(linger[4..].try_into().unwrap_or_default()) as u32;
    let mut dev = [0u8; libc::IFNAMSIZ];
    let dev_len = get_bytes(sock, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, &mut dev)
        .map_err(|e| ("SO_BINDTODEVICE", e))?;
    let dev_name = dev[..dev_len].split(|&b| b == 0).next().unwrap_or_default();
    let passes = family == libc::AF_UNIX || family == libc::AF_NETLINK;
    Ok(SkOptsEntry {
        so_sndbuf: int(sock, "SO_SNDBUF", libc::SO_SNDBUF)? as u32,
        so_rcvbuf: int(sock, "SO_RCVBUF", libc::SO_RCVBUF)? as u32,
        so_snd_tmo_sec: snd_sec,
        so_snd_tmo_usec: snd_usec,
        so_rcv_tmo_sec: rcv_sec,
        so_rcv_tmo_usec: rcv_usec,
        reuseaddr: flag(sock, "SO_REUSEADDR", libc::SO_REUSEADDR)?,
        so_priority: Some(int(sock, "SO_PRIORITY", libc::SO_PRIORITY)? as u32),
        so_rcvlowat: Some(int(sock, "SO_RCVLOWAT", libc::SO_RCVLOWAT)? as u32),
        so_mark: (mark != 0).then_some(mark),
        so_passcred: if passes {
            flag(sock, "SO_PASSCRED", libc::SO_PASSCRED)?
        } else {
            None
        },
        so_passsec: if passes {
            flag(sock, "SO_PASSSEC", libc::SO_PASSSEC)?
        } else {
            None
        },
        so_dontroute: flag(sock, "SO_DONTROUTE", libc::SO_DONTROUTE)?,
        so_no_check: flag(sock, "SO_NO_CHECK", libc::SO_NO_CHECK)?,
        so_bound_dev: (!dev_name.is_empty())
            .then(|| String::from_utf8_lossy(dev_name).into_owned()),
        so_filter: get_filter(sock).map_err(|e| ("SO_GET_FILTER", e))?,
        so_reuseport: flag(sock, "SO_REUSEPORT", libc::SO_REUSEPORT)?,
        so_broadcast: flag(sock, "SO_BROADCAST", libc::SO_BROADCAST)?,
        so_keepalive: flag(sock, "SO_KEEPALIVE", libc::SO_KEEPALIVE)?,
        so_oobinline: Some(int(sock, "SO_OOBINLINE", libc::SO_OOBINLINE)? as u32),
        so_linger: linger_on.then_some(linger_secs),
        so_buf_lock: Some(int(sock, "SO_BUF_LOCK", libc::SO_BUF_LOCK)? as u32),
        ..Default::default()
    })
}
