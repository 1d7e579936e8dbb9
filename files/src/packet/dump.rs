//! Packet sockets of a dump, described from sock_diag (PACKET_DIAG, asked in the socket's
//! own network namespace) and from criu's copy of the socket (pidfd_getfd): the options
//! sock_diag does not show are read with getsockopt, and a socket with one the images cannot
//! hold is refused.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use criu_proto::images::{FdTypes, PacketMclist, PacketRing, PacketSockEntry};
use criu_sys::sockopt::get_int;
use nix::errno::Errno;

use super::diag::{self, PacketDiag, Ring};
use super::{opt, type_name};
use crate::socket::{Seen, SocketError};
use crate::table::{FileTable, FilesError};

/// Multicast membership kinds (PACKET_MR_*).
const MR_MULTICAST: u16 = 0;
const MR_PROMISC: u16 = 1;
const MR_ALLMULTI: u16 = 2;
const MR_UNICAST: u16 = 3;

/// The packet sockets of one dump.
#[derive(Debug, Default)]
pub struct PacketSockets {
    /// files.img ids by socket inode.
    dumped: HashMap<u64, u32>,
    /// The kernel's lists by network namespace (nsfs device and inode), asked for when first
    /// needed; the tree is frozen meanwhile.
    diag: HashMap<(u64, u64), HashMap<u32, PacketDiag>>,
}

/// The files.img id of packet socket `ino`, `pid`'s `fd`, of which `sock` is criu's copy.
pub fn socket_id(
    pid: i32,
    fd: i32,
    ino: u64,
    sock: OwnedFd,
    flags: u32,
    table: &std::sync::Mutex<FileTable>,
) -> Result<u32, FilesError> {
    let lock = || table.lock().unwrap_or_else(|e| e.into_inner());
    // Claimed now: a task read in parallel that holds the socket too gets this id.
    let (id, new) = lock().claim_socket(ino, FdTypes::Packetsk, |t| &mut t.packet.dumped);
    if !new {
        return Ok(id);
    }
    let mut seen = Seen::new(pid, fd, ino, "packet");
    let d = diag_of(sock.as_fd(), ino, table).map_err(|w| seen.fail(w))?;
    let fown = crate::fown::dump::read(pid, fd, flags)?;
    let entry = describe(sock.as_fd(), &d, &mut seen, flags)?;
    if let Some(e) = lock().entry_mut(id) {
        e.psk = Some(PacketSockEntry { id, fown, ..entry });
    }
    Ok(id)
}

/// The files.img id of the packet socket `ino` whose ring `pid` maps at `start`-`end`
/// (CRIU's `VMA_AREA_SOCKET` area names it so). The socket must be one of the task's fds, as
/// CRIU requires: restore maps the ring from the socket it gives the task. Called once the
/// task's fds are dumped; a task whose fd table its parent dumps describes the socket itself
/// (the same id either way).
pub fn mapped_ring(
    pid: i32,
    (start, end): (u64, u64),
    ino: u64,
    table: &std::sync::Mutex<FileTable>,
) -> Result<u32, FilesError> {
    let fail = |what: String| FilesError::Other {
        pid,
        what: format!("mapping {start:#x}-{end:#x} of socket:[{ino}]: {what}"),
    };
    let known = table
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .packet
        .dumped
        .get(&ino)
        .copied();
    if let Some(id) = known {
        return Ok(id);
    }
    let fds = criu_procfs::read_fds(pid).map_err(|source| FilesError::Proc {
        pid,
        what: "fd list".into(),
        source,
    })?;
    let Some(fd) = fds.into_iter().find_map(|(fd, target)| {
        matches!(target, criu_procfs::FdTarget::Socket(i) if i == ino).then_some(fd)
    }) else {
        return Err(fail(
            "the task holds no fd of this socket (a packet socket's ring mapped and its socket \
             closed); CRIU does not dump such a mapping either"
                .into(),
        ));
    };
    let info = crate::socket::dump_socket_fd(pid, fd, ino, table)?;
    if info.r#type != FdTypes::Packetsk as i32 {
        return Err(fail(format!(
            "fd {fd} is not a packet socket; only a packet socket's ring can be mapped back \
             (a TCP zero-copy or XDP area is not supported by this dump)"
        )));
    }
    Ok(info.id)
}

/// sock_diag's view of socket `ino`.
fn diag_of(
    sock: BorrowedFd<'_>,
    ino: u64,
    table: &std::sync::Mutex<FileTable>,
) -> Result<PacketDiag, String> {
    let lock = || table.lock().unwrap_or_else(|e| e.into_inner());
    let net = crate::sock_diag::netns_key(sock)
        .map_err(|e| format!("its network namespace (SIOCGSKNS): {e}"))?;
    // Not asked under the lock: other tasks' sockets of other kinds go on meanwhile.
    let known = lock().packet.diag.contains_key(&net);
    if !known {
        let list = crate::sock_diag::in_netns_of(sock, diag::list)
            .map_err(|e| format!("sock_diag (PACKET_DIAG): {e}"))?;
        lock().packet.diag.insert(net, list);
    }
    let t = lock();
    u32::try_from(ino)
        .ok()
        .and_then(|i| t.packet.diag.get(&net).and_then(|l| l.get(&i)))
        .cloned()
        .ok_or_else(|| "sock_diag (PACKET_DIAG) does not list it".to_string())
}

fn ring(r: &Ring) -> PacketRing {
    let [block_size, block_nr, frame_size, frame_nr, retire_tmo, sizeof_priv, features] = *r;
    PacketRing {
        block_size,
        block_nr,
        frame_size,
        frame_nr,
        retire_tmo,
        sizeof_priv,
        features,
    }
}

/// An option that is off unless the kernel says otherwise (an older kernel may not know it).
fn off_or_missing(sock: BorrowedFd<'_>, opt: i32) -> Result<i32, Errno> {
    match get_int(sock, libc::SOL_PACKET, opt) {
        Err(Errno::ENOPROTOOPT | Errno::EOPNOTSUPP) => Ok(0),
        r => r,
    }
}

fn describe(
    sock: BorrowedFd<'_>,
    d: &PacketDiag,
    seen: &mut Seen,
    flags: u32,
) -> Result<PacketSockEntry, SocketError> {
    let kind = u32::from(d.kind);
    // Made with the protocol in network order; sock_diag shows it in host order.
    let protocol = u32::from(d.num.to_be());
    seen.desc = format!(" ({}, protocol {:#06x})", type_name(kind), d.num);
    if ![libc::SOCK_RAW, libc::SOCK_DGRAM, super::SOCK_PACKET].contains(&(kind as i32)) {
        return Err(seen.fail("this packet socket type is not supported"));
    }
    let info = &d.info;
    let mut entry = PacketSockEntry {
        r#type: kind,
        protocol,
        flags,
        ifindex: info.ifindex,
        opts: crate::sk_opts::dump::read(sock, libc::AF_PACKET)
            .map_err(|(w, e)| seen.fail(format!("getsockopt({w}): {e}")))?,
        version: info.version,
        reserve: info.reserve,
        aux_data: info.flags & diag::PDI_AUXDATA != 0,
        orig_dev: info.flags & diag::PDI_ORIGDEV != 0,
        vnet_hdr: info.flags & diag::PDI_VNETHDR != 0,
        loss: info.flags & diag::PDI_LOSS != 0,
        timestamp: info.tstamp,
        copy_thresh: info.copy_thresh,
        rx_ring: d.rx_ring.as_ref().map(ring),
        tx_ring: d.tx_ring.as_ref().map(ring),
        ..Default::default()
    };
    // A SOCK_PACKET socket has no packet options: only its binding is kept.
    if kind as i32 == super::SOCK_PACKET {
        return Ok(entry);
    }
    // Options the images have no place for.
    for (name, o) in [
        ("PACKET_QDISC_BYPASS", opt::QDISC_BYPASS),
        ("PACKET_TX_HAS_OFF", opt::TX_HAS_OFF),
        ("PACKET_IGNORE_OUTGOING", opt::IGNORE_OUTGOING),
    ] {
        if off_or_missing(sock, o).map_err(|e| seen.fail(format!("getsockopt({name}): {e}")))? != 0
        {
            return Err(seen.fail(format!("{name} is on, and the images have no place for it")));
        }
    }
    let vnet = off_or_missing(sock, opt::VNET_HDR_SZ)
        .map_err(|e| seen.fail(format!("getsockopt(PACKET_VNET_HDR_SZ): {e}")))?;
    if vnet != 0 && vnet != super::VNET_HDR_LEN {
        return Err(seen.fail(format!(
            "a virtio-net header of {vnet} bytes (PACKET_VNET_HDR_SZ): the images keep only \
             PACKET_VNET_HDR's {} bytes",
            super::VNET_HDR_LEN
        )));
    }
    if d.fanout.is_some() {
        // getsockopt shows the group's flags too, which sock_diag leaves out.
        let fanout = get_int(sock, libc::SOL_PACKET, libc::PACKET_FANOUT)
            .map_err(|e| seen.fail(format!("getsockopt(PACKET_FANOUT): {e}")))?
            as u32;
        let mode = (fanout >> 16) & 0xff;
        if mode == super::FANOUT_CBPF || mode == super::FANOUT_EBPF {
            return Err(seen.fail(format!(
                "fanout group {} steers by a BPF program (mode {mode}), which the images \
                 cannot hold",
                fanout & 0xffff
            )));
        }
        entry.fanout = Some(fanout);
    }
    for m in &d.mclist {
        let addr = match m.kind {
            MR_MULTICAST | MR_UNICAST => m.addr.clone(),
            MR_PROMISC | MR_ALLMULTI => Vec::new(),
            k => {
                return Err(seen.fail(format!(
                    "a membership of unknown kind {k} on interface {}",
                    m.ifindex
                )))
            }
        };
        // A membership asked for n times is kept n times, so that it is asked n times again.
        for _ in 0..m.count.max(1) {
            entry.mclist.push(PacketMclist {
                index: m.ifindex,
                r#type: u32::from(m.kind),
                addr: addr.clone(),
            });
        }
    }
    let queued = criu_sys::sockopt::queue_len(sock, criu_sys::sockopt::Queue::In).unwrap_or(0);
    if queued > 0 {
        tracing::warn!(
            "{}: {queued} bytes of packets queued to be read are dropped, as CRIU does",
            seen.fail("").to_string().trim_end_matches(": ")
        );
    }
    Ok(entry)
}
