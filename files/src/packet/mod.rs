//! Packet sockets (AF_PACKET: SOCK_RAW, SOCK_DGRAM and the old SOCK_PACKET), each one
//! `packet_sock_entry` in files.img as CRIU 4.x writes it. What a socket is bound to, its
//! options, multicast memberships, fanout group and ring sizes come from sock_diag
//! (PACKET_DIAG) and the socket's options; packets queued or in a ring are not kept, as CRIU
//! keeps none.

pub mod diag;
pub mod dump;
pub mod restore;

/// SOL_PACKET options libc may not name.
pub mod opt {
    pub const COPY_THRESH: i32 = 7;
    pub const TX_HAS_OFF: i32 = 19;
    pub const QDISC_BYPASS: i32 = 20;
    pub const IGNORE_OUTGOING: i32 = 23;
    pub const VNET_HDR_SZ: i32 = 24;
}

/// The old socket type of packet sockets bound by interface name (libc marks it deprecated).
pub const SOCK_PACKET: i32 = 10;

/// Fanout modes that run a BPF program the images cannot hold.
pub const FANOUT_CBPF: u32 = 6;
pub const FANOUT_EBPF: u32 = 7;

/// The length of the header PACKET_VNET_HDR turns on (struct virtio_net_hdr).
pub const VNET_HDR_LEN: i32 = 10;

pub fn type_name(kind: u32) -> String {
    match kind as i32 {
        libc::SOCK_RAW => "raw".into(),
        libc::SOCK_DGRAM => "datagram".into(),
        SOCK_PACKET => "SOCK_PACKET".into(),
        n => format!("type {n}"),
    }
}
