//! The kernel's list of inet sockets of one family and protocol (sock_diag), for what a
//! socket's own options do not tell: the peer of a connection still in SYN_SENT and the
//! shut-down directions of a datagram socket.

use std::collections::HashMap;
use std::net::SocketAddr;

use netlink_packet_sock_diag::inet::nlas::Nla;
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;

/// One inet socket as sock_diag shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InetDiag {
    pub state: u8,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// RCV_SHUTDOWN (1) and SEND_SHUTDOWN (2).
    pub shutdown: u8,
}

/// Every socket of `family` and `proto` in the calling thread's network namespace, by inode.
pub fn list(family: i32, proto: i32) -> std::io::Result<HashMap<u32, InetDiag>> {
    let request = InetRequest {
        family: family as u8,
        protocol: proto as u8,
        extensions: ExtensionFlags::SHUTDOWN,
        // Every bit, as CRIU asks (some states have no name in the crate).
        states: StateFlags::from_bits_retain(u32::MAX),
        socket_id: if family == libc::AF_INET6 {
            SocketId::new_v6()
        } else {
            SocketId::new_v4()
        },
    };
    let mut out = HashMap::new();
    crate::sock_diag::dump(SockDiagMessage::InetRequest(request), |m| {
        if let SockDiagMessage::InetResponse(r) = m {
            let id = &r.header.socket_id;
            let shutdown = r.nlas.iter().find_map(|n| match n {
                Nla::Shutdown(s) => Some(*s),
                _ => None,
            });
            out.insert(
                r.header.inode,
                InetDiag {
                    state: r.header.state,
                    src: SocketAddr::new(id.source_address, id.source_port),
                    dst: SocketAddr::new(id.destination_address, id.destination_port),
                    shutdown: shutdown.unwrap_or(0),
                },
            );
        }
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_shut_down_datagram_socket_and_a_connection_are_listed() {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        u.connect(u.local_addr().unwrap()).unwrap();
        nix::sys::socket::shutdown(
            std::os::fd::AsRawFd::as_raw_fd(&u),
            nix::sys::socket::Shutdown::Write,
        )
        .unwrap();
        let ino = |fd: i32| {
            std::fs::metadata(format!("/proc/self/fd/{fd}"))
                .unwrap()
                .ino() as u32
        };
        let all = list(libc::AF_INET, libc::IPPROTO_UDP).unwrap();
        let d = &all[&ino(std::os::fd::AsRawFd::as_raw_fd(&u))];
        assert_eq!(d.shutdown, 2);
        assert_eq!(d.dst, u.local_addr().unwrap());
    }
}
