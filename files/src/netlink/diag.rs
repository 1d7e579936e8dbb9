//! The kernel's list of netlink sockets (sock_diag, NETLINK_DIAG), asked for and read by hand:
//! netlink-packet-sock-diag knows only the unix and inet families. Only bound (or connected,
//! or group-joined) sockets are listed; an unbound one is not.

use std::collections::HashMap;

use crate::sock_diag::{attrs, bad};

/// netlink_diag_req.sdiag_protocol for every protocol.
const PROTO_ALL: u8 = 255;
/// NDIAG_SHOW_GROUPS | NDIAG_SHOW_FLAGS.
const SHOW: u32 = 0x2 | 0x8;

const DIAG_GROUPS: u16 = 1;
const DIAG_FLAGS: u16 = 4;

/// struct netlink_diag_msg: family, type, protocol, state, port id, peer port id, peer
/// group, inode, cookie.
const MSG_LEN: usize = 28;

/// NDIAG_FLAG_*: socket options the images have no place for.
pub const FLAG_NAMES: [(u32, &str); 8] = [
    (0x1, "a dump in progress"),
    (0x2, "NETLINK_PKTINFO"),
    (0x4, "NETLINK_BROADCAST_ERROR"),
    (0x8, "NETLINK_NO_ENOBUFS"),
    (0x10, "NETLINK_LISTEN_ALL_NSID"),
    (0x20, "NETLINK_CAP_ACK"),
    (0x40, "NETLINK_EXT_ACK"),
    (0x80, "NETLINK_GET_STRICT_CHK"),
];

/// One netlink socket as sock_diag shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetlinkDiag {
    pub ino: u32,
    pub kind: u8,
    pub protocol: u8,
    pub state: u8,
    pub portid: u32,
    pub dst_portid: u32,
    pub dst_group: u32,
    /// The multicast group bitmap in 32-bit words, group 1 the lowest bit of the first,
    /// trailing zero words left out.
    pub groups: Vec<u32>,
    /// NDIAG_FLAG_* bits.
    pub flags: u32,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// One NETLINK_DIAG answer (the payload after the netlink header).
pub fn parse(payload: &[u8]) -> std::io::Result<NetlinkDiag> {
    if payload.len() < MSG_LEN {
        return Err(bad(&format!(
            "a netlink socket message of {} bytes",
            payload.len()
        )));
    }
    let mut d = NetlinkDiag {
        kind: payload[1],
        protocol: payload[2],
        state: payload[3],
        portid: u32_at(payload, 4),
        dst_portid: u32_at(payload, 8),
        dst_group: u32_at(payload, 12),
        ino: u32_at(payload, 16),
        ..Default::default()
    };
    for (kind, value) in attrs(payload, MSG_LEN)? {
        match kind {
            DIAG_GROUPS => {
                // An array of unsigned longs: on this little-endian 64-bit machine the 32-bit
                // words come in group order.
                if value.len() % 4 != 0 {
                    return Err(bad(&format!(
                        "NETLINK_DIAG_GROUPS of {} bytes",
                        value.len()
                    )));
                }
                d.groups = value.chunks_exact(4).map(|w| u32_at(w, 0)).collect();
                while d.groups.last() == Some(&0) {
                    d.groups.pop();
                }
            }
            DIAG_FLAGS => {
                if value.len() < 4 {
                    return Err(bad("NETLINK_DIAG_FLAGS cut short"));
                }
                d.flags = u32_at(value, 0);
            }
            _ => {}
        }
    }
    Ok(d)
}

/// Every listed netlink socket of the calling thread's network namespace, by inode.
pub fn list() -> std::io::Result<HashMap<u32, NetlinkDiag>> {
    crate::sock_diag::list_family(libc::AF_NETLINK, PROTO_ALL, SHOW, parse, |d| d.ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        a
    }

    fn message(groups: &[u8]) -> Vec<u8> {
        let mut m = vec![libc::AF_NETLINK as u8, libc::SOCK_RAW as u8, 15, 1];
        for w in [100u32, 200, 3, 777, 0, 0] {
            m.extend_from_slice(&w.to_ne_bytes());
        }
        m.extend(attr(DIAG_GROUPS, groups));
        m.extend(attr(DIAG_FLAGS, &0x42u32.to_ne_bytes()));
        m
    }

    #[test]
    fn a_crafted_answer_is_read() {
        let d = parse(&message(&[5, 0, 0, 0, 0, 0, 0, 0])).unwrap();
        assert_eq!(
            d,
            NetlinkDiag {
                ino: 777,
                kind: libc::SOCK_RAW as u8,
                protocol: 15,
                state: 1,
                portid: 100,
                dst_portid: 200,
                dst_group: 3,
                groups: vec![5],
                flags: 0x42,
            }
        );
        let d = parse(&message(&[0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0])).unwrap();
        assert_eq!(d.groups, vec![0, 0, 1]);
    }

    #[test]
    fn garbage_gives_errors() {
        let m = message(&[1, 0, 0, 0, 0, 0, 0, 0]);
        for n in 0..m.len() {
            let _ = parse(&m[..n]);
            let mut bad = m.clone();
            bad[n] = 0xff;
            let _ = parse(&bad);
        }
        assert!(parse(&m[..27]).is_err());
        assert!(parse(&message(&[1, 2, 3])).is_err());
    }

    #[test]
    fn the_kernel_lists_a_bound_netlink_socket() {
        use nix::sys::socket::{
            bind, socket, AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType,
        };
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let sock = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .unwrap();
        // RTMGRP_LINK; joining a group needs no privilege for NETLINK_ROUTE.
        bind(sock.as_raw_fd(), &NetlinkAddr::new(0, 1)).unwrap();
        let ino = std::fs::metadata(format!("/proc/self/fd/{}", sock.as_raw_fd()))
            .unwrap()
            .ino() as u32;
        let all = list().unwrap();
        let d = &all[&ino];
        assert_eq!(d.protocol, libc::NETLINK_ROUTE as u8);
        assert_ne!(d.portid, 0);
        assert_eq!(d.groups, vec![1]);
    }
}
