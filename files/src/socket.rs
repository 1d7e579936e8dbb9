//! Every socket fd of a dump comes here first and goes to its family's module.

use criu_proto::images::{FdTypes, FdinfoEntry};

use crate::table::{fdinfo, FileTable, FilesError};

/// A socket of a family module that cannot be dumped, named as far as it is known.
#[derive(Debug, thiserror::Error)]
#[error("pid {pid}: fd {fd}: {family} socket:[{ino}]{desc}: {what}")]
pub struct SocketError {
    pub pid: i32,
    pub fd: i32,
    pub ino: u64,
    pub family: &'static str,
    /// Type, protocol and state, once known (" (stream, TCP, LISTEN)").
    pub desc: String,
    pub what: String,
}

/// The socket a family module is describing, as far as it knows it: what its errors name.
pub(crate) struct Seen {
    pub pid: i32,
    pub fd: i32,
    pub ino: u64,
    pub family: &'static str,
    pub desc: String,
}

impl Seen {
    pub fn new(pid: i32, fd: i32, ino: u64, family: &'static str) -> Seen {
        Seen {
            pid,
            fd,
            ino,
            family,
            desc: String::new(),
        }
    }

    pub fn fail(&self, what: impl Into<String>) -> SocketError {
        SocketError {
            pid: self.pid,
            fd: self.fd,
            ino: self.ino,
            family: self.family,
            desc: self.desc.clone(),
            what: what.into(),
        }
    }
}

/// The fdinfo entry of `pid`'s `fd`, a socket with inode `ino`.
pub fn dump_socket_fd(
    pid: i32,
    fd: i32,
    ino: u64,
    table: &std::sync::Mutex<FileTable>,
) -> Result<FdinfoEntry, FilesError> {
    let info = criu_procfs::read_fdinfo(pid, fd).map_err(|source| FilesError::Proc {
        pid,
        what: format!("fdinfo of fd {fd}"),
        source,
    })?;
    let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
    let flags = info.flags & !(libc::O_CLOEXEC as u32);
    let sock = criu_sys::pidfd::take_fd(pid, fd).map_err(|e| FilesError::Other {
        pid,
        what: format!("fd {fd}: socket:[{ino}]: cannot take a copy with pidfd_getfd: {e}"),
    })?;
    let family = criu_sys::sockopt::get_int(
        std::os::fd::AsFd::as_fd(&sock),
        libc::SOL_SOCKET,
        libc::SO_DOMAIN,
    )
    .map_err(|e| FilesError::Other {
        pid,
        what: format!("fd {fd}: socket:[{ino}]: getsockopt(SO_DOMAIN): {e}"),
    })?;
    let what = format!("socket:[{ino}]");
    let ns_id = netns_id(pid, fd, &what, std::os::fd::AsFd::as_fd(&sock), table)?;
    let (id, kind) = match family {
        libc::AF_UNIX => {
            let at = std::os::fd::AsFd::as_fd(&sock);
            let id = crate::unix::dump::socket_id(pid, fd, ino, flags, at, table)?;
            (id, FdTypes::Unixsk)
        }
        libc::AF_INET | libc::AF_INET6 => {
            let id = crate::inet::dump::socket_id(pid, fd, ino, sock, family, flags, table)?;
            (id, FdTypes::Inetsk)
        }
        libc::AF_PACKET => {
            let id = crate::packet::dump::socket_id(pid, fd, ino, sock, flags, table)?;
            (id, FdTypes::Packetsk)
        }
        libc::AF_NETLINK => {
            let id = crate::netlink::dump::socket_id(pid, fd, ino, sock, flags, table)?;
            (id, FdTypes::Netlinksk)
        }
        other => {
            return Err(FilesError::Unsupported {
                pid,
                fd,
                kind: format!("socket:[{ino}] of family {}", family_name(other)),
            })
        }
    };
    if let Some(e) = table
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry_mut(id)
    {
        let slot = match kind {
            FdTypes::Unixsk => e.usk.as_mut().map(|s| &mut s.ns_id),
            FdTypes::Inetsk => e.isk.as_mut().map(|s| &mut s.ns_id),
            FdTypes::Packetsk => e.psk.as_mut().map(|s| &mut s.ns_id),
            FdTypes::Netlinksk => e.nlsk.as_mut().map(|s| &mut s.ns_id),
            _ => None,
        };
        if let Some(slot) = slot {
            *slot = Some(ns_id);
        }
    }
    Ok(fdinfo(id, fd, u32::from(cloexec), kind))
}

/// The id of the network namespace socket `sock` (or a tun file), `what`, lives in: one a
/// task of the tree is in (the restore makes it there), else it is refused.
pub(crate) fn netns_id(
    pid: i32,
    fd: i32,
    what: &str,
    sock: std::os::fd::BorrowedFd<'_>,
    table: &std::sync::Mutex<FileTable>,
) -> Result<u32, FilesError> {
    let (_, net) = crate::sock_diag::netns_key(sock).map_err(|e| FilesError::Other {
        pid,
        what: format!("fd {fd}: {what}: its network namespace (SIOCGSKNS): {e}"),
    })?;
    let t = table.lock().unwrap_or_else(|e| e.into_inner());
    t.netns_ids
        .get(&net)
        .copied()
        .ok_or_else(|| FilesError::Unsupported {
            pid,
            fd,
            kind: format!(
                "{what} of network namespace net:[{net}], which no task of the tree is in"
            ),
        })
}

fn family_name(family: i32) -> String {
    match family {
        libc::AF_NETLINK => "netlink".into(),
        libc::AF_PACKET => "packet".into(),
        libc::AF_VSOCK => "vsock".into(),
        libc::AF_ALG => "alg".into(),
        libc::AF_BLUETOOTH => "bluetooth".into(),
        libc::AF_XDP => "xdp".into(),
        n => format!("{n}"),
    }
}
