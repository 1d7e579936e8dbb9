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

/// Sends `request` as a dump and calls `each` with every socket the kernel answers.
pub fn dump(
    request: SockDiagMessage,
    mut each: impl FnMut(SockDiagMessage) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = 1;
    let mut msg = NetlinkMessage::new(header, request.into());
    msg.finalize();
    let mut req = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut req);
    sendto(
        sock.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        if n == 0 {
            return Err(bad("netlink socket closed before the end of the list"));
        }
        if parse(&buf[..n], &mut each)? {
            return Ok(());
        }
    }
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
