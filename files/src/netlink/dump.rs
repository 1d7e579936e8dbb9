//! Netlink sockets of a dump, described from sock_diag (NETLINK_DIAG, asked in the socket's
//! own network namespace) and from criu's copy of the socket (pidfd_getfd). An unbound socket
//! is not in sock_diag's list: its protocol comes from SO_PROTOCOL.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use criu_proto::images::{FdTypes, NetlinkSkEntry};
use criu_sys::sockopt::get_int;

use super::diag::{self, NetlinkDiag};
use super::protocol_name;
use crate::socket::{Seen, SocketError};
use crate::table::{FileTable, FilesError};

/// The netlink sockets of one dump.
#[derive(Debug, Default)]
pub struct NetlinkSockets {
    /// files.img ids by socket inode.
    dumped: HashMap<u64, u32>,
    /// The kernel's lists by network namespace (nsfs device and inode), asked for when first
    /// needed; the tree is frozen meanwhile.
    diag: HashMap<(u64, u64), HashMap<u32, NetlinkDiag>>,
}

/// The files.img id of netlink socket `ino`, `pid`'s `fd`, of which `sock` is criu's copy.
pub fn socket_id(
    pid: i32,
    fd: i32,
    ino: u64,
    sock: OwnedFd,
    flags: u32,
    table: &std::sync::Mutex<FileTable>,
) -> Result<u32, FilesError> {
    let lock = || table.lock().unwrap_or_else(|e| e.into_inner());
    // Claimed now: a task read in parallel that holds the socket too gets this id.
    let (id, new) = lock().claim_socket(ino, FdTypes::Netlinksk, |t| &mut t.netlink.dumped);
    if !new {
        return Ok(id);
    }
    let mut seen = Seen::new(pid, fd, ino, "netlink");
    let d = diag_of(sock.as_fd(), ino, table).map_err(|w| seen.fail(w))?;
    let fown = crate::fown::dump::read(pid, fd, flags)?;
    let entry = describe(sock.as_fd(), d.as_ref(), &mut seen, flags)?;
    if let Some(e) = lock().entry_mut(id) {
        e.nlsk = Some(NetlinkSkEntry { id, fown, ..entry });
    }
    Ok(id)
}

/// sock_diag's view of socket `ino`; None when it is not listed (not bound).
fn diag_of(
    sock: BorrowedFd<'_>,
    ino: u64,
    table: &std::sync::Mutex<FileTable>,
) -> Result<Option<NetlinkDiag>, String> {
    let lock = || table.lock().unwrap_or_else(|e| e.into_inner());
    let net = crate::sock_diag::netns_key(sock)
        .map_err(|e| format!("its network namespace (SIOCGSKNS): {e}"))?;
    // Not asked under the lock: other tasks' sockets of other kinds go on meanwhile.
    let known = lock().netlink.diag.contains_key(&net);
    if !known {
        let list = crate::sock_diag::in_netns_of(sock, diag::list)
            .map_err(|e| format!("sock_diag (NETLINK_DIAG): {e}"))?;
        lock().netlink.diag.insert(net, list);
    }
    let t = lock();
    Ok(u32::try_from(ino)
        .ok()
        .and_then(|i| t.netlink.diag.get(&net).and_then(|l| l.get(&i)))
        .cloned())
}

/// Whether a message waits to be read.
fn has_data(sock: BorrowedFd<'_>) -> Result<bool, nix::errno::Errno> {
    let mut pfd = [nix::poll::PollFd::new(sock, nix::poll::PollFlags::POLLIN)];
    let n = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::ZERO)?;
    Ok(n > 0
        && pfd[0]
            .revents()
            .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLIN)))
}

fn describe(
    sock: BorrowedFd<'_>,
    d: Option<&NetlinkDiag>,
    seen: &mut Seen,
    flags: u32,
) -> Result<NetlinkSkEntry, SocketError> {
    let protocol = match d {
        Some(d) => u32::from(d.protocol),
        None => get_int(sock, libc::SOL_SOCKET, libc::SO_PROTOCOL)
            .map_err(|e| seen.fail(format!("getsockopt(SO_PROTOCOL): {e}")))?
            as u32,
    };
    seen.desc = format!(" ({})", protocol_name(protocol));
    let kind = get_int(sock, libc::SOL_SOCKET, libc::SO_TYPE)
        .map_err(|e| seen.fail(format!("getsockopt(SO_TYPE): {e}")))?;
    if kind != libc::SOCK_RAW {
        // The images keep no type; netlink treats both types alike, and CRIU makes raw ones.
        tracing::debug!(
            "{}: type {kind} comes back as SOCK_RAW, as CRIU makes it",
            seen.fail("").to_string().trim_end_matches(": ")
        );
    }
    if has_data(sock).map_err(|e| seen.fail(format!("poll: {e}")))? {
        return Err(seen.fail(
            "messages wait to be read, and the images have no place for them (CRIU refuses \
             such a socket too)",
        ));
    }
    let mut entry = NetlinkSkEntry {
        ino: seen.ino as u32,
        protocol,
        flags,
        opts: crate::sk_opts::dump::read(sock, libc::AF_NETLINK)
            .map_err(|(w, e)| seen.fail(format!("getsockopt({w}): {e}")))?,
        ..Default::default()
    };
    let Some(d) = d else {
        return Ok(entry);
    };
    if d.flags & 0x1 != 0 {
        return Err(
            seen.fail("a netlink dump is in progress on it: the rest of its answer would be lost")
        );
    }
    let lost: Vec<&str> = diag::FLAG_NAMES
        .iter()
        .filter(|(bit, _)| *bit != 0x1 && d.flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    if !lost.is_empty() {
        // CRIU's images have no place for them either; the socket works without them.
        tracing::warn!(
            "{}: {} not kept (the images have no place for them, as in CRIU)",
            seen.fail("").to_string().trim_end_matches(": "),
            lost.join(", ")
        );
    }
    if d.groups.len() > 1 {
        return Err(seen.fail(format!(
            "it joined multicast groups above 32 ({:x?}); the images keep only the first 32, \
             as CRIU's do",
            d.groups
        )));
    }
    if !d.groups.is_empty() && d.portid == 0 {
        return Err(seen.fail(
            "it joined multicast groups without being bound to a port id (CRIU refuses such \
             a socket too)",
        ));
    }
    entry.portid = d.portid;
    entry.groups = d.groups.clone();
    entry.state = u32::from(d.state);
    entry.dst_portid = d.dst_portid;
    entry.dst_group = d.dst_group;
    Ok(entry)
}
