//! The kernel's list of unix sockets, asked once per dump through sock_diag (NETLINK_SOCK_DIAG):
//! for each socket its type, state, name, file, peer, pending connections, queue lengths and
//! shut-down directions. The netlink messages are built and read by netlink-packet-sock-diag.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;

use netlink_packet_core::Emitable;
use netlink_packet_sock_diag::unix::nlas::{Nla, UnixDiagName, Vfs};
use netlink_packet_sock_diag::unix::{ShowFlags, StateFlags, UnixRequest, UnixResponse};
use netlink_packet_sock_diag::SockDiagMessage;

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

/// UDIAG_SHOW_SHUTDOWN: the crate's ShowFlags has no name for it, so the bit is set by value.
const UDIAG_SHOW_SHUTDOWN: u32 = 1 << 7;

/// Every unix socket of criu's network namespace, by inode.
pub fn list() -> std::io::Result<HashMap<u32, UnixDiag>> {
    let mut out = HashMap::new();
    crate::sock_diag::dump(SockDiagMessage::UnixRequest(request()), |m| {
        collect(m, &mut out)
    })?;
    Ok(out)
}

fn collect(m: SockDiagMessage, out: &mut HashMap<u32, UnixDiag>) -> std::io::Result<()> {
    if let SockDiagMessage::UnixResponse(r) = m {
        let d = entry(&r).ok_or_else(|| crate::sock_diag::bad("bad socket entry"))?;
        out.insert(d.ino, d);
    }
    Ok(())
}

/// A dump request for every unix socket in any state.
fn request() -> UnixRequest {
    let show = ShowFlags::NAME
        | ShowFlags::VFS
        | ShowFlags::PEER
        | ShowFlags::ICONS
        | ShowFlags::RQLEN
        | ShowFlags::from_bits_retain(UDIAG_SHOW_SHUTDOWN);
    UnixRequest {
        // StateFlags names only ESTABLISHED and LISTEN; unbound, datagram and closing sockets are
        // in other states, so every bit is set.
        state_flags: StateFlags::from_bits_retain(u32::MAX),
        inode: 0,
        show_flags: show,
        cookie: [0xff; 8], // no cookie
    }
}

/// Our view of one socket's answer.
fn entry(r: &UnixResponse) -> Option<UnixDiag> {
    let mut d = UnixDiag {
        ino: r.header.inode,
        kind: r.header.kind,
        state: r.header.state,
        ..Default::default()
    };
    for nla in &r.nlas {
        match nla {
            // The image keeps the name as the kernel gives it: a path with its final NUL, an
            // abstract name after its leading NUL. The crate strips both; they are put back.
            Nla::Name(UnixDiagName::Pathname(path)) => d.name = [path.as_bytes(), b"\0"].concat(),
            Nla::Name(UnixDiagName::Abstract(name)) => d.name = [b"\0", name.as_slice()].concat(),
            Nla::Vfs(vfs) => d.vfs = Some(vfs_ino_dev(vfs)?),
            Nla::Peer(peer) => d.peer = *peer,
            Nla::PendingConnections(icons) => d.icons = icons.clone(),
            Nla::ReceiveQueueLength(rq, wq) => d.rqlen = (*rq, *wq),
            Nla::Shutdown(how) => d.shutdown = *how,
            _ => {}
        }
    }
    Some(d)
}

/// (inode, device) of a socket file. The crate's Vfs keeps both private with no getter, so the
/// struct it writes back (struct unix_diag_vfs: two native u32, inode first) is read by hand.
fn vfs_ino_dev(vfs: &Vfs) -> Option<(u32, u32)> {
    let mut raw = [0u8; 8];
    if vfs.buffer_len() != raw.len() {
        return None;
    }
    vfs.emit(&mut raw);
    let (ino, dev) = raw.split_at(4);
    Some((
        u32::from_ne_bytes(ino.try_into().ok()?),
        u32::from_ne_bytes(dev.try_into().ok()?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socket, AddressFamily, MsgFlags, SockFlag, SockType};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    fn parse_batch(b: &[u8], out: &mut HashMap<u32, UnixDiag>) -> std::io::Result<bool> {
        crate::sock_diag::parse(b, &mut |m| collect(m, out))
    }

    fn ino(fd: &impl AsRawFd) -> u32 {
        std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .ino() as u32
    }

    fn unix_stream() -> std::os::fd::OwnedFd {
        socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap()
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
        assert_eq!(da.vfs, None);
    }

    #[test]
    fn a_listener_shows_its_name_and_pending_clients() {
        let name = format!("criu-test-diag-{}", std::process::id());
        let addr = nix::sys::socket::UnixAddr::new_abstract(name.as_bytes()).unwrap();
        let l = unix_stream();
        nix::sys::socket::bind(l.as_raw_fd(), &addr).unwrap();
        nix::sys::socket::listen(&l, nix::sys::socket::Backlog::new(7).unwrap()).unwrap();
        let c = unix_stream();
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
    fn a_path_bound_socket_shows_its_path_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sock");
        let s = unix_stream();
        nix::sys::socket::bind(
            s.as_raw_fd(),
            &nix::sys::socket::UnixAddr::new(&path).unwrap(),
        )
        .unwrap();
        let all = list().unwrap();
        let d = &all[&ino(&s)];
        assert_eq!(d.name, [path.as_os_str().as_bytes(), b"\0"].concat());
        let file = std::fs::metadata(&path).unwrap();
        let (vfs_ino, vfs_dev) = d.vfs.unwrap();
        assert_eq!(u64::from(vfs_ino), file.ino());
        // The kernel gives the device in its own encoding; only its presence is checked.
        assert_ne!(vfs_dev, 0);
    }

    /// One SOCK_DIAG_BY_FAMILY message for socket 42 with the given attributes.
    fn message(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![libc::AF_UNIX as u8, libc::SOCK_STREAM as u8, 1, 0];
        body.extend_from_slice(&42u32.to_ne_bytes());
        body.extend_from_slice(&[0; 8]);
        for (kind, data) in attrs {
            body.extend_from_slice(&(4 + data.len() as u16).to_ne_bytes());
            body.extend_from_slice(&kind.to_ne_bytes());
            body.extend_from_slice(data);
            body.resize((body.len() + 3) & !3, 0);
        }
        let mut m = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&20u16.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn crafted_attributes_are_read_back() {
        let vfs = [7u32.to_ne_bytes(), 9u32.to_ne_bytes()].concat();
        let mut out = HashMap::new();
        let m = message(&[
            (0, b"/a\0"),
            (1, &vfs),
            (3, &[5, 0, 0, 0, 6, 0, 0, 0]),
            (6, &[3]),
        ]);
        assert!(!parse_batch(&m, &mut out).unwrap());
        let d = &out[&42];
        assert_eq!(d.name, b"/a\0");
        assert_eq!(d.vfs, Some((7, 9)));
        assert_eq!(d.icons, [5, 6]);
        assert_eq!(d.shutdown, 3);
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        let mut out = HashMap::new();
        assert!(parse_batch(&[0xff; 40], &mut out).is_err());
        assert!(parse_batch(&[1, 2, 3], &mut out).is_err());
        // Too short for struct unix_diag_msg.
        let mut short = message(&[]);
        short.truncate(20);
        short[..4].copy_from_slice(&20u32.to_ne_bytes());
        assert!(parse_batch(&short, &mut out).is_err());
        // Attribute longer than the message, pending connections not a multiple of 4 bytes,
        // a vfs too short, a path name without its NUL.
        let mut long = message(&[(2, &[1, 0, 0, 0])]);
        let end = long.len();
        long[end - 8..end - 6].copy_from_slice(&200u16.to_ne_bytes());
        assert!(parse_batch(&long, &mut out).is_err());
        assert!(parse_batch(&message(&[(3, &[1, 2, 3, 4, 5])]), &mut out).is_err());
        assert!(parse_batch(&message(&[(1, &[1, 2, 3])]), &mut out).is_err());
        assert!(parse_batch(&message(&[(0, b"/a")]), &mut out).is_err());
        assert!(out.is_empty());
    }
}
