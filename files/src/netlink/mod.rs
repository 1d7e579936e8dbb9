//! Netlink sockets (AF_NETLINK), each one `netlink_sk_entry` in files.img as CRIU 4.x writes
//! it: protocol, bound port id and multicast groups, the peer of a connected socket. A socket
//! with messages waiting to be read is refused, as CRIU refuses it (the images have no place
//! for them).

pub mod diag;
pub mod dump;
pub mod restore;

/// netlink_sk_entry.state of a socket connected to a peer (NETLINK_CONNECTED).
pub const CONNECTED: u32 = 1;

pub fn protocol_name(proto: u32) -> String {
    match proto as i32 {
        libc::NETLINK_ROUTE => "NETLINK_ROUTE".into(),
        libc::NETLINK_SOCK_DIAG => "NETLINK_SOCK_DIAG".into(),
        libc::NETLINK_NETFILTER => "NETLINK_NETFILTER".into(),
        libc::NETLINK_AUDIT => "NETLINK_AUDIT".into(),
        libc::NETLINK_KOBJECT_UEVENT => "NETLINK_KOBJECT_UEVENT".into(),
        libc::NETLINK_GENERIC => "NETLINK_GENERIC".into(),
        libc::NETLINK_XFRM => "NETLINK_XFRM".into(),
        libc::NETLINK_SELINUX => "NETLINK_SELINUX".into(),
        libc::NETLINK_CONNECTOR => "NETLINK_CONNECTOR".into(),
        n => format!("protocol {n}"),
    }
}
