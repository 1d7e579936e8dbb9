//! One sock_diag (NETLINK_SOCK_DIAG) dump: a request for every socket of a kind in criu's
//! network namespace (of the calling thread), and each answer handed to the caller. The
//! messages are built and read by netlink-packet-sock-diag.

use std::os::fd::AsRawFd;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::SockDiagMessage;
use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

pub fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("sock_diag: {what}"),
    )
}

/// Sends the netlink message `req` (a dump request) and hands each datagram of the answer to
/// `batch`, until it says the list is complete.
fn exchange(
    req: &[u8],
    mut batch: impl FnMut(&[u8]) -> std::io::Result<bool>,
) -> std::io::Result<()> {
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    sendto(
        sock.as_raw_fd(),
        req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        if n == 0 {
            return Err(bad("netlink socket closed before the end of the list"));
        }
        if batch(&buf[..n])? {
            return Ok(());
        }
    }
}

/// Sends `request` as a dump and calls `each` with every socket the kernel answers.
pub fn dump(
    request: SockDiagMessage,
    mut each: impl FnMut(SockDiagMessage) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = 1;
    let mut msg = NetlinkMessage::new(header, request.into());
    msg.finalize();
    let mut req = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut req);
    exchange(&req, |b| parse(b, &mut each))
}

/// Parses one datagram of netlink messages, handing each socket to `each`; true once the
/// list is complete.
pub fn parse(
    mut b: &[u8],
    each: &mut impl FnMut(SockDiagMessage) -> std::io::Result<()>,
) -> std::io::Result<bool> {
    while !b.is_empty() {
        let msg = NetlinkMessage::<SockDiagMessage>::deserialize(b)
            .map_err(|e| bad(&format!("bad message: {e}")))?;
        // deserialize checked that the length is within `b` and covers the header.
        let len = msg.header.length as usize;
        match msg.payload {
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Error(e) => return Err(e.to_io()),
            NetlinkPayload::InnerMessage(m) => each(m)?,
            _ => {}
        }
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    Ok(false)
}

/// Every socket of a family whose request is the common one (struct packet_diag_req and
/// netlink_diag_req: family, protocol, padding, inode 0 for all, what to show, no cookie),
/// each answer parsed by `parse`, by the inode `ino` names.
pub fn list_family<T>(
    family: i32,
    protocol: u8,
    show: u32,
    parse: impl Fn(&[u8]) -> std::io::Result<T>,
    ino: impl Fn(&T) -> u32,
) -> std::io::Result<std::collections::HashMap<u32, T>> {
    let mut req = vec![family as u8, protocol, 0, 0];
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&show.to_ne_bytes());
    req.extend_from_slice(&[0; 8]);
    let mut out = std::collections::HashMap::new();
    dump_raw(&req, |payload| {
        let d = parse(payload)?;
        out.insert(ino(&d), d);
        Ok(())
    })?;
    Ok(out)
}

/// SOCK_DIAG_BY_FAMILY: the request type of every sock_diag family.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;

/// `dump` for the families netlink-packet-sock-diag does not know (packet, netlink):
/// `request` is the family's request structure, and `each` gets every answer's payload (the
/// family's message and its attributes), bytes as the kernel wrote them.
pub fn dump_raw(
    request: &[u8],
    mut each: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let len = NLMSG_HDRLEN + request.len();
    let mut req = Vec::with_capacity(len);
    req.extend_from_slice(&(len as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
    req.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    req.extend_from_slice(request);
    exchange(&req, |b| parse_raw(b, &mut each))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// `parse` for `dump_raw`: one datagram of netlink messages, each payload handed to `each`;
/// true once the list is complete.
pub fn parse_raw(
    mut b: &[u8],
    each: &mut impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<bool> {
    while !b.is_empty() {
        if b.len() < NLMSG_HDRLEN {
            return Err(bad(&format!(
                "a message header cut short ({} bytes)",
                b.len()
            )));
        }
        let len = u32_at(b, 0) as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            return Err(bad(&format!(
                "a message of {len} bytes in {} bytes left",
                b.len()
            )));
        }
        let payload = &b[NLMSG_HDRLEN..len];
        match u16_at(b, 4) {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                if payload.len() < 4 {
                    return Err(bad("an error message without its code"));
                }
                let code = u32_at(payload, 0) as i32;
                if code != 0 {
                    return Err(std::io::Error::from_raw_os_error(-code));
                }
            }
            SOCK_DIAG_BY_FAMILY => each(payload)?,
            _ => {}
        }
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    Ok(false)
}

/// The netlink attributes (type, value) that follow a family's fixed message of `skip` bytes.
pub fn attrs(payload: &[u8], skip: usize) -> std::io::Result<Vec<(u16, &[u8])>> {
    let mut b = payload.get(skip..).ok_or_else(|| {
        bad(&format!(
            "a message of {} bytes, under {skip}",
            payload.len()
        ))
    })?;
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = usize::from(u16_at(b, 0));
        if len < 4 || len > b.len() {
            return Err(bad(&format!(
                "an attribute of {len} bytes in {} bytes left",
                b.len()
            )));
        }
        // The top two bits are the nested and byte-order flags.
        out.push((u16_at(b, 2) & 0x3fff, &b[4..len]));
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    Ok(out)
}

/// Runs `work` in the network namespace of socket `sock` (sock_diag lists the sockets of the
/// asking socket's namespace): here when it is criu's own, else in a thread of criu that joins
/// it and is thrown away.
pub fn in_netns_of<T: Send>(
    sock: std::os::fd::BorrowedFd<'_>,
    work: impl FnOnce() -> std::io::Result<T> + Send,
) -> std::io::Result<T> {
    use std::os::unix::fs::MetadataExt;
    let ns = criu_sys::probe::sockets::netns_of(sock.as_raw_fd())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let theirs = std::fs::File::from(ns);
    let own = std::fs::metadata("/proc/thread-self/ns/net")?;
    let their_meta = theirs.metadata()?;
    if (own.dev(), own.ino()) == (their_meta.dev(), their_meta.ino()) {
        return work();
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&theirs, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                std::io::Error::other(format!("cannot join the socket's network namespace: {e}"))
            })?;
            work()
        })
        .join()
        .map_err(|_| std::io::Error::other("the thread in the socket's network namespace died"))?
    })
}

/// The network namespace of socket `sock`, as (device, inode) of its nsfs file: sockets of one
/// namespace share a sock_diag list.
pub fn netns_key(sock: std::os::fd::BorrowedFd<'_>) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let ns = criu_sys::probe::sockets::netns_of(sock.as_raw_fd())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let meta = std::fs::File::from(ns).metadata()?;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    #[test]
    fn raw_messages_are_handed_out_until_done() {
        let mut b = msg(SOCK_DIAG_BY_FAMILY, b"abc");
        b.extend(msg(SOCK_DIAG_BY_FAMILY, b"defg"));
        let mut seen = Vec::new();
        let done = parse_raw(&b, &mut |p| {
            seen.push(p.to_vec());
            Ok(())
        })
        .unwrap();
        assert!(!done);
        assert_eq!(seen, vec![b"abc".to_vec(), b"defg".to_vec()]);
        b.extend(msg(NLMSG_DONE, &[0; 4]));
        assert!(parse_raw(&b, &mut |_| Ok(())).unwrap());
    }

    #[test]
    fn a_kernel_error_is_its_errno() {
        let b = msg(NLMSG_ERROR, &(-libc::ENOENT).to_ne_bytes());
        let e = parse_raw(&b, &mut |_| Ok(())).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn garbage_is_an_error() {
        for b in [
            vec![1u8, 2, 3],
            vec![0xff; 16],
            vec![8, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            msg(NLMSG_ERROR, &[1]),
        ] {
            assert!(parse_raw(&b, &mut |_| Ok(())).is_err(), "{b:?}");
        }
        assert!(attrs(&[0; 3], 4).is_err());
        assert!(attrs(&[9, 0, 1, 0, 0], 0).is_err());
        assert!(attrs(&[2, 0, 1, 0], 0).is_err());
    }

    #[test]
    fn attributes_are_split_and_padded() {
        let mut b = vec![0u8; 4];
        b.extend_from_slice(&[5, 0, 1, 0, 0xaa, 0, 0, 0]);
        b.extend_from_slice(&[8, 0, 0x02, 0x80, 1, 2, 3, 4]);
        let a = attrs(&b, 4).unwrap();
        assert_eq!(a, vec![(1, &[0xaa][..]), (2, &[1, 2, 3, 4][..])]);
    }
}
