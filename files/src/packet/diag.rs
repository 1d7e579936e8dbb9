//! The kernel's list of packet sockets (sock_diag, PACKET_DIAG), asked for and read by hand:
//! netlink-packet-sock-diag knows only the unix and inet families.

use std::collections::HashMap;

use crate::sock_diag::{attrs, bad};

/// packet_diag_req.pdiag_show: basic information, multicast list, rings, fanout.
const SHOW_ALL: u32 = 0x1 | 0x2 | 0x4 | 0x8;

const DIAG_INFO: u16 = 0;
const DIAG_MCLIST: u16 = 1;
const DIAG_RX_RING: u16 = 2;
const DIAG_TX_RING: u16 = 3;
const DIAG_FANOUT: u16 = 4;

/// struct packet_diag_msg: family, type, protocol, inode, cookie.
const MSG_LEN: usize = 16;
/// struct packet_diag_mclist: index, count, type, address length, 32 address bytes.
const MCLIST_LEN: usize = 44;
const MAX_ADDR_LEN: usize = 32;

/// packet_diag_info.pdi_flags.
pub const PDI_AUXDATA: u32 = 0x2;
pub const PDI_ORIGDEV: u32 = 0x4;
pub const PDI_VNETHDR: u32 = 0x8;
pub const PDI_LOSS: u32 = 0x10;

/// struct packet_diag_info.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Info {
    pub ifindex: u32,
    pub version: u32,
    pub reserve: u32,
    pub copy_thresh: u32,
    pub tstamp: u32,
    pub flags: u32,
}

/// One multicast (or promiscuous, all-multicast, unicast) membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub ifindex: u32,
    /// How many times the socket asked for it.
    pub count: u32,
    pub kind: u16,
    pub addr: Vec<u8>,
}

/// struct packet_diag_ring, in its order: block size and count, frame size and count,
/// block retire timeout, private area size, feature word.
pub type Ring = [u32; 7];

/// One packet socket as sock_diag shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketDiag {
    pub ino: u32,
    pub kind: u8,
    /// The protocol in host order (the socket was made with it in network order).
    pub num: u16,
    pub info: Info,
    pub mclist: Vec<Membership>,
    pub rx_ring: Option<Ring>,
    pub tx_ring: Option<Ring>,
    /// The fanout group, as sock_diag gives it (id and mode, not the flags).
    pub fanout: Option<u32>,
}

fn words<const N: usize>(b: &[u8], what: &str) -> std::io::Result<[u32; N]> {
    if b.len() < N * 4 {
        return Err(bad(&format!("{what}: {} bytes, under {}", b.len(), N * 4)));
    }
    let mut out = [0u32; N];
    for (i, w) in out.iter_mut().enumerate() {
        *w = u32::from_ne_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
    }
    Ok(out)
}

/// One PACKET_DIAG answer (the payload after the netlink header).
pub fn parse(payload: &[u8]) -> std::io::Result<PacketDiag> {
    if payload.len() < MSG_LEN {
        return Err(bad(&format!(
            "a packet socket message of {} bytes",
            payload.len()
        )));
    }
    let [_, ino] = words::<2>(&payload[..8], "packet_diag_msg")?;
    let mut d = PacketDiag {
        ino,
        kind: payload[1],
        num: u16::from_ne_bytes([payload[2], payload[3]]),
        ..Default::default()
    };
    let mut info = false;
    for (kind, value) in attrs(payload, MSG_LEN)? {
        match kind {
            DIAG_INFO => {
                let [ifindex, version, reserve, copy_thresh, tstamp, flags] =
                    words::<6>(value, "PACKET_DIAG_INFO")?;
                d.info = Info {
                    ifindex,
                    version,
                    reserve,
                    copy_thresh,
                    tstamp,
                    flags,
                };
                info = true;
            }
            DIAG_MCLIST => {
                if value.len() % MCLIST_LEN != 0 {
                    return Err(bad(&format!(
                        "PACKET_DIAG_MCLIST of {} bytes is no list",
                        value.len()
                    )));
                }
                for m in value.chunks_exact(MCLIST_LEN) {
                    let [ifindex, count] = words::<2>(m, "membership")?;
                    let alen = usize::from(u16::from_ne_bytes([m[10], m[11]]));
                    if alen > MAX_ADDR_LEN {
                        return Err(bad(&format!("a membership address of {alen} bytes")));
                    }
                    d.mclist.push(Membership {
                        ifindex,
                        count,
                        kind: u16::from_ne_bytes([m[8], m[9]]),
                        addr: m[12..12 + alen].to_vec(),
                    });
                }
            }
            DIAG_RX_RING => d.rx_ring = Some(words::<7>(value, "PACKET_DIAG_RX_RING")?),
            DIAG_TX_RING => d.tx_ring = Some(words::<7>(value, "PACKET_DIAG_TX_RING")?),
            DIAG_FANOUT => d.fanout = Some(words::<1>(value, "PACKET_DIAG_FANOUT")?[0]),
            _ => {}
        }
    }
    if !info {
        return Err(bad(&format!(
            "packet socket {ino} without PACKET_DIAG_INFO"
        )));
    }
    Ok(d)
}

/// Every packet socket of the calling thread's network namespace, by inode.
pub fn list() -> std::io::Result<HashMap<u32, PacketDiag>> {
    crate::sock_diag::list_family(libc::AF_PACKET, 0, SHOW_ALL, parse, |d| d.ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    fn ints(v: &[u32]) -> Vec<u8> {
        v.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    fn message() -> Vec<u8> {
        let mut m = vec![libc::AF_PACKET as u8, libc::SOCK_RAW as u8];
        m.extend_from_slice(&3u16.to_ne_bytes());
        m.extend_from_slice(&ints(&[4242, 0, 0]));
        m.extend(attr(DIAG_INFO, &ints(&[1, 2, 16, 0, 0, PDI_AUXDATA])));
        let mut mc = ints(&[1, 2]);
        mc.extend_from_slice(&3u16.to_ne_bytes());
        mc.extend_from_slice(&6u16.to_ne_bytes());
        mc.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        mc.extend_from_slice(&[0; 26]);
        m.extend(attr(DIAG_MCLIST, &mc));
        m.extend(attr(DIAG_RX_RING, &ints(&[4096, 1, 1024, 4, 0, 0, 0])));
        m.extend(attr(DIAG_FANOUT, &ints(&[0x0001_0007])));
        m
    }

    #[test]
    fn a_crafted_answer_is_read() {
        let d = parse(&message()).unwrap();
        assert_eq!(d.ino, 4242);
        assert_eq!(d.kind, libc::SOCK_RAW as u8);
        assert_eq!(d.num, 3);
        assert_eq!(d.info.version, 2);
        assert_eq!(d.info.reserve, 16);
        assert_eq!(d.info.flags, PDI_AUXDATA);
        assert_eq!(
            d.mclist,
            vec![Membership {
                ifindex: 1,
                count: 2,
                kind: 3,
                addr: vec![1, 2, 3, 4, 5, 6]
            }]
        );
        assert_eq!(d.rx_ring, Some([4096, 1, 1024, 4, 0, 0, 0]));
        assert_eq!(d.tx_ring, None);
        assert_eq!(d.fanout, Some(0x0001_0007));
    }

    #[test]
    fn garbage_gives_errors() {
        let m = message();
        // Every cut of a good message, and every byte set to 0xff, must not panic.
        for n in 0..m.len() {
            let _ = parse(&m[..n]);
            let mut bad = m.clone();
            bad[n] = 0xff;
            let _ = parse(&bad);
        }
        assert!(parse(&m[..10]).is_err());
        // No PACKET_DIAG_INFO.
        assert!(parse(&m[..16]).is_err());
        // A membership list of an odd length.
        let mut odd = m[..16].to_vec();
        odd.extend(attr(DIAG_INFO, &ints(&[0; 6])));
        odd.extend(attr(DIAG_MCLIST, &[0; 10]));
        assert!(parse(&odd).is_err());
        // An address longer than the kernel's largest.
        let mut long = m[..16].to_vec();
        long.extend(attr(DIAG_INFO, &ints(&[0; 6])));
        let mut mc = ints(&[1, 1]);
        mc.extend_from_slice(&0u16.to_ne_bytes());
        mc.extend_from_slice(&33u16.to_ne_bytes());
        mc.extend_from_slice(&[0; 32]);
        long.extend(attr(DIAG_MCLIST, &mc));
        assert!(parse(&long).is_err());
    }

    #[test]
    fn the_kernel_lists_a_bound_packet_socket() {
        if !nix::unistd::Uid::effective().is_root() {
            return;
        }
        use std::os::fd::{AsFd, AsRawFd};
        use std::os::unix::fs::MetadataExt;
        let sock = criu_sys::sockopt::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM,
            i32::from((libc::ETH_P_IP as u16).to_be()),
        )
        .unwrap();
        criu_sys::sockopt::bind_packet(sock.as_fd(), 1).unwrap();
        criu_sys::sockopt::set_int(sock.as_fd(), libc::SOL_PACKET, libc::PACKET_AUXDATA, 1)
            .unwrap();
        let ino = std::fs::metadata(format!("/proc/self/fd/{}", sock.as_raw_fd()))
            .unwrap()
            .ino() as u32;
        let all = list().unwrap();
        let d = &all[&ino];
        assert_eq!(d.kind, libc::SOCK_DGRAM as u8);
        assert_eq!(d.num, libc::ETH_P_IP as u16);
        assert_eq!(d.info.ifindex, 1);
        assert_eq!(d.info.flags & PDI_AUXDATA, PDI_AUXDATA);
    }
}
