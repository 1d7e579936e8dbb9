//! Inet sockets (IPv4 and IPv6: TCP, UDP, UDP-Lite, raw and ICMP ping sockets), each one
//! `inet_sk_entry` in files.img as CRIU 4.x writes it. An established TCP connection is dumped
//! and made again through the kernel's TCP repair mode (`repair`), its queues in
//! `tcp-stream-INO.img`; the connection is kept from the network meanwhile by the network
//! lock (criu_netdev::lock).

pub mod addr;
pub mod diag;
pub mod dump;
mod fin;
pub mod opts;
pub mod repair;
pub mod restore;

/// TCP states as the kernel numbers them (include/net/tcp_states.h).
pub mod state {
    pub const ESTABLISHED: u32 = 1;
    pub const SYN_SENT: u32 = 2;
    pub const FIN_WAIT1: u32 = 4;
    pub const FIN_WAIT2: u32 = 5;
    pub const TIME_WAIT: u32 = 6;
    pub const CLOSE: u32 = 7;
    pub const CLOSE_WAIT: u32 = 8;
    pub const LAST_ACK: u32 = 9;
    pub const LISTEN: u32 = 10;
    pub const CLOSING: u32 = 11;

    pub fn name(state: u32) -> &'static str {
        match state {
            ESTABLISHED => "ESTABLISHED",
            SYN_SENT => "SYN_SENT",
            3 => "SYN_RECV",
            FIN_WAIT1 => "FIN_WAIT1",
            FIN_WAIT2 => "FIN_WAIT2",
            TIME_WAIT => "TIME_WAIT",
            CLOSE => "CLOSE",
            CLOSE_WAIT => "CLOSE_WAIT",
            LAST_ACK => "LAST_ACK",
            LISTEN => "LISTEN",
            CLOSING => "CLOSING",
            _ => "unknown",
        }
    }
}

/// Whether a TCP socket in `state` with a peer on `dst_port` is a connection (dumped through
/// repair mode): also one already closed or reset, whose queue may still hold bytes to read.
pub fn is_connection(state: u32, dst_port: u32) -> bool {
    dst_port != 0 && state != state::LISTEN
}
