//! TCP repair mode: a connection's state read from a frozen socket and written into a new one
//! without a packet on the wire (the kernel's TCP_REPAIR; CRIU's libsoccr does the same).
//!
//! Sequence numbers: `inq_seq` is rcv_nxt and `outq_seq` is write_seq; the queues hold the
//! `inq_len` bytes before rcv_nxt not yet read and the `outq_len` bytes before write_seq not
//! yet acknowledged, of which the last `unsq_len` were never sent. A FIN in a queue is counted
//! by the kernel like a byte; it is taken out of the lengths and put back from the state.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use criu_proto::images::TcpStreamEntry;
use criu_sys::sockopt::{get_bytes, get_int, queue_len, set_bytes, set_int, Queue};
use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags, SockaddrStorage};

use super::state::*;

const TCP_REPAIR: i32 = 19;
const TCP_REPAIR_QUEUE: i32 = 20;
const TCP_QUEUE_SEQ: i32 = 21;
const TCP_REPAIR_OPTIONS: i32 = 22;
const TCP_TIMESTAMP: i32 = 24;
const TCP_REPAIR_WINDOW: i32 = 29;
const TCP_RECV_QUEUE: i32 = 1;
const TCP_SEND_QUEUE: i32 = 2;

const TCPI_OPT_TIMESTAMPS: u32 = 1;
const TCPI_OPT_SACK: u32 = 2;
const TCPI_OPT_WSCALE: u32 = 4;
const TCPOPT_MAXSEG: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;
const TCPOPT_SACK_PERM: u32 = 4;
const TCPOPT_TIMESTAMP: u32 = 8;

/// States with our FIN in the send queue (first or second to close), and those where the
/// peer acknowledged it; states with the peer's FIN in the receive queue, and where we
/// acknowledged it.
const fn bit(s: u32) -> u32 {
    1 << s
}
const SNDQ_FIRST_FIN: u32 = bit(FIN_WAIT1) | bit(FIN_WAIT2) | bit(CLOSING);
const SNDQ_SECOND_FIN: u32 = bit(LAST_ACK) | bit(CLOSE);
const SNDQ_FIN_ACKED: u32 = bit(FIN_WAIT2) | bit(CLOSE);
const RCVQ_FIRST_FIN: u32 = bit(CLOSE_WAIT) | bit(LAST_ACK) | bit(CLOSE);
const RCVQ_SECOND_FIN: u32 = bit(CLOSING);

#[derive(Debug, thiserror::Error)]
#[error("TCP repair: {what}: {errno}")]
pub struct RepairError {
    pub what: String,
    pub errno: Errno,
}

fn err(what: impl Into<String>) -> impl FnOnce(Errno) -> RepairError {
    let what = what.into();
    move |errno| RepairError { what, errno }
}

fn tcp_set(sock: BorrowedFd<'_>, name: &str, opt: i32, v: i32) -> Result<(), RepairError> {
    set_int(sock, libc::SOL_TCP, opt, v).map_err(err(name))
}

pub fn repair_on(sock: BorrowedFd<'_>) -> Result<(), RepairError> {
    tcp_set(sock, "TCP_REPAIR on", TCP_REPAIR, 1)
}

pub fn repair_off(sock: BorrowedFd<'_>) -> Result<(), RepairError> {
    tcp_set(sock, "TCP_REPAIR off", TCP_REPAIR, 0)
}

/// Whether `sock` is in repair mode.
pub fn is_on(sock: BorrowedFd<'_>) -> Result<bool, RepairError> {
    get_int(sock, libc::SOL_TCP, TCP_REPAIR)
        .map(|v| v != 0)
        .map_err(err("TCP_REPAIR"))
}

/// Takes a connection out of repair mode for good. The kernel then clears SO_REUSEADDR
/// (repair mode forced it on): `reuseaddr`, the socket's own, is set again.
pub fn leave(sock: BorrowedFd<'_>, reuseaddr: bool) -> Result<(), RepairError> {
    repair_off(sock)?;
    set_int(
        sock,
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        i32::from(reuseaddr),
    )
    .map_err(err("SO_REUSEADDR after TCP repair"))
}

/// A connection as read from a socket in repair mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stream {
    pub state: u32,
    pub entry: TcpStreamEntry,
    /// Bytes received and not read yet.
    pub inq: Vec<u8>,
    /// Bytes written and not acknowledged yet (the unsent ones last).
    pub outq: Vec<u8>,
}

/// Reads the connection of `sock`, which must be in repair mode.
pub fn save(sock: BorrowedFd<'_>) -> Result<Stream, RepairError> {
    let mut info = [0u8; 8];
    get_bytes(sock, libc::SOL_TCP, libc::TCP_INFO, &mut info).map_err(err("TCP_INFO"))?;
    let state = u32::from(info[0]);
    let opt_mask = u32::from(info[5]);
    let mstate = bit(state);
    let mut outq_len = queue_len(sock, Queue::Out).map_err(err("SIOCOUTQ"))?;
    let mut unsq_len = queue_len(sock, Queue::OutNotSent).map_err(err("SIOCOUTQNSD"))?;
    if state == CLOSE {
        // A reset connection: what is left to send cannot be read by anyone.
        (outq_len, unsq_len) = (0, 0);
    }
    if mstate & (SNDQ_FIRST_FIN | SNDQ_SECOND_FIN) != 0 {
        outq_len = outq_len.saturating_sub(1);
        unsq_len = unsq_len.saturating_sub(1);
    }
    let inq_len = queue_len(sock, Queue::In).map_err(err("SIOCINQ"))?;
    let mut e = TcpStreamEntry {
        inq_len,
        outq_len,
        unsq_len: Some(unsq_len),
        opt_mask,
        mss_clamp: get_int(sock, libc::SOL_TCP, libc::TCP_MAXSEG).map_err(err("TCP_MAXSEG"))?
            as u32,
        ..Default::default()
    };
    if opt_mask & TCPI_OPT_WSCALE != 0 {
        e.snd_wscale = u32::from(info[6] & 0xf);
        e.rcv_wscale = Some(u32::from(info[6] >> 4));
    }
    if opt_mask & TCPI_OPT_TIMESTAMPS != 0 {
        e.timestamp =
            Some(get_int(sock, libc::SOL_TCP, TCP_TIMESTAMP).map_err(err("TCP_TIMESTAMP"))? as u32);
    }
    let mut w = [0u8; 20];
    match get_bytes(sock, libc::SOL_TCP, TCP_REPAIR_WINDOW, &mut w) {
        Ok(_) => {
            let word = |i: usize| Some(u32::from_ne_bytes([w[i], w[i + 1], w[i + 2], w[i + 3]]));
            (e.snd_wl1, e.snd_wnd, e.max_window, e.rcv_wnd, e.rcv_wup) =
                (word(0), word(4), word(8), word(12), word(16));
        }
        Err(Errno::ENOPROTOOPT) => {}
        Err(errno) => return Err(err("TCP_REPAIR_WINDOW")(errno)),
    }
    let (inq_seq, inq) = read_queue(sock, TCP_RECV_QUEUE, inq_len)?;
    let (outq_seq, outq) = read_queue(sock, TCP_SEND_QUEUE, outq_len)?;
    e.inq_seq = inq_seq;
    e.outq_seq = outq_seq;
    Ok(Stream {
        state,
        entry: e,
        inq,
        outq,
    })
}

/// The sequence number at the end of queue `q` and its `len` bytes, peeked.
fn read_queue(sock: BorrowedFd<'_>, q: i32, len: u32) -> Result<(u32, Vec<u8>), RepairError> {
    tcp_set(sock, "TCP_REPAIR_QUEUE", TCP_REPAIR_QUEUE, q)?;
    let seq = get_int(sock, libc::SOL_TCP, TCP_QUEUE_SEQ).map_err(err("TCP_QUEUE_SEQ"))? as u32;
    let mut buf = vec![0u8; len as usize + 1];
    let mut got = 0;
    if len > 0 {
        // One byte more than expected proves the queue holds exactly `len`.
        got = socket::recv(
            sock.as_raw_fd(),
            &mut buf,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        )
        .map_err(err(format!("peek of queue {q}")))?;
    }
    if got != len as usize {
        return Err(RepairError {
            what: format!("queue {q} holds {got} bytes, {len} expected"),
            errno: Errno::EIO,
        });
    }
    buf.truncate(got);
    Ok((seq, buf))
}

/// Makes the connection of `s` on `sock`, a new TCP socket of the right family already in
/// repair mode, between `local` and `remote`. Data never sent before is sent for real, so the
/// socket leaves repair mode for it.
pub fn restore(
    sock: BorrowedFd<'_>,
    s: &Stream,
    local: SocketAddr,
    remote: SocketAddr,
) -> Result<(), RepairError> {
    let e = &s.entry;
    let mstate = bit(s.state);
    let fd = sock.as_raw_fd();
    socket::bind(fd, &SockaddrStorage::from(local)).map_err(err(format!("bind to {local}")))?;
    let mut inq_seq = e.inq_seq;
    let mut outq_seq = e.outq_seq;
    if mstate & (RCVQ_FIRST_FIN | RCVQ_SECOND_FIN) != 0 {
        inq_seq = inq_seq.wrapping_sub(1);
    }
    if mstate & (SNDQ_FIRST_FIN | SNDQ_SECOND_FIN) != 0 {
        outq_seq = outq_seq.wrapping_sub(1);
    }
    set_seq(sock, TCP_RECV_QUEUE, inq_seq.wrapping_sub(e.inq_len))?;
    let mut snd_seq = outq_seq.wrapping_sub(e.outq_len);
    if s.state == SYN_SENT {
        snd_seq = snd_seq.wrapping_sub(1);
    }
    set_seq(sock, TCP_SEND_QUEUE, snd_seq)?;
    let dst = SockaddrStorage::from(remote);
    if s.state == SYN_SENT {
        // The SYN goes out again for real.
        repair_off(sock)?;
        match socket::connect(fd, &dst) {
            Ok(()) | Err(Errno::EINPROGRESS) => {}
            Err(e) => return Err(err(format!("connect to {remote}"))(e)),
        }
        return repair_on(sock);
    }
    socket::connect(fd, &dst).map_err(err(format!("connect to {remote} in repair mode")))?;
    set_options(sock, e)?;
    // Room for both queues: the buffers' own sizes come back with the socket options later.
    let room = |len: usize| (2 * len).max(1 << 16) as i32;
    set_int(
        sock,
        libc::SOL_SOCKET,
        libc::SO_SNDBUFFORCE,
        room(s.outq.len()),
    )
    .map_err(err("SO_SNDBUFFORCE"))?;
    set_int(
        sock,
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        room(s.inq.len()),
    )
    .map_err(err("SO_RCVBUFFORCE"))?;
    write_queue(sock, TCP_RECV_QUEUE, &s.inq)?;
    let unsent = (e.unsq_len.unwrap_or(0) as usize).min(s.outq.len());
    let (sent, not_sent) = s.outq.split_at(s.outq.len() - unsent);
    write_queue(sock, TCP_SEND_QUEUE, sent)?;
    if !not_sent.is_empty() {
        repair_off(sock)?;
        send_all(sock, not_sent).map_err(err("send of unsent bytes"))?;
        repair_on(sock)?;
    }
    if let (Some(snd_wl1), Some(snd_wnd), Some(max_window), Some(mut rcv_wnd), Some(mut rcv_wup)) =
        (e.snd_wl1, e.snd_wnd, e.max_window, e.rcv_wnd, e.rcv_wup)
    {
        if mstate & (RCVQ_FIRST_FIN | RCVQ_SECOND_FIN) != 0 {
            rcv_wup = rcv_wup.wrapping_sub(1);
            rcv_wnd = rcv_wnd.wrapping_add(1);
        }
        let w: Vec<u8> = [snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        set_bytes(sock, libc::SOL_TCP, TCP_REPAIR_WINDOW, &w).map_err(err("TCP_REPAIR_WINDOW"))?;
    }
    if mstate & SNDQ_FIRST_FIN != 0 {
        fin_in_send_queue(sock, mstate & SNDQ_FIN_ACKED != 0)?;
    }
    let wnd = e.rcv_wnd.unwrap_or(0);
    if mstate & (RCVQ_FIRST_FIN | RCVQ_SECOND_FIN) != 0 {
        let ack = outq_seq.wrapping_sub(e.outq_len);
        super::fin::send(local, remote, inq_seq, ack, wnd, true)
            .map_err(err("fake FIN of the peer for the receive queue"))?;
    }
    if mstate & SNDQ_SECOND_FIN != 0 {
        fin_in_send_queue(sock, mstate & SNDQ_FIN_ACKED != 0)?;
    }
    if mstate & SNDQ_FIN_ACKED != 0 {
        // The peer's acknowledgement of our FIN (and of its own FIN's ack, when closed).
        let seq = if s.state == CLOSE {
            inq_seq.wrapping_add(1)
        } else {
            inq_seq
        };
        let ack = outq_seq.wrapping_add(1).wrapping_sub(e.outq_len);
        super::fin::send(local, remote, seq, ack, wnd, false)
            .map_err(err("fake acknowledgement of our FIN"))?;
    }
    Ok(())
}

fn set_seq(sock: BorrowedFd<'_>, q: i32, seq: u32) -> Result<(), RepairError> {
    tcp_set(sock, "TCP_REPAIR_QUEUE", TCP_REPAIR_QUEUE, q)?;
    tcp_set(sock, "TCP_QUEUE_SEQ", TCP_QUEUE_SEQ, seq as i32)
}

/// MSS, window scaling, SACK and timestamps, as negotiated before.
fn set_options(sock: BorrowedFd<'_>, e: &TcpStreamEntry) -> Result<(), RepairError> {
    let mut opts: Vec<(u32, u32)> = Vec::new();
    if e.opt_mask & TCPI_OPT_SACK != 0 {
        opts.push((TCPOPT_SACK_PERM, 0));
    }
    if e.opt_mask & TCPI_OPT_WSCALE != 0 {
        opts.push((
            TCPOPT_WINDOW,
            e.snd_wscale + (e.rcv_wscale.unwrap_or(0) << 16),
        ));
    }
    if e.opt_mask & TCPI_OPT_TIMESTAMPS != 0 {
        opts.push((TCPOPT_TIMESTAMP, 0));
    }
    opts.push((TCPOPT_MAXSEG, e.mss_clamp));
    let bytes: Vec<u8> = opts
        .iter()
        .flat_map(|(code, val)| code.to_ne_bytes().into_iter().chain(val.to_ne_bytes()))
        .collect();
    set_bytes(sock, libc::SOL_TCP, TCP_REPAIR_OPTIONS, &bytes)
        .map_err(err("TCP_REPAIR_OPTIONS"))?;
    if let (true, Some(ts)) = (e.opt_mask & TCPI_OPT_TIMESTAMPS != 0, e.timestamp) {
        tcp_set(sock, "TCP_TIMESTAMP", TCP_TIMESTAMP, ts as i32)?;
    }
    Ok(())
}

/// Puts `data` into queue `q` as if it had been received or sent.
fn write_queue(sock: BorrowedFd<'_>, q: i32, data: &[u8]) -> Result<(), RepairError> {
    if data.is_empty() {
        return Ok(());
    }
    tcp_set(sock, "TCP_REPAIR_QUEUE", TCP_REPAIR_QUEUE, q)?;
    send_all(sock, data).map_err(err(format!("refill of queue {q}")))
}

/// Sends all of `data`; a chunk too big for one buffer is halved (in repair mode the kernel
/// makes one linear buffer per call).
fn send_all(sock: BorrowedFd<'_>, mut data: &[u8]) -> Result<(), Errno> {
    let mut chunk = data.len();
    while !data.is_empty() {
        match socket::send(
            sock.as_raw_fd(),
            &data[..chunk.min(data.len())],
            MsgFlags::empty(),
        ) {
            Ok(n) if n > 0 => data = &data[n..],
            Ok(_) | Err(Errno::ENOMEM) | Err(Errno::EAGAIN) if chunk > 1024 => chunk /= 2,
            Ok(_) => return Err(Errno::EIO),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Our FIN, as sent (and acknowledged, when `acked`): shutdown in repair mode queues it.
fn fin_in_send_queue(sock: BorrowedFd<'_>, acked: bool) -> Result<(), RepairError> {
    if acked {
        tcp_set(sock, "TCP_REPAIR_QUEUE", TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)?;
    }
    socket::shutdown(sock.as_raw_fd(), socket::Shutdown::Write)
        .map_err(err("shutdown for our FIN"))?;
    if acked {
        tcp_set(sock, "TCP_REPAIR_QUEUE", TCP_REPAIR_QUEUE, 0)?;
    }
    Ok(())
}
