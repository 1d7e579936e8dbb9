//! Inet sockets at restore, made in criu (in the tree's network namespace) before the tasks
//! take them. Every socket is made with SO_REUSEADDR and SO_REUSEPORT on, as several may share
//! a port; listeners and plain sockets first (bind, listen, connect for datagrams), then the
//! connections through repair mode, then each socket's own reuse options. Connections stay in
//! repair mode until every task is back (`TcpRepair::leave`).

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use criu_proto::dump_images::DumpImages;
use criu_proto::images::{FdTypes, InetSkEntry, TcpStreamEntry};
use criu_proto::{ImageKind, ImageReader};
use criu_sys::sockopt::set_int;
use nix::errno::Errno;
use nix::sys::socket::{self, SockaddrStorage};

use super::addr::from_words;
use super::repair::{self, Stream};
use super::state::LISTEN;
use crate::registry::{RestoreFileOptions, SharedError, SharedFiles};

#[derive(Debug, thiserror::Error)]
#[error("inet socket {ino:#x} (file {id}): {what}")]
pub struct InetRestoreError {
    pub id: u32,
    pub ino: u32,
    pub what: String,
}

/// Connections restored in repair mode: criu's copy of each and its dumped SO_REUSEADDR.
#[derive(Debug, Default)]
pub struct TcpRepair(Vec<(OwnedFd, bool)>);

impl TcpRepair {
    /// Every connection leaves repair mode (the kernel then forgets SO_REUSEADDR, which is set
    /// again). Called once every task holds its sockets, while the network is still locked.
    pub fn leave(&self) -> Result<(), String> {
        for (sock, reuseaddr) in &self.0 {
            repair::leave(sock.as_fd(), *reuseaddr).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// The ends of every TCP connection of the images (local, remote), for the network unlock.
pub fn connections(images: &DumpImages) -> Vec<(SocketAddr, SocketAddr)> {
    images
        .files
        .values()
        .filter_map(|f| f.isk.as_ref())
        .filter(|e| e.proto == libc::IPPROTO_TCP as u32 && e.r#type == libc::SOCK_STREAM as u32)
        .filter(|e| super::is_connection(e.state, e.dst_port))
        .filter_map(ends)
        .filter_map(|(l, r)| Some((l, r?)))
        .collect()
}

/// Makes every inet socket a task's fd names and hands each to `shared`.
pub fn open_all(
    images: &DumpImages,
    opts: &RestoreFileOptions,
    shared: &mut SharedFiles,
) -> Result<(), SharedError> {
    let mut entries = shared.to_make(images, FdTypes::Inetsk, "isk", |f| f.isk.as_ref())?;
    // Listeners and plain sockets before connections, whose repair mode forces their ports.
    entries.sort_by_key(|(_, e)| is_tcp_connection(e));
    let mut made = Vec::with_capacity(entries.len());
    for (id, e) in entries {
        let fail = |what: String| InetRestoreError {
            id,
            ino: e.ino,
            what,
        };
        let net = &shared.netns;
        let sock = make(images, e, opts, net, &mut shared.tcp_repair).map_err(fail)?;
        made.push((id, e, sock));
    }
    for (id, e, sock) in made {
        let fail = |what: String| InetRestoreError {
            id,
            ino: e.ino,
            what,
        };
        let reuse = |name, opt, on: Option<bool>| {
            set_int(
                sock.as_fd(),
                libc::SOL_SOCKET,
                opt,
                i32::from(on == Some(true)),
            )
            .map_err(|err| fail(format!("{name}: {err}")))
        };
        reuse("SO_REUSEADDR", libc::SO_REUSEADDR, e.opts.reuseaddr)?;
        reuse("SO_REUSEPORT", libc::SO_REUSEPORT, e.opts.so_reuseport)?;
        let settable = e.flags as i32 & (libc::O_NONBLOCK | libc::O_APPEND | libc::O_ASYNC);
        nix::fcntl::fcntl(
            &sock,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::from_bits_retain(settable)),
        )
        .map_err(|err| fail(format!("F_SETFL: {err}")))?;
        shared.restore_fown(id, &sock, &e.fown)?;
        shared.add_description(id, sock);
    }
    Ok(())
}

fn is_tcp_connection(e: &InetSkEntry) -> bool {
    e.proto == libc::IPPROTO_TCP as u32
        && e.r#type == libc::SOCK_STREAM as u32
        && super::is_connection(e.state, e.dst_port)
}

/// The socket's own address and its peer's, if it has one.
fn ends(e: &InetSkEntry) -> Option<(SocketAddr, Option<SocketAddr>)> {
    let family = e.family as i32;
    let local = SocketAddr::new(from_words(family, &e.src_addr)?, e.src_port as u16);
    let remote = (e.dst_port != 0)
        .then(|| from_words(family, &e.dst_addr))
        .flatten();
    Some((
        local,
        remote.map(|ip| SocketAddr::new(ip, e.dst_port as u16)),
    ))
}

fn sys(what: &'static str) -> impl Fn(Errno) -> String {
    move |e| format!("{what}: {e}")
}

fn make(
    images: &DumpImages,
    e: &InetSkEntry,
    opts: &RestoreFileOptions,
    netns: &crate::netns::NetNamespaces,
    repaired: &mut TcpRepair,
) -> Result<OwnedFd, String> {
    let family = e.family as i32;
    if family != libc::AF_INET && family != libc::AF_INET6 {
        return Err(format!("family {family} is not an inet family"));
    }
    let kind = e.r#type as i32;
    if ![libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_RAW].contains(&kind) {
        return Err(format!("socket type {kind} is not supported"));
    }
    let (local, remote) = ends(e).ok_or("the image's addresses are cut short")?;
    let icmp = kind == libc::SOCK_DGRAM
        && matches!(e.proto as i32, libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6);
    let make = if icmp {
        criu_sys::sockopt::ping_socket
    } else {
        criu_sys::sockopt::socket
    };
    let sock = netns
        .run(e.ns_id, || {
            make(family, kind | libc::SOCK_NONBLOCK, e.proto as i32)
        })?
        .map_err(sys("socket"))?;
    let fd = sock.as_fd();
    let int = |name: &'static str, level, opt, v| set_int(fd, level, opt, v).map_err(sys(name));
    if e.v6only == Some(true) {
        int("IPV6_V6ONLY", libc::SOL_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    int("SO_REUSEADDR", libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    int("SO_REUSEPORT", libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    let proto = e.proto as i32;
    if is_tcp_connection(e) && !opts.tcp_close {
        let remote = remote.ok_or("a connection without a peer address")?;
        if !opts.tcp_established {
            return Err("the images hold a TCP connection: restore it with --tcp-established (or --tcp-close)".into());
        }
        repair::repair_on(fd).map_err(|e| e.to_string())?;
        let stream = read_stream(images, e)?;
        repair::restore(fd, &stream, local, remote).map_err(|e| e.to_string())?;
        repaired.0.push((
            sock.try_clone().map_err(|e| format!("dup: {e}"))?,
            e.opts.reuseaddr == Some(true),
        ));
    } else if is_tcp_connection(e) {
        // --tcp-close: a socket that reads as a closed connection (end of file, POLLHUP,
        // EPIPE): shutting down a socket that never connected marks it so.
        shutdown(fd, 3)?;
    } else {
        let icmp = matches!(proto, libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6);
        if e.src_port != 0 && !icmp {
            bind(fd, e, local)?;
        }
        if e.state == LISTEN {
            socket::listen(
                &sock,
                socket::Backlog::new(e.backlog as i32).unwrap_or(socket::Backlog::MAXCONN),
            )
            .map_err(sys("listen"))?;
        }
        if let Some(remote) = remote {
            socket::connect(sock.as_raw_fd(), &SockaddrStorage::from(remote))
                .map_err(sys("connect"))?;
        }
    }
    if let Some(ip) = &e.ip_opts {
        super::opts::apply_ip(fd, e.family as i32, proto, ip)
            .map_err(|(w, err)| format!("{w}: {err}"))?;
    }
    crate::sk_opts::restore::apply(fd, &e.opts).map_err(|(w, err)| format!("{w}: {err}"))?;
    if let Some(t) = &e.tcp_opts {
        super::opts::apply_tcp(fd, t).map_err(|(w, err)| format!("{w}: {err}"))?;
    }
    if let Some(how) = e.shutdown.filter(|_| !is_tcp_connection(e)) {
        shutdown(fd, how)?;
    }
    Ok(sock)
}

fn bind(fd: BorrowedFd<'_>, e: &InetSkEntry, mut local: SocketAddr) -> Result<(), String> {
    if let (SocketAddr::V6(v6), Some(name)) = (&mut local, e.ifname.as_deref()) {
        let index = nix::net::if_::if_nametoindex(name)
            .map_err(|err| format!("interface {name}: {err}"))?;
        v6.set_scope_id(index);
    }
    // A new IPv6 address is tentative for a while: binding it needs IP_FREEBIND meanwhile.
    let freebind = e.family as i32 == libc::AF_INET6 && e.r#type as i32 != libc::SOCK_RAW;
    if freebind {
        set_int(fd, libc::SOL_IP, libc::IP_FREEBIND, 1).map_err(sys("IP_FREEBIND"))?;
    }
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(local))
        .map_err(|err| format!("bind to {local}: {err}"))?;
    // The dumped value, if on, comes back with the other IP options.
    if freebind {
        set_int(fd, libc::SOL_IP, libc::IP_FREEBIND, 0).map_err(sys("IP_FREEBIND"))?;
    }
    Ok(())
}

fn shutdown(fd: BorrowedFd<'_>, how: i32) -> Result<(), String> {
    let how = match how {
        1 => socket::Shutdown::Read,
        2 => socket::Shutdown::Write,
        3 => socket::Shutdown::Both,
        _ => return Ok(()),
    };
    match socket::shutdown(fd.as_raw_fd(), how) {
        Ok(()) | Err(Errno::ENOTCONN) => Ok(()),
        Err(err) => Err(format!("shutdown: {err}")),
    }
}

/// tcp-stream-INO.img: the connection's state and its two queues.
fn read_stream(images: &DumpImages, e: &InetSkEntry) -> Result<Stream, String> {
    let mut img = ImageReader::open(&images.dir, &ImageKind::TCP_STREAM, Some(u64::from(e.ino)))
        .map_err(|err| err.to_string())?;
    let entry: TcpStreamEntry = img
        .read()
        .map_err(|err| err.to_string())?
        .ok_or("tcp-stream image without an entry")?;
    let inq = img
        .read_payload(u64::from(entry.inq_len))
        .map_err(|err| err.to_string())?;
    let outq = img
        .read_payload(u64::from(entry.outq_len))
        .map_err(|err| err.to_string())?;
    if entry.unsq_len.unwrap_or(0) > entry.outq_len {
        return Err(format!(
            "{} unsent bytes in a send queue of {}",
            entry.unsq_len.unwrap_or(0),
            entry.outq_len
        ));
    }
    Ok(Stream {
        state: e.state,
        entry,
        inq,
        outq,
    })
}
