//! Socket probes: sock_diag per family, TCP repair, socket options, socket netns, unix socket
//! files, tun.

use super::nl::{Nl, NLM_F_DUMP, NLM_F_REQUEST};
use super::{check_ret, missing, own_fd, sys, ProbeError, ProbeResult};
use nix::errno::Errno;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

fn socket(family: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> Result<OwnedFd, ProbeError> {
    // SAFETY: plain socket(2) with integer arguments.
    let fd = unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, proto) };
    Ok(own_fd(check_ret(fd as libc::c_long).map_err(sys(
        format!("socket({family}, {ty}, {proto})"),
    ))?))
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    val: libc::c_int,
) -> Result<(), Errno> {
    // SAFETY: passes a live int of the stated size.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &val as *const libc::c_int as *const libc::c_void,
            4,
        )
    };
    check_ret(ret as libc::c_long).map(drop)
}

/// getsockopt into `buf`; returns the length the kernel reported.
fn getsockopt_buf(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    buf: &mut [u8],
) -> Result<usize, Errno> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is live and `len` bytes long.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            level,
            opt,
            buf.as_mut_ptr() as *mut libc::c_void,
            &mut len,
        )
    };
    check_ret(ret as libc::c_long).map(|_| len as usize)
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const IPPROTO_UDPLITE: u8 = 136;
const IPPROTO_RAW: u8 = 255;
const NDIAG_PROTO_ALL: u8 = 255;

/// One sock_diag dump request: family, protocol and the request body.
fn diag_request(family: u8, proto: u8) -> Vec<u8> {
    match family as libc::c_int {
        libc::AF_UNIX => {
            // unix_diag_req: family, protocol, pad, states, ino, show, cookie[2]
            let mut r = vec![0u8; 24];
            r[0] = family;
            r[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
            r
        }
        libc::AF_INET | libc::AF_INET6 => {
            // inet_diag_req_v2: family, protocol, ext, pad, states, inet_diag_sockid
            let mut r = vec![0u8; 56];
            r[0] = family;
            r[1] = proto;
            r[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
            r
        }
        _ => {
            // packet_diag_req / netlink_diag_req: family, protocol, pad, ino, show, cookie[2]
            let mut r = vec![0u8; 20];
            r[0] = family;
            r[1] = proto;
            r
        }
    }
}

/// Dumps sockets of one family/protocol over NETLINK_SOCK_DIAG.
pub fn sock_diag_dump(family: libc::c_int, proto: u8) -> ProbeResult {
    let mut nl = Nl::open(libc::NETLINK_SOCK_DIAG)?;
    let (_, res) = nl.request(
        SOCK_DIAG_BY_FAMILY,
        NLM_F_REQUEST | NLM_F_DUMP,
        &diag_request(family as u8, proto),
    )?;
    res.map_err(sys(format!(
        "Sockets collect procedure family {family} proto {proto}"
    )))
}

/// The families and protocols that a dump needs sock_diag for. UDP-Lite is among them, as in
/// CRIU, where the kernel has UDP-Lite sockets at all (`/proc/net/udplite`, `udplite6`): a
/// kernel without them has none to collect.
pub fn required_diag_families() -> Vec<(libc::c_int, u8, &'static str)> {
    let mut v = vec![
        (libc::AF_UNIX, 0, "unix"),
        (libc::AF_INET, libc::IPPROTO_TCP as u8, "inet tcp"),
        (libc::AF_INET, libc::IPPROTO_UDP as u8, "inet udp"),
        (libc::AF_PACKET, 0, "packet"),
        (libc::AF_NETLINK, NDIAG_PROTO_ALL, "netlink"),
    ];
    if has_udplite(libc::AF_INET) {
        v.push((libc::AF_INET, IPPROTO_UDPLITE, "inet udplite"));
    }
    if ipv6_enabled() {
        v.push((libc::AF_INET6, libc::IPPROTO_TCP as u8, "inet6 tcp"));
        v.push((libc::AF_INET6, libc::IPPROTO_UDP as u8, "inet6 udp"));
        if has_udplite(libc::AF_INET6) {
            v.push((libc::AF_INET6, IPPROTO_UDPLITE, "inet6 udplite"));
        }
    }
    v
}

/// The kernel has UDP-Lite sockets of `family` (its /proc/net table exists).
pub fn has_udplite(family: libc::c_int) -> bool {
    let table = if family == libc::AF_INET6 {
        "/proc/net/udplite6"
    } else {
        "/proc/net/udplite"
    };
    std::path::Path::new(table).exists()
}

/// sock_diag answers for unix, inet/inet6 tcp and udp (and UDP-Lite where the kernel has it),
/// packet and netlink sockets.
pub fn sock_diag() -> ProbeResult {
    diag_verdict(&required_diag_families(), sock_diag_dump)
}

/// The verdict over `families`, each asked with `dump`: every one must answer.
pub(crate) fn diag_verdict(
    families: &[(libc::c_int, u8, &'static str)],
    dump: impl Fn(libc::c_int, u8) -> ProbeResult,
) -> ProbeResult {
    let mut failed = Vec::new();
    for &(family, proto, name) in families {
        if let Err(e) = dump(family, proto) {
            failed.push(format!("{name} ({e})"));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(missing(format!(
            "The sock diag infrastructure is incomplete: {}. Make sure *_DIAG kernel options are on and *_diag modules are loaded",
            failed.join(", ")
        )))
    }
}

/// sock_diag knows raw sockets, for IPv4 and IPv6.
pub fn net_diag_raw() -> ProbeResult {
    sock_diag_dump(libc::AF_INET, IPPROTO_RAW)
        .map_err(|e| missing(format!("no raw socket diag for IPv4: {e}")))?;
    if ipv6_enabled() {
        sock_diag_dump(libc::AF_INET6, IPPROTO_RAW)
            .map_err(|e| missing(format!("no raw socket diag for IPv6: {e}")))?;
    }
    Ok(())
}

/// IPv6 is enabled (/proc/sys/net/ipv6 exists).
pub fn ipv6_enabled() -> bool {
    std::path::Path::new("/proc/sys/net/ipv6").exists()
}

/// SO_PEEK_OFF reads back -1 on a fresh unix socket.
pub fn sock_peek_off() -> ProbeResult {
    let sk = socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0)?;
    let mut buf = [0u8; 4];
    let len = getsockopt_buf(
        sk.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_PEEK_OFF,
        &mut buf,
    )
    .map_err(sys("SO_PEEK_OFF sockoption doesn't work"))?;
    if len == 4 && i32::from_ne_bytes(buf) == -1 {
        Ok(())
    } else {
        Err(missing("SO_PEEK_OFF sockoption doesn't work."))
    }
}

/// TCP_REPAIR can be turned on; TCP_TIMESTAMP can be read.
pub fn tcp_repair() -> ProbeResult {
    let sk = socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP)?;
    setsockopt_int(sk.as_raw_fd(), libc::SOL_TCP, libc::TCP_REPAIR, 1)
        .map_err(sys("Can't turn TCP repair mode ON"))?;
    let mut buf = [0u8; 4];
    getsockopt_buf(sk.as_raw_fd(), libc::SOL_TCP, libc::TCP_TIMESTAMP, &mut buf)
        .map_err(sys("Can't get TCP_TIMESTAMP"))?;
    Ok(())
}

/// TCP_REPAIR_WINDOW can be read from a socket in repair mode.
pub fn tcp_repair_window() -> ProbeResult {
    let sk = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
    setsockopt_int(sk.as_raw_fd(), libc::SOL_TCP, libc::TCP_REPAIR, 1).map_err(|e| match e {
        Errno::EPERM => missing("TCP_REPAIR isn't available to unprivileged users"),
        e => sys("Unable to set TCP_REPAIR")(e),
    })?;
    let mut win = [0u8; 20];
    match getsockopt_buf(
        sk.as_raw_fd(),
        libc::SOL_TCP,
        libc::TCP_REPAIR_WINDOW,
        &mut win,
    ) {
        Ok(_) => Ok(()),
        Err(Errno::ENOPROTOOPT) => Err(missing("The TCP_REPAIR_WINDOW option isn't supported.")),
        Err(e) => Err(sys("Unable to get TCP_REPAIR_WINDOW")(e)),
    }
}

/// TCP_REPAIR can be turned on for a half-closed (shutdown for writing) connection.
pub fn tcp_half_closed() -> ProbeResult {
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| {
        sys("bind a loopback listener")(Errno::from_raw(e.raw_os_error().unwrap_or(0)))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| sys("getsockname")(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    let client = TcpStream::connect(addr).map_err(|e| {
        sys("connect over loopback")(Errno::from_raw(e.raw_os_error().unwrap_or(0)))
    })?;
    client
        .shutdown(std::net::Shutdown::Write)
        .map_err(|e| sys("shutdown(SHUT_WR)")(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    match setsockopt_int(client.as_raw_fd(), libc::SOL_TCP, libc::TCP_REPAIR, 1) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) => Err(missing(
            "TCP_REPAIR can't be enabled for half-closed sockets",
        )),
        Err(e) => Err(sys("Unable to set TCP_REPAIR on a half-closed socket")(e)),
    }
}

/// SO_GET_FILTER and SO_BINDTODEVICE can be read back.
pub fn so_gets() -> ProbeResult {
    const SO_GET_FILTER: libc::c_int = libc::SO_ATTACH_FILTER;
    let sk = socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_UDP)?;
    getsockopt_buf(sk.as_raw_fd(), libc::SOL_SOCKET, SO_GET_FILTER, &mut [])
        .map_err(sys("Can't get socket filter"))?;
    let mut name = [0u8; libc::IFNAMSIZ];
    getsockopt_buf(
        sk.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_BINDTODEVICE,
        &mut name,
    )
    .map_err(sys("Can't get socket bound dev"))?;
    Ok(())
}

/// SO_BUF_LOCK can be read.
pub fn sockopt_buf_lock() -> ProbeResult {
    const SO_BUF_LOCK: libc::c_int = 72;
    let sk = socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP)?;
    let mut buf = [0u8; 4];
    match getsockopt_buf(sk.as_raw_fd(), libc::SOL_SOCKET, SO_BUF_LOCK, &mut buf) {
        Ok(_) => Ok(()),
        Err(Errno::ENOPROTOOPT) => Err(missing("SO_BUF_LOCK isn't supported")),
        Err(e) => Err(sys("Unable to get SO_BUF_LOCK with getsockopt")(e)),
    }
}

/// IPV6_FREEBIND can be set.
pub fn ipv6_freebind() -> ProbeResult {
    if !ipv6_enabled() {
        return Err(missing("IPv6 is disabled"));
    }
    let sk = socket(libc::AF_INET6, libc::SOCK_DGRAM, libc::IPPROTO_UDP)?;
    match setsockopt_int(sk.as_raw_fd(), libc::SOL_IPV6, libc::IPV6_FREEBIND, 1) {
        Ok(()) => Ok(()),
        Err(Errno::ENOPROTOOPT) => Err(missing("IPV6_FREEBIND isn't supported")),
        Err(e) => Err(sys("Unable to setsockopt ipv6_freebind")(e)),
    }
}

const SIOCGSKNS: libc::c_ulong = 0x894c;
const SIOCUNIXFILE: libc::c_ulong = 0x89e0; // SIOCPROTOPRIVATE + 0

/// ioctl(SIOCGSKNS) on `fd` gives its network namespace fd.
pub fn netns_of(fd: RawFd) -> Result<OwnedFd, ProbeError> {
    // SAFETY: SIOCGSKNS takes no argument and returns a new fd.
    let ret = unsafe { libc::ioctl(fd, SIOCGSKNS) };
    Ok(own_fd(check_ret(ret as libc::c_long).map_err(sys(
        "Unable to get the network namespace (SIOCGSKNS)",
    ))?))
}

/// A socket tells its network namespace (SIOCGSKNS).
pub fn sk_netns() -> ProbeResult {
    let sk = socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0)?;
    netns_of(sk.as_raw_fd()).map(drop)
}

/// ioctl(SIOCUNIXFILE) on a bound unix socket: an O_PATH fd of its socket file.
pub fn unix_socket_file(sk: RawFd) -> Result<OwnedFd, ProbeError> {
    // SAFETY: SIOCUNIXFILE takes no argument and returns a new fd.
    let ret = unsafe { libc::ioctl(sk, SIOCUNIXFILE) };
    Ok(own_fd(check_ret(ret as libc::c_long).map_err(sys(
        "Unable to open a socket file (SIOCUNIXFILE)",
    ))?))
}

/// SIOCUNIXFILE is known: an unbound socket has no file (ENOENT), an unknown ioctl fails
/// otherwise.
pub fn sk_unix_file() -> ProbeResult {
    let sk = socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0)?;
    match unix_socket_file(sk.as_raw_fd()) {
        Ok(_) => Ok(()),
        Err(ProbeError::Sys {
            errno: Errno::ENOENT,
            ..
        }) => Ok(()),
        Err(e) => Err(missing(format!("Unable to open a socket file: {e}"))),
    }
}

const TUN_PATH: &str = "/dev/net/tun";
const TUNSETIFINDEX: libc::c_ulong = 0x4004_54da; // _IOW('T', 218, unsigned int)

/// /dev/net/tun is there and knows TUNSETIFINDEX.
pub fn tun() -> ProbeResult {
    let fd = nix::fcntl::open(
        TUN_PATH,
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(sys("Can't check tun support"))?;
    let idx: libc::c_uint = 13;
    // SAFETY: TUNSETIFINDEX reads one unsigned int from a live local.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFINDEX, &idx) };
    check_ret(ret as libc::c_long).map_err(sys("No proper support for tun dump/restore"))?;
    Ok(())
}

/// A tun fd tells its network namespace (SIOCGSKNS).
pub fn tun_netns() -> ProbeResult {
    let fd = nix::fcntl::open(
        TUN_PATH,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(sys("Unable to open /dev/net/tun"))?;
    netns_of(fd.as_raw_fd())
        .map(drop)
        .map_err(|_| missing("Unable to get tun network namespace"))
}
