//! Sets `sk_opts_entry` on a socket criu made (the dump half is sk_opts/dump.rs).

use std::os::fd::BorrowedFd;

use criu_proto::images::SkOptsEntry;
use criu_sys::sockopt::{attach_filter, get_int, set_bytes, set_int};

use super::OptError;

fn set(
    sock: BorrowedFd<'_>,
    name: &'static str,
    level: i32,
    opt: i32,
    v: i32,
) -> Result<(), OptError> {
    set_int(sock, level, opt, v).map_err(|e| (name, e))
}

/// A buffer size: getsockopt shows twice what setsockopt asked for; the forcing variant
/// passes the system's limit, as the dumped size may be over it.
fn buffer(
    sock: BorrowedFd<'_>,
    name: &'static str,
    opt: i32,
    force: i32,
    size: u32,
) -> Result<(), OptError> {
    if size == 0 || get_int(sock, libc::SOL_SOCKET, opt).map_err(|e| (name, e))? as u32 == size {
        return Ok(());
    }
    set(sock, name, libc::SOL_SOCKET, force, (size / 2) as i32)
}

fn timeout(
    sock: BorrowedFd<'_>,
    name: &'static str,
    opt: i32,
    (sec, usec): (u64, u64),
) -> Result<(), OptError> {
    if sec == 0 && usec == 0 {
        return Ok(());
    }
    let mut tv = sec.to_ne_bytes().to_vec();
    tv.extend_from_slice(&usec.to_ne_bytes());
    set_bytes(sock, libc::SOL_SOCKET, opt, &tv).map_err(|e| (name, e))
}

/// Sets every option the entry has that differs from a new socket's default. SO_REUSEADDR is
/// left to the caller when it needs it on while binding.
pub fn apply(sock: BorrowedFd<'_>, o: &SkOptsEntry) -> Result<(), OptError> {
    let sol = libc::SOL_SOCKET;
    buffer(
        sock,
        "SO_SNDBUF",
        libc::SO_SNDBUF,
        libc::SO_SNDBUFFORCE,
        o.so_sndbuf,
    )?;
    buffer(
        sock,
        "SO_RCVBUF",
        libc::SO_RCVBUF,
        libc::SO_RCVBUFFORCE,
        o.so_rcvbuf,
    )?;
    if let Some(l) = o.so_buf_lock.filter(|&l| l != 0) {
        set(sock, "SO_BUF_LOCK", sol, libc::SO_BUF_LOCK, l as i32)?;
    }
    timeout(
        sock,
        "SO_SNDTIMEO",
        libc::SO_SNDTIMEO,
        (o.so_snd_tmo_sec, o.so_snd_tmo_usec),
    )?;
    timeout(
        sock,
        "SO_RCVTIMEO",
        libc::SO_RCVTIMEO,
        (o.so_rcv_tmo_sec, o.so_rcv_tmo_usec),
    )?;
    if let Some(p) = o.so_priority.filter(|&p| p != 0) {
        set(sock, "SO_PRIORITY", sol, libc::SO_PRIORITY, p as i32)?;
    }
    if let Some(l) = o.so_rcvlowat.filter(|&l| l > 1) {
        set(sock, "SO_RCVLOWAT", sol, libc::SO_RCVLOWAT, l as i32)?;
    }
    if let Some(m) = o.so_mark.filter(|&m| m != 0) {
        set(sock, "SO_MARK", sol, libc::SO_MARK, m as i32)?;
    }
    let flags = [
        (o.so_passcred, "SO_PASSCRED", libc::SO_PASSCRED),
        (o.so_passsec, "SO_PASSSEC", libc::SO_PASSSEC),
        (o.so_dontroute, "SO_DONTROUTE", libc::SO_DONTROUTE),
        (o.so_no_check, "SO_NO_CHECK", libc::SO_NO_CHECK),
        (o.so_broadcast, "SO_BROADCAST", libc::SO_BROADCAST),
        (o.so_keepalive, "SO_KEEPALIVE", libc::SO_KEEPALIVE),
        (
            o.so_oobinline.map(|v| v != 0),
            "SO_OOBINLINE",
            libc::SO_OOBINLINE,
        ),
        (o.so_reuseport, "SO_REUSEPORT", libc::SO_REUSEPORT),
    ];
    for (on, name, opt) in flags {
        if on == Some(true) {
            set(sock, name, sol, opt, 1)?;
        }
    }
    if let Some(secs) = o.so_linger {
        let mut l = 1i32.to_ne_bytes().to_vec();
        l.extend_from_slice(&(secs as i32).to_ne_bytes());
        set_bytes(sock, sol, libc::SO_LINGER, &l).map_err(|e| ("SO_LINGER", e))?;
    }
    // Older images keep the keepalive timers here; newer ones in tcp_opts_entry.
    let keep = [
        (o.tcp_keepcnt, "TCP_KEEPCNT", libc::TCP_KEEPCNT),
        (o.tcp_keepidle, "TCP_KEEPIDLE", libc::TCP_KEEPIDLE),
        (o.tcp_keepintvl, "TCP_KEEPINTVL", libc::TCP_KEEPINTVL),
    ];
    for (v, name, opt) in keep {
        if let Some(v) = v {
            set(sock, name, libc::SOL_TCP, opt, v as i32)?;
        }
    }
    if let Some(dev) = o.so_bound_dev.as_deref().filter(|d| !d.is_empty()) {
        set_bytes(sock, sol, libc::SO_BINDTODEVICE, dev.as_bytes())
            .map_err(|e| ("SO_BINDTODEVICE", e))?;
    }
    if !o.so_filter.is_empty() {
        attach_filter(sock, &o.so_filter).map_err(|e| ("SO_ATTACH_FILTER", e))?;
    }
    Ok(())
}
