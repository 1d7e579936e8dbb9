//! Packet sockets at restore, made in criu (in the tree's network namespace) before the tasks
//! take them: bound to the dumped interface, options, memberships and rings set in the order
//! the kernel accepts them (the version and reserve before a ring), fanout last.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use criu_proto::dump_images::DumpImages;
use criu_proto::images::{FdTypes, PacketRing, PacketSockEntry};
use criu_sys::sockopt::{bind_packet, bind_packet_name, set_bytes, set_int};
use nix::errno::Errno;

use crate::registry::{SharedError, SharedFiles};

#[derive(Debug, thiserror::Error)]
#[error("packet socket (file {id}, {desc}): {what}")]
pub struct PacketRestoreError {
    pub id: u32,
    /// Type and protocol.
    pub desc: String,
    pub what: String,
}

/// Makes every packet socket a task's fd names and hands each to `shared`.
pub fn open_all(images: &DumpImages, shared: &mut SharedFiles) -> Result<(), SharedError> {
    let entries = shared.to_make(images, FdTypes::Packetsk, "psk", |f| f.psk.as_ref())?;
    for (id, e) in entries {
        let fail = |what: String| PacketRestoreError {
            id,
            desc: format!(
                "{}, protocol {:#06x}",
                super::type_name(e.r#type),
                (e.protocol as u16).to_be()
            ),
            what,
        };
        let sock = shared
            .netns
            .run(e.ns_id, || make(e))
            .and_then(|r| r)
            .map_err(fail)?;
        crate::sk_opts::restore::apply(sock.as_fd(), &e.opts)
            .map_err(|(w, err)| fail(format!("{w}: {err}")))?;
        set_status_flags(&sock, e.flags).map_err(fail)?;
        shared.restore_fown(id, &sock, &e.fown)?;
        shared.add_description(id, sock);
    }
    Ok(())
}

/// The file status flags a socket can be given again (O_NONBLOCK, O_ASYNC, ...).
pub(crate) fn set_status_flags(sock: &OwnedFd, flags: u32) -> Result<(), String> {
    let settable = flags as i32 & (libc::O_NONBLOCK | libc::O_APPEND | libc::O_ASYNC);
    nix::fcntl::fcntl(
        sock,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::from_bits_retain(settable)),
    )
    .map(drop)
    .map_err(|err| format!("F_SETFL: {err}"))
}

fn sys(what: &'static str) -> impl Fn(Errno) -> String {
    move |e| format!("{what}: {e}")
}

/// The name of interface `index` in criu's (the tree's) network namespace.
fn if_name(index: u32) -> Result<String, String> {
    let all = nix::net::if_::if_nameindex().map_err(sys("if_nameindex"))?;
    all.iter()
        .find(|i| i.index() == index)
        .map(|i| i.name().to_string_lossy().into_owned())
        .ok_or_else(|| format!("no interface has index {index}"))
}

fn make(e: &PacketSockEntry) -> Result<OwnedFd, String> {
    let kind = e.r#type as i32;
    if ![libc::SOCK_RAW, libc::SOCK_DGRAM, super::SOCK_PACKET].contains(&kind) {
        return Err("this packet socket type is not supported".into());
    }
    let sock = criu_sys::sockopt::socket(libc::AF_PACKET, kind, e.protocol as i32)
        .map_err(sys("socket"))?;
    let fd = sock.as_fd();
    if kind == super::SOCK_PACKET {
        if e.ifindex > 0 {
            let name = if_name(e.ifindex)?;
            bind_packet_name(fd, &name).map_err(|err| format!("bind to {name}: {err}"))?;
        }
        return Ok(sock);
    }
    bind_packet(fd, e.ifindex as i32)
        .map_err(|err| format!("bind to interface {}: {err}", e.ifindex))?;
    let int = |name: &'static str, opt, v: u32| {
        set_int(fd, libc::SOL_PACKET, opt, v as i32).map_err(sys(name))
    };
    // Defaults are left alone: PACKET_COPY_THRESH, for one, is gone from newer kernels.
    for (name, opt, v) in [
        ("PACKET_VERSION", libc::PACKET_VERSION, e.version),
        ("PACKET_RESERVE", libc::PACKET_RESERVE, e.reserve),
        ("PACKET_TIMESTAMP", libc::PACKET_TIMESTAMP, e.timestamp),
        ("PACKET_COPY_THRESH", super::opt::COPY_THRESH, e.copy_thresh),
        (
            "PACKET_AUXDATA",
            libc::PACKET_AUXDATA,
            u32::from(e.aux_data),
        ),
        (
            "PACKET_ORIGDEV",
            libc::PACKET_ORIGDEV,
            u32::from(e.orig_dev),
        ),
        (
            "PACKET_VNET_HDR",
            libc::PACKET_VNET_HDR,
            u32::from(e.vnet_hdr),
        ),
        ("PACKET_LOSS", libc::PACKET_LOSS, u32::from(e.loss)),
    ] {
        if v != 0 {
            int(name, opt, v)?;
        }
    }
    for m in &e.mclist {
        add_membership(fd, m.index, m.r#type, &m.addr)?;
    }
    if let Some(r) = &e.rx_ring {
        set_ring(fd, libc::PACKET_RX_RING, r).map_err(sys("PACKET_RX_RING"))?;
    }
    if let Some(r) = &e.tx_ring {
        set_ring(fd, libc::PACKET_TX_RING, r).map_err(sys("PACKET_TX_RING"))?;
    }
    if let Some(f) = e.fanout.filter(|&f| f != u32::MAX) {
        int("PACKET_FANOUT", libc::PACKET_FANOUT, f)
            .map_err(|err| format!("fanout group {}: {err}", f & 0xffff))?;
    }
    Ok(sock)
}

/// PACKET_ADD_MEMBERSHIP with the kernel's largest request (struct packet_mreq_max: index,
/// kind, address length, 32 address bytes).
fn add_membership(fd: BorrowedFd<'_>, index: u32, kind: u32, addr: &[u8]) -> Result<(), String> {
    if addr.len() > 32 {
        return Err(format!("a membership address of {} bytes", addr.len()));
    }
    let mut req = [0u8; 40];
    req[..4].copy_from_slice(&index.to_ne_bytes());
    req[4..6].copy_from_slice(&(kind as u16).to_ne_bytes());
    req[6..8].copy_from_slice(&(addr.len() as u16).to_ne_bytes());
    req[8..8 + addr.len()].copy_from_slice(addr);
    set_bytes(fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &req)
        .map_err(|err| format!("membership of kind {kind} on interface {index}: {err}"))
}

/// A ring as struct tpacket_req3 (the kernel reads only the first four words for versions 1
/// and 2).
fn set_ring(fd: BorrowedFd<'_>, opt: i32, r: &PacketRing) -> Result<(), Errno> {
    let words = [
        r.block_size,
        r.block_nr,
        r.frame_size,
        r.frame_nr,
        r.retire_tmo,
        r.sizeof_priv,
        r.features,
    ];
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    set_bytes(fd, libc::SOL_PACKET, opt, &bytes)
}
