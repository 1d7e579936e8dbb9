//! A TCP segment that seems to come from the peer of a connection being repaired: a FIN (or
//! the ACK of ours) that the kernel only takes from the wire. Sent on a raw socket with the
//! network lock's mark so that the lock lets it pass.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, SockaddrStorage};

const FIN: u8 = 0x01;
const ACK: u8 = 0x10;

/// Sends, from `remote` to `local`, a segment with sequence `seq`, acknowledgement `ack` and
/// window `window`; FIN+ACK when `fin`, else a bare ACK.
pub fn send(
    local: SocketAddr,
    remote: SocketAddr,
    seq: u32,
    ack: u32,
    window: u32,
    fin: bool,
) -> Result<(), Errno> {
    let (src, dst) = (unmap(remote.ip()), unmap(local.ip()));
    let flags = if fin { FIN | ACK } else { ACK };
    let tcp = tcp_header(
        remote.port(),
        local.port(),
        seq,
        ack,
        flags,
        window.min(0xffff) as u16,
        src,
        dst,
    );
    let (family, packet) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (
            AddressFamily::Inet,
            [ipv4_header(s.octets(), d.octets(), tcp.len()), tcp].concat(),
        ),
        (IpAddr::V6(s), IpAddr::V6(d)) => (
            AddressFamily::Inet6,
            [ipv6_header(s.octets(), d.octets(), tcp.len()), tcp].concat(),
        ),
        _ => return Err(Errno::EAFNOSUPPORT),
    };
    let sock = socket::socket(
        family,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        socket::SockProtocol::Raw,
    )?;
    criu_sys::sockopt::set_int(
        sock.as_fd(),
        libc::SOL_SOCKET,
        libc::SO_MARK,
        criu_netdev::lock::SOCCR_MARK as i32,
    )?;
    let to = SockaddrStorage::from(SocketAddr::new(dst, 0));
    socket::sendto(
        std::os::fd::AsRawFd::as_raw_fd(&sock),
        &packet,
        &to,
        MsgFlags::empty(),
    )?;
    Ok(())
}

/// An IPv4-mapped IPv6 address is sent as IPv4, as the kernel carries it.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

#[allow(clippy::too_many_arguments)]
fn tcp_header(
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    src: IpAddr,
    dst: IpAddr,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(20);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(&ack.to_be_bytes());
    h.push(5 << 4); // data offset: 5 words, no options
    h.push(flags);
    h.extend_from_slice(&window.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    let mut pseudo = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, libc::IPPROTO_TCP as u8]);
            pseudo.extend_from_slice(&(h.len() as u16).to_be_bytes());
        }
        (s, d) => {
            for ip in [s, d] {
                if let IpAddr::V6(a) = ip {
                    pseudo.extend_from_slice(&a.octets());
                }
            }
            pseudo.extend_from_slice(&(h.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, libc::IPPROTO_TCP as u8]);
        }
    }
    let csum = fold(sum16(&h, sum16(&pseudo, 0)));
    h[16..18].copy_from_slice(&csum.to_be_bytes());
    h
}

fn ipv4_header(src: [u8; 4], dst: [u8; 4], payload: usize) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&((20 + payload) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 242, 0, 0, 64, libc::IPPROTO_TCP as u8, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let csum = fold(sum16(&h, 0));
    h[10..12].copy_from_slice(&csum.to_be_bytes());
    h
}

fn ipv6_header(src: [u8; 16], dst: [u8; 16], payload: usize) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload as u16).to_be_bytes());
    h.extend_from_slice(&[libc::IPPROTO_TCP as u8, 64]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify_to_zero() {
        let (s, d) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let tcp = tcp_header(80, 5000, 1, 2, FIN | ACK, 100, s, d);
        let mut pseudo = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 6, 0, 20];
        pseudo.extend_from_slice(&tcp);
        assert_eq!(fold(sum16(&pseudo, 0)), 0);
        let ip = ipv4_header([10, 0, 0, 1], [10, 0, 0, 2], 20);
        assert_eq!(fold(sum16(&ip, 0)), 0);
        assert_eq!(
            unmap("::ffff:1.2.3.4".parse().unwrap()),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
    }
}
