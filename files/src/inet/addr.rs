//! Addresses as `inet_sk_entry` keeps them: the address bytes as 32-bit words in memory order
//! (one for IPv4, four for IPv6) and the port apart.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use nix::sys::socket::{SockaddrLike, SockaddrStorage};

/// The words of an address, in memory order.
pub fn to_words(ip: IpAddr) -> Vec<u32> {
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    bytes
        .chunks(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The address of `family` in `words`; None if there are too few words.
pub fn from_words(family: i32, words: &[u32]) -> Option<IpAddr> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    match family {
        libc::AF_INET => {
            let b: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        libc::AF_INET6 => {
            let b: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// The unspecified address of `family`.
pub fn any(family: i32) -> IpAddr {
    if family == libc::AF_INET6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

/// An inet socket address from what getsockname/getpeername gave.
pub fn from_storage(sa: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = sa.as_sockaddr_in() {
        return Some(SocketAddr::V4(std::net::SocketAddrV4::from(*v4)));
    }
    let v6 = sa.as_sockaddr_in6()?;
    (v6.family() == Some(nix::sys::socket::AddressFamily::Inet6))
        .then(|| SocketAddr::V6(std::net::SocketAddrV6::from(*v6)))
}

/// The peer as SO_PEERNAME gives it: unlike getpeername, also for a TCP socket in SYN_SENT or
/// one closed or reset (the kernel keeps the peer's address). None when there is no peer.
pub fn peer_name(
    sock: std::os::fd::BorrowedFd<'_>,
    family: i32,
) -> Result<Option<SocketAddr>, nix::errno::Errno> {
    // The kernel wants the exact size of the family's address.
    let mut buf = vec![0u8; if family == libc::AF_INET6 { 28 } else { 16 }];
    let len =
        match criu_sys::sockopt::get_bytes(sock, libc::SOL_SOCKET, libc::SO_PEERNAME, &mut buf) {
            Ok(len) => len,
            Err(nix::errno::Errno::ENOTCONN) => return Ok(None),
            Err(e) => return Err(e),
        };
    Ok(parse_sockaddr(&buf[..len]).filter(|a| a.port() != 0))
}

/// A sockaddr_in or sockaddr_in6 as the kernel writes it.
fn parse_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match family {
        libc::AF_INET => {
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        libc::AF_INET6 => {
            let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_in_memory_order() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let w = to_words(v4);
        assert_eq!(w, vec![u32::from_ne_bytes([127, 0, 0, 1])]);
        assert_eq!(from_words(libc::AF_INET, &w), Some(v4));
        let v6: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        let w = to_words(v6);
        assert_eq!(w.len(), 4);
        assert_eq!(from_words(libc::AF_INET6, &w), Some(v6));
        assert_eq!(from_words(libc::AF_INET6, &w[..2]), None);
    }

    #[test]
    fn peer_name_of_a_connection_and_of_nothing() {
        use std::os::fd::AsFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert_eq!(
            peer_name(c.as_fd(), libc::AF_INET).unwrap(),
            Some(l.local_addr().unwrap())
        );
        assert_eq!(peer_name(l.as_fd(), libc::AF_INET).unwrap(), None);
        assert_eq!(parse_sockaddr(&[10, 0, 0]), None);
    }
}
