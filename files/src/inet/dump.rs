//! Inet sockets of a dump, described from criu's copy of the task's socket (pidfd_getfd):
//! family, type and protocol from the socket options, addresses from getsockname and
//! getpeername, the TCP state from TCP_INFO. A TCP connection is dumped only with
//! `--tcp-established` (or `--tcp-close`): it is locked off the network, put in repair mode,
//! read (`repair::save`) and taken out of repair mode at once, so that a criu that dies leaves
//! the task's own calls on it failing for no longer than that (the lock keeps its state still
//! meanwhile). A tree the dump kills has its connections put back in repair mode first
//! (`InetSockets::hold`), so that its death closes them without a packet.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use criu_proto::images::{FdTypes, InetSkEntry};
use criu_proto::{ImageKind, ImageWriter};
use criu_sys::sockopt::get_int;
use nix::sys::socket::{getsockname, SockaddrStorage};

use super::addr::{any, from_storage, to_words};
use super::repair::{self, Stream};
use super::state::{self, CLOSE, ESTABLISHED, LISTEN};
use crate::socket::{Seen, SocketError};
use crate::table::{FileTable, FilesError};

/// What the dump does with TCP connections.
#[derive(Debug, Clone, Default)]
pub struct TcpOptions {
    /// `--tcp-established`: connections are dumped through repair mode.
    pub established: bool,
    /// `--tcp-close`: connections are dumped as closed sockets.
    pub close: bool,
    /// `--skip-in-flight`: connections not accepted yet are left behind.
    pub skip_in_flight: bool,
    /// Called before a connection enters repair mode; None when nothing needs to be done.
    pub guard: Option<ConnGuard>,
}

/// A connection about to enter repair mode, as the guard sees it.
pub struct Entering<'a> {
    /// criu's copy of the socket.
    pub sock: BorrowedFd<'a>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Its SO_REUSEADDR, which leaving repair mode must set again.
    pub reuseaddr: bool,
}

/// Given by the orchestrator: locks the connection off the network (unless its whole
/// namespace is locked) and makes sure it leaves repair mode even if criu dies.
#[derive(Clone)]
pub struct ConnGuard(pub std::sync::Arc<GuardFn>);

pub type GuardFn = dyn Fn(&Entering<'_>) -> Result<(), String> + Send + Sync;

impl std::fmt::Debug for ConnGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnGuard")
    }
}

/// A connection read through repair mode, with its ends.
#[derive(Debug)]
pub struct Repaired {
    pub sock: OwnedFd,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Its SO_REUSEADDR before repair mode, set again when it leaves it.
    pub reuseaddr: bool,
}

/// A sock_diag list: (network namespace (dev, inode), family, protocol).
type DiagKey = ((u64, u64), i32, i32);

/// The inet sockets of one dump.
#[derive(Debug, Default)]
pub struct InetSockets {
    /// files.img ids by socket inode.
    dumped: HashMap<u64, u32>,
    /// Connections read through repair mode, by socket inode, for tcp-stream-INO.img.
    streams: Vec<(u32, Stream)>,
    /// criu's copies of the connections read through repair mode.
    pub repaired: Vec<Repaired>,
    /// The kernel's lists by (network namespace, family, protocol), asked for when first
    /// needed.
    diag: HashMap<DiagKey, HashMap<u32, super::diag::InetDiag>>,
    /// The tree's own network namespace (dev, inode), when it has one: the one the dump
    /// locks (see [`InetSockets::set_tree_netns`]).
    tree_netns: Option<(u64, u64)>,
}

impl InetSockets {
    /// sock_diag's view of socket `ino` (`sock`) of `family` and `proto`, asked in the
    /// socket's own network namespace.
    fn diag(
        &mut self,
        (sock, net): (BorrowedFd<'_>, (u64, u64)),
        family: i32,
        proto: i32,
        ino: u32,
    ) -> Result<Option<super::diag::InetDiag>, String> {
        let list = match self.diag.entry((net, family, proto)) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(
                crate::sock_diag::in_netns_of(sock, || super::diag::list(family, proto))
                    .map_err(|e| format!("sock_diag: {e}"))?,
            ),
        };
        Ok(list.get(&ino).cloned())
    }

    /// The tree has a network namespace of its own, `pid`'s.
    pub fn set_tree_netns(&mut self, pid: i32) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(format!("/proc/{pid}/ns/net"))?;
        self.tree_netns = Some((m.dev(), m.ino()));
        Ok(())
    }

    /// Whether the tree has a network namespace of its own.
    pub fn tree_has_netns(&self) -> bool {
        self.tree_netns.is_some()
    }

    /// A failed dump, or one whose tree runs on: every connection is out of repair mode
    /// (one left in it by a failure is taken out). Returns the (local, remote) ends, for the
    /// caller to unlock.
    pub fn resume(&mut self) -> Vec<(SocketAddr, SocketAddr)> {
        self.repaired
            .drain(..)
            .map(|r| {
                let sock = r.sock.as_fd();
                if repair::is_on(sock).unwrap_or(true) {
                    if let Err(e) = repair::leave(sock, r.reuseaddr) {
                        tracing::error!("{} -> {}: {e}", r.local, r.remote);
                    }
                }
                (r.local, r.remote)
            })
            .collect()
    }

    /// The dump stands and the tree is about to be killed or left stopped: every connection
    /// goes back into repair mode, so that closing it sends nothing (the restore makes it
    /// again). Goes on past a failure and reports the first.
    pub fn hold(&self) -> Result<(), String> {
        let mut first = Ok(());
        for r in &self.repaired {
            if let Err(e) = repair::repair_on(r.sock.as_fd()) {
                let e = format!("{} -> {}: {e}", r.local, r.remote);
                tracing::error!("{e}");
                first = first.and(Err(e));
            }
        }
        first
    }

    /// The ends of every connection read through repair mode.
    pub fn connections(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.repaired.iter().map(|r| (r.local, r.remote)).collect()
    }
}

fn kind_name(kind: i32, proto: i32) -> String {
    let k = match kind {
        libc::SOCK_STREAM => "stream",
        libc::SOCK_DGRAM => "datagram",
        libc::SOCK_RAW => "raw",
        _ => "other-type",
    };
    let p = match proto {
        libc::IPPROTO_TCP => "TCP".to_string(),
        libc::IPPROTO_UDP => "UDP".to_string(),
        libc::IPPROTO_UDPLITE => "UDP-Lite".to_string(),
        libc::IPPROTO_ICMP => "ICMP".to_string(),
        libc::IPPROTO_ICMPV6 => "ICMPv6".to_string(),
        libc::IPPROTO_MPTCP => "MPTCP".to_string(),
        0 => "IP".to_string(),
        n => format!("protocol {n}"),
    };
    format!(" ({k}, {p}")
}

/// The files.img id of inet socket `ino`, `pid`'s `fd`, of which `sock` is criu's copy.
pub fn socket_id(
    pid: i32,
    fd: i32,
    ino: u64,
    sock: OwnedFd,
    family: i32,
    flags: u32,
    table: &std::sync::Mutex<FileTable>,
) -> Result<u32, FilesError> {
    let lock = || table.lock().unwrap_or_else(|e| e.into_inner());
    // Tasks are read in parallel: the socket is read (a connection locked and repaired) once,
    // and every task holding it gets this id.
    let (id, new) = lock().claim_socket(ino, FdTypes::Inetsk, |t| &mut t.inet.dumped);
    if !new {
        return Ok(id);
    }
    let name = if family == libc::AF_INET6 {
        "IPv6"
    } else {
        "IPv4"
    };
    let mut seen = Seen::new(pid, fd, ino, name);
    let (tcp, fown, tree_netns) = {
        let t = lock();
        let fown = crate::fown::dump::read(pid, fd, flags)?;
        (t.opts.tcp.clone(), fown, t.inet.tree_netns)
    };
    let net = crate::sock_diag::netns_key(sock.as_fd())
        .map_err(|e| seen.fail(format!("its network namespace (SIOCGSKNS): {e}")))?;
    // Only the tree's own network namespace is locked: a connection of one below it would
    // change while it is read.
    let locked = tree_netns.is_none_or(|t| t == net);
    let diag = |proto| {
        lock()
            .inet
            .diag((sock.as_fd(), net), family, proto, ino as u32)
    };
    let (mut entry, stream) = describe(
        sock.as_fd(),
        family,
        &mut seen,
        flags,
        (&tcp, locked),
        &diag,
    )?;
    entry.fown = fown;
    let reuseaddr = entry.opts.reuseaddr == Some(true);
    let mut t = lock();
    if let Some(e) = t.entry_mut(id) {
        e.isk = Some(InetSkEntry { id, ..entry });
    }
    if let Some((stream, local, remote)) = stream {
        t.inet.streams.push((ino as u32, stream));
        t.inet.repaired.push(Repaired {
            sock,
            local,
            remote,
            reuseaddr,
        });
    }
    Ok(id)
}

type Dumped = (InetSkEntry, Option<(Stream, SocketAddr, SocketAddr)>);

/// sock_diag's view of the socket, by protocol.
type DiagOf<'a> = dyn Fn(i32) -> Result<Option<super::diag::InetDiag>, String> + 'a;

/// Describes `sock`, of `family` (AF_INET or AF_INET6); `locked`: it is in the network
/// namespace the dump locked (or the tree has none of its own).
fn describe(
    sock: BorrowedFd<'_>,
    family: i32,
    seen: &mut Seen,
    flags: u32,
    (tcp, locked): (&TcpOptions, bool),
    diag: &DiagOf<'_>,
) -> Result<Dumped, SocketError> {
    let opt = |name: &str, opt| {
        get_int(sock, libc::SOL_SOCKET, opt).map_err(|e| format!("getsockopt({name}): {e}"))
    };
    let kind = opt("SO_TYPE", libc::SO_TYPE).map_err(|w| seen.fail(w))?;
    let proto = opt("SO_PROTOCOL", libc::SO_PROTOCOL).map_err(|w| seen.fail(w))?;
    seen.desc = kind_name(kind, proto) + ")";
    let supported = kind == libc::SOCK_RAW
        || matches!(
            (kind, proto),
            (libc::SOCK_STREAM, libc::IPPROTO_TCP)
                | (
                    libc::SOCK_DGRAM,
                    libc::IPPROTO_UDP
                        | libc::IPPROTO_UDPLITE
                        | libc::IPPROTO_ICMP
                        | libc::IPPROTO_ICMPV6
                )
        );
    if !supported {
        let hint = if proto == libc::IPPROTO_MPTCP {
            " (for Go programs, GODEBUG=multipathtcp=0 turns MPTCP off)"
        } else {
            ""
        };
        return Err(seen.fail(format!(
            "this socket type and protocol are not supported{hint}"
        )));
    }
    let local = getsockname::<SockaddrStorage>(std::os::fd::AsRawFd::as_raw_fd(&sock))
        .ok()
        .and_then(|a| from_storage(&a));
    let remote =
        super::addr::peer_name(sock, family).map_err(|e| seen.fail(format!("SO_PEERNAME: {e}")))?;
    let is_tcp = kind == libc::SOCK_STREAM;
    let (state, backlog) = if is_tcp {
        tcp_state(sock).map_err(|e| seen.fail(format!("TCP_INFO: {e}")))?
    } else if remote.is_some() {
        (ESTABLISHED, (0, 0))
    } else {
        (CLOSE, (0, 0))
    };
    seen.desc = format!("{}, {})", kind_name(kind, proto), state::name(state));
    let mut entry = InetSkEntry {
        ino: seen.ino as u32,
        family: family as u32,
        r#type: kind as u32,
        proto: proto as u32,
        state,
        src_port: local.map_or(0, |a| u32::from(a.port())),
        dst_port: remote.map_or(0, |a| u32::from(a.port())),
        flags,
        backlog: backlog.1,
        src_addr: to_words(local.map_or(any(family), |a| a.ip())),
        dst_addr: to_words(remote.map_or(any(family), |a| a.ip())),
        opts: crate::sk_opts::dump::read(sock, family)
            .map_err(|(w, e)| seen.fail(format!("getsockopt({w}): {e}")))?,
        ip_opts: Some(
            super::opts::read_ip(sock, family, kind, proto)
                .map_err(|(w, e)| seen.fail(format!("getsockopt({w}): {e}")))?,
        ),
        ..Default::default()
    };
    if family == libc::AF_INET6 {
        // A link-local source is bound with the device's index as scope (which binds the
        // socket to it): as CRIU, the device's name goes in `ifname`, and the restore binds
        // with the index it has then.
        let link_local = local.is_some_and(|a| match a.ip() {
            std::net::IpAddr::V6(ip) => (ip.segments()[0] & 0xffc0) == 0xfe80,
            std::net::IpAddr::V4(_) => false,
        });
        if link_local && entry.src_port != 0 {
            entry.ifname = entry.opts.so_bound_dev.clone();
        }
        entry.v6only = Some(
            get_int(sock, libc::SOL_IPV6, libc::IPV6_V6ONLY)
                .map_err(|e| seen.fail(format!("IPV6_V6ONLY: {e}")))?
                != 0,
        );
    }
    // CRIU's images have no field for a transparent proxy's option: refused, not lost.
    let (level, transparent) = if family == libc::AF_INET6 {
        (libc::SOL_IPV6, libc::IPV6_TRANSPARENT)
    } else {
        (libc::SOL_IP, libc::IP_TRANSPARENT)
    };
    if get_int(sock, level, transparent).unwrap_or(0) != 0 {
        return Err(seen.fail("IP_TRANSPARENT is on, and CRIU's images have no place for it"));
    }
    if matches!(proto, libc::IPPROTO_UDP | libc::IPPROTO_UDPLITE) && kind != libc::SOCK_RAW {
        if get_int(sock, libc::SOL_UDP, libc::UDP_CORK)
            .map_err(|e| seen.fail(format!("UDP_CORK: {e}")))?
            != 0
        {
            return Err(seen.fail("a corked datagram socket cannot be dumped"));
        }
        let queued = criu_sys::sockopt::queue_len(sock, criu_sys::sockopt::Queue::In).unwrap_or(0);
        if queued > 0 {
            tracing::warn!(
                "{}: {queued} bytes queued to be read are dropped, as CRIU does",
                seen.fail("").to_string().trim_end_matches(": ")
            );
        }
        // Shut-down directions of a datagram socket show only in sock_diag.
        if let Some(d) = diag(proto).map_err(|w| seen.fail(w))? {
            entry.shutdown = (d.shutdown & 3 != 0).then_some(i32::from(d.shutdown & 3));
        }
    }
    if !is_tcp {
        return Ok((entry, None));
    }
    entry.tcp_opts = Some(
        super::opts::read_tcp(sock).map_err(|(w, e)| seen.fail(format!("getsockopt({w}): {e}")))?,
    );
    if state == LISTEN && backlog.0 > 0 && !tcp.skip_in_flight {
        return Err(seen.fail(format!(
            "{} connections wait in the accept queue (--skip-in-flight leaves them behind)",
            backlog.0
        )));
    }
    if state == CLOSE {
        // A socket that was shut down before it connected shows it only through poll.
        let rdhup = nix::poll::PollFlags::from_bits_retain(libc::POLLRDHUP);
        let mut pfd = [nix::poll::PollFd::new(sock, rdhup)];
        if nix::poll::poll(&mut pfd, nix::poll::PollTimeout::ZERO).is_ok() {
            let ev = pfd[0].revents().unwrap_or(nix::poll::PollFlags::empty());
            if ev.contains(nix::poll::PollFlags::POLLHUP) && ev.contains(rdhup) {
                entry.shutdown = Some(criu_proto::images::SkShutdown::Read as i32);
            }
        }
    }
    if !super::is_connection(state, entry.dst_port) || tcp.close {
        return Ok((entry, None));
    }
    if !tcp.established {
        return Err(
            seen.fail("a TCP connection is dumped only with --tcp-established (or --tcp-close)")
        );
    }
    if !locked {
        return Err(seen.fail(
            "a TCP connection of a network namespace below the tree's own is not dumped (only \
             the tree's namespace is locked)",
        ));
    }
    let (Some(local), Some(remote)) = (local, remote) else {
        return Err(seen.fail("a connection without both addresses"));
    };
    let reuseaddr = entry.opts.reuseaddr == Some(true);
    if let Some(guard) = &tcp.guard {
        let entering = Entering {
            sock,
            local,
            remote,
            reuseaddr,
        };
        (guard.0)(&entering).map_err(|e| seen.fail(e))?;
    }
    repair::repair_on(sock).map_err(|e| seen.fail(e.to_string()))?;
    let stream = repair::save(sock).map_err(|e| seen.fail(e.to_string()));
    let left = repair::leave(sock, reuseaddr).map_err(|e| seen.fail(e.to_string()));
    let stream = stream?;
    left?;
    entry.state = stream.state;
    Ok((entry, Some((stream, local, remote))))
}

/// A TCP socket's state and, listening: (connections waiting, backlog).
fn tcp_state(sock: BorrowedFd<'_>) -> Result<(u32, (u32, u32)), nix::errno::Errno> {
    let mut info = [0u8; 32];
    criu_sys::sockopt::get_bytes(sock, libc::SOL_TCP, libc::TCP_INFO, &mut info)?;
    let word = |i: usize| u32::from_ne_bytes([info[i], info[i + 1], info[i + 2], info[i + 3]]);
    let state = u32::from(info[0]);
    // For a listener, tcpi_unacked and tcpi_sacked are the accept queue and its limit.
    let backlog = if state == LISTEN {
        (word(24), word(28))
    } else {
        (0, 0)
    };
    Ok((state, backlog))
}

/// Writes tcp-stream-INO.img of every connection.
pub fn finish(table: &mut FileTable, dir: &Path) -> Result<(), criu_proto::Error> {
    for (ino, s) in &table.inet.streams {
        let mut w = ImageWriter::create(dir, &ImageKind::TCP_STREAM, Some(u64::from(*ino)))?;
        w.write(&s.entry)?;
        w.write_payload(&s.inq)?;
        w.write_payload(&s.outq)?;
        w.finish()?;
    }
    Ok(())
}
