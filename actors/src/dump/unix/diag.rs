//! The kernel's list of unix sockets, asked once per dump through sock_diag (NETLINK_SOCK_DIAG):
//! for each socket its type, state, name, file, peer, pending connections, queue lengths and
//! shut-down directions.

use std::collections::HashMap;
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

/// One unix socket as sock_diag shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnixDiag {
    pub ino: u32,
    /// SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET.
    pub kind: u8,
    /// TCP_ESTABLISHED, TCP_CLOSE or TCP_LISTEN, as unix sockets use them.
    pub state: u8,
    /// Bound address: a path, or an abstract name starting with a NUL byte; empty if unbound.
    pub name: Vec<u8>,
    /// (inode, device) of the socket file of a path-bound socket.
    pub vfs: Option<(u32, u32)>,
    /// Inode of the peer; 0 if none (or the peer is not accepted yet).
    pub peer: u32,
    /// For a listener: inodes of the clients whose connections wait in accept().
    pub icons: Vec<u32>,
    /// Not listening: bytes waiting to be read (the first message only for datagrams) and bytes
    /// sent but not read yet. Listening: pending connections and the backlog.
    pub rqlen: (u32, u32),
    /// RCV_SHUTDOWN (1) and SEND_SHUTDOWN (2).
    pub shutdown: u8,
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;

const UDIAG_SHOW_NAME: u32 = 0x01;
const UDIAG_SHOW_VFS: u32 = 0x02;
const UDIAG_SHOW_PEER: u32 = 0x04;
const UDIAG_SHOW_ICONS: u32 = 0x08;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UDIAG_SHOW_MEMINFO: u32 = 0x20;
const UDIAG_SHOW_SHUTDOWN: u32 = 0x80;

const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;

const NLMSG_HDRLEN: usize = 16;
/// struct unix_diag_msg.
const DIAG_MSG_LEN: usize = 16;

/// Every unix socket of criu's network namespace, by inode.
pub fn list() -> std::io::Result<HashMap<u32, UnixDiag>> {
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    sendto(
        sock.as_raw_fd(),
        &request(),
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut out = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        if n == 0 {
            return Err(bad("netlink socket closed before the end of the list"));
        }
        if parse_batch(&buf[..n], &mut out)? {
            return Ok(out);
        }
    }
}

/// nlmsghdr + unix_diag_req asking for every unix socket in any state.
fn request() -> Vec<u8> {
    let mut req = Vec::with_capacity(NLMSG_HDRLEN + 24);
    req.extend_from_slice(&((NLMSG_HDRLEN + 24) as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid
    req.push(libc::AF_UNIX as u8);
    req.push(0); // protocol
    req.extend_from_slice(&0u16.to_ne_bytes());
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req.extend_from_slice(&0u32.to_ne_bytes()); // any inode
    let show = UDIAG_SHOW_NAME
        | UDIAG_SHOW_VFS
        | UDIAG_SHOW_PEER
        | UDIAG_SHOW_ICONS
        | UDIAG_SHOW_RQLEN
        | UDIAG_SHOW_MEMINFO
        | UDIAG_SHOW_SHUTDOWN;
    req.extend_from_slice(&show.to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]); // no cookie
    req
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("sock_diag: {what}"),
    )
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Parses one datagram of netlink messages into `out`; true once the list is complete.
fn parse_batch(mut b: &[u8], out: &mut HashMap<u32, UnixDiag>) -> std::io::Result<bool> {
    while b.len() >= NLMSG_HDRLEN {
        let len = u32_at(b, 0).unwrap_or(0) as usize;
        let kind = u16_at(b, 4).unwrap_or(0);
        if len < NLMSG_HDRLEN || len > b.len() {
            return Err(bad("truncated message"));
        }
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = u32_at(b, NLMSG_HDRLEN).map_or(0, |e| -(e as i32));
                return Err(std::io::Error::from_raw_os_error(errno));
            }
            SOCK_DIAG_BY_FAMILY => {
                let d = parse_one(&b[NLMSG_HDRLEN..len]).ok_or_else(|| bad("bad socket entry"))?;
                out.insert(d.ino, d);
            }
            _ => {}
        }
        b = &b[align4(len).min(b.len())..];
    }
    Ok(false)
}

/// One unix_diag_msg and its attributes.
fn parse_one(b: &[u8]) -> Option<UnixDiag> {
    if b.len() < DIAG_MSG_LEN {
        return None;
    }
    let mut d = UnixDiag {
        kind: b[1],
        state: b[2],
        ino: u32_at(b, 4)?,
        ..Default::default()
    };
    let mut attrs = &b[DIAG_MSG_LEN..];
    while attrs.len() >= 4 {
        let len = usize::from(u16_at(attrs, 0)?);
        let kind = u16_at(attrs, 2)?;
        if len < 4 || len > attrs.len() {
            return None;
        }
        let data = &attrs[4..len];
        match kind {
            UNIX_DIAG_NAME => d.name = data.to_vec(),
            UNIX_DIAG_VFS => d.vfs = Some((u32_at(data, 0)?, u32_at(data, 4)?)),
            UNIX_DIAG_PEER => d.peer = u32_at(data, 0)?,
            UNIX_DIAG_ICONS => {
                d.icons = data
                    .chunks_exact(4)
                    .filter_map(|c| c.try_into().ok().map(u32::from_ne_bytes))
                    .collect()
            }
            UNIX_DIAG_RQLEN => d.rqlen = (u32_at(data, 0)?, u32_at(data, 4)?),
            UNIX_DIAG_SHUTDOWN => d.shutdown = *data.first()?,
            _ => {}
        }
        attrs = &attrs[align4(len).min(attrs.len())..];
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn ino(fd: &impl AsRawFd) -> u32 {
        std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .ino() as u32
    }

    #[test]
    fn a_socketpair_shows_both_ends_as_peers_with_their_queues() {
        let (a, b) = nix::sys::socket::socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        nix::sys::socket::send(a.as_raw_fd(), b"hello", MsgFlags::empty()).unwrap();
        nix::sys::socket::shutdown(b.as_raw_fd(), nix::sys::socket::Shutdown::Write).unwrap();
        let all = list().unwrap();
        let (da, db) = (&all[&ino(&a)], &all[&ino(&b)]);
        assert_eq!(da.peer, ino(&b));
        assert_eq!(db.peer, ino(&a));
        assert_eq!(da.kind, libc::SOCK_STREAM as u8);
        assert_eq!(db.rqlen.0, 5);
        assert_eq!(db.shutdown, 2);
        assert_eq!(da.shutdown, 1);
        assert!(da.name.is_empty());
    }

    #[test]
    fn a_listener_shows_its_name_and_pending_clients() {
        let name = format!("criu-test-diag-{}", std::process::id());
        let addr = nix::sys::socket::UnixAddr::new_abstract(name.as_bytes()).unwrap();
        let l = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        nix::sys::socket::bind(l.as_raw_fd(), &addr).unwrap();
        nix::sys::socket::listen(&l, nix::sys::socket::Backlog::new(7).unwrap()).unwrap();
        let c = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        nix::sys::socket::connect(c.as_raw_fd(), &addr).unwrap();
        let all = list().unwrap();
        let dl = &all[&ino(&l)];
        assert_eq!(dl.state, 10);
        assert_eq!(dl.name, [b"\0".as_slice(), name.as_bytes()].concat());
        assert_eq!(dl.icons, [ino(&c)]);
        assert_eq!(dl.rqlen, (1, 7));
        assert_eq!(all[&ino(&c)].peer, 0);
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        let mut out = HashMap::new();
        assert!(parse_batch(&[0xff; 40], &mut out).is_err());
        assert!(parse_one(&[1, 2, 3]).is_none());
        let mut short = vec![0u8; 16];
        short.extend_from_slice(&[40, 0, 0, 0]);
        assert!(parse_one(&short).is_none());
    }
}
