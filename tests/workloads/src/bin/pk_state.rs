//! A self-checking process for the packet and netlink socket restore tests:
//! `pk_state RESULT [bypass]`.
//!
//! It sets up, in whatever network namespace it runs in:
//! - a raw packet socket for every protocol, bound to `lo`, TPACKET_V2, PACKET_AUXDATA,
//!   PACKET_ORIGDEV, PACKET_RESERVE, promiscuous mode asked twice, all-multicast, an RX ring,
//!   and a member of fanout group 4242 (hash, with rollover);
//! - a datagram packet socket for every protocol bound to `lo`, the other member of that group
//!   (members must share protocol and interface);
//! - a datagram packet socket for IPv4 bound to `lo` alone, which must see traffic again;
//! - a NETLINK_ROUTE socket bound to a chosen port id with the link and IPv4 address groups;
//! - a NETLINK_KOBJECT_UEVENT socket the kernel gave a port id, in group 1;
//! - an unbound NETLINK_GENERIC socket;
//! - a NETLINK_KOBJECT_UEVENT socket connected to the route socket's port id;
//! - with `bypass`, also a packet socket with PACKET_QDISC_BYPASS on, which the images cannot
//!   hold (its dump must fail);
//! - with `ring`, also an IPv4 datagram packet socket on `lo` with a TPACKET_V3 RX ring that
//!   it maps shared, read-write; after the restore the mapping must be at the same address,
//!   of the same size and protection, a mapping of that socket (/proc/self/maps), and the
//!   kernel must put a datagram sent over `lo` in a block of it;
//! - with `ring-no-fd`, the same ring mapped but its socket closed: a mapping CRIU does not
//!   dump either (its dump must fail); the mapping must be there still;
//!
//! writes "READY" to RESULT and waits for SIGUSR1 (in sigwait); then it checks every binding
//! and option from inside, asks the route socket for the links and sends itself a datagram
//! over `lo` that the third packet socket must see, and writes "PASS" or "FAIL: reason".

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::{SigSet, Signal};

type Check = Result<(), String>;

const ETH_P_ALL: u16 = 0x0003;
const ETH_P_IP: u16 = 0x0800;
const FANOUT: i32 = 4242 | (libc::PACKET_FANOUT_HASH as i32) << 16 | 0x10 << 24; // rollover
const ROUTE_PORT: u32 = 0x7a11_0000;
const ROUTE_GROUPS: u32 = 0x1 | 0x10; // RTMGRP_LINK | RTMGRP_IPV4_IFADDR
const TPACKET_V2: i32 = 1;
const RING: [u32; 4] = [4096, 4, 2048, 8]; // block size, blocks, frame size, frames
const TPACKET_V3: i32 = 2;
/// The mapped ring: 4 blocks of 64 KiB, 2 KiB frames, a block retired after 10 ms.
const RING3: [u32; 7] = [1 << 16, 4, 2048, 128, 10, 0, 0];
/// TP_STATUS_USER: a block the kernel handed to the program.
const TP_STATUS_USER: u32 = 1;

fn main() {
    let _ = nix::unistd::setsid();
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 2 && args.len() != 3 {
        eprintln!("usage: pk_state RESULT [bypass|ring|ring-no-fd]");
        std::process::exit(2);
    }
    let result = &args[1];
    let mut usr1 = SigSet::empty();
    usr1.add(Signal::SIGUSR1);
    usr1.thread_block().expect("block SIGUSR1");
    let verdict = run(result, args.get(2).map(String::as_str), &usr1);
    let text = match verdict {
        Ok(()) => "PASS\n".to_string(),
        Err(why) => format!("FAIL: {why}\n"),
    };
    std::fs::write(result, text).expect("write the verdict");
}

fn errno(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn socket(family: i32, kind: i32, proto: i32) -> Result<OwnedFd, String> {
    // SAFETY: socket() takes plain integers and returns a new fd or -1.
    let fd = unsafe { libc::socket(family, kind, proto) };
    if fd < 0 {
        return Err(errno("socket"));
    }
    // SAFETY: fd was just returned by socket() and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set(fd: RawFd, level: i32, opt: i32, val: &[u8], what: &str) -> Check {
    // SAFETY: the kernel reads `val.len()` bytes from `val`.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            val.as_ptr().cast(),
            val.len() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(errno(what));
    }
    Ok(())
}

fn set_int(fd: RawFd, level: i32, opt: i32, v: i32, what: &str) -> Check {
    set(fd, level, opt, &v.to_ne_bytes(), what)
}

fn get_int(fd: RawFd, level: i32, opt: i32, what: &str) -> Result<i32, String> {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `v`.
    let r = unsafe { libc::getsockopt(fd, level, opt, std::ptr::addr_of_mut!(v).cast(), &mut len) };
    if r < 0 {
        return Err(errno(what));
    }
    Ok(v)
}

fn expect_int(fd: RawFd, level: i32, opt: i32, want: i32, what: &str) -> Check {
    let got = get_int(fd, level, opt, what)?;
    if got != want {
        return Err(format!("{what} is {got:#x}, want {want:#x}"));
    }
    Ok(())
}

fn lo_index() -> Result<i32, String> {
    nix::net::if_::if_nametoindex("lo")
        .map(|i| i as i32)
        .map_err(|e| format!("if_nametoindex(lo): {e}"))
}

fn packet(kind: i32, proto: u16) -> Result<OwnedFd, String> {
    let sock = socket(libc::AF_PACKET, kind, i32::from(proto.to_be()))?;
    // SAFETY: sockaddr_ll is plain integers; all zeros is valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto.to_be();
    addr.sll_ifindex = lo_index()?;
    // SAFETY: the kernel reads a sockaddr_ll from a live local of that size.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            std::ptr::addr_of!(addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(errno("bind packet socket to lo"));
    }
    Ok(sock)
}

/// struct packet_mreq for `kind` on lo.
fn membership(fd: RawFd, kind: i32, add: bool) -> Check {
    let mut mreq = [0u8; 16];
    mreq[..4].copy_from_slice(&lo_index()?.to_ne_bytes());
    mreq[4..6].copy_from_slice(&(kind as u16).to_ne_bytes());
    let opt = if add {
        libc::PACKET_ADD_MEMBERSHIP
    } else {
        libc::PACKET_DROP_MEMBERSHIP
    };
    set(fd, libc::SOL_PACKET, opt, &mreq, "packet membership")
}

/// lo's promiscuity count (IFLA_PROMISCUITY of RTM_GETLINK), in this network namespace.
fn lo_promiscuity() -> Result<u32, String> {
    let sock = socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
    let mut req = [0u8; 32];
    req[..4].copy_from_slice(&32u32.to_ne_bytes());
    req[4..6].copy_from_slice(&libc::RTM_GETLINK.to_ne_bytes());
    req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req[20..24].copy_from_slice(&lo_index()?.to_ne_bytes());
    // SAFETY: the kernel reads `req.len()` bytes of `req`.
    if unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(errno("send RTM_GETLINK lo"));
    }
    let mut buf = vec![0u8; 65536];
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 32 {
        return Err(errno("recv RTM_GETLINK lo"));
    }
    let len = (u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize).min(n as usize);
    let mut a = &buf[32..len];
    while a.len() >= 4 {
        let alen = usize::from(u16::from_ne_bytes([a[0], a[1]]));
        let kind = u16::from_ne_bytes([a[2], a[3]]);
        if alen < 4 || alen > a.len() {
            break;
        }
        if kind == 30 && alen >= 8 {
            return Ok(u32::from_ne_bytes([a[4], a[5], a[6], a[7]]));
        }
        a = &a[((alen + 3) & !3).min(a.len())..];
    }
    Err("RTM_GETLINK lo without IFLA_PROMISCUITY".into())
}

/// The (port id, groups) of a netlink socket's own or peer address.
fn nl_name(fd: RawFd, peer: bool) -> Result<(u32, u32), String> {
    // SAFETY: sockaddr_nl is plain integers; all zeros is valid.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    let p = std::ptr::addr_of_mut!(addr).cast();
    // SAFETY: the kernel writes at most `len` bytes of address into `addr`.
    let r = unsafe {
        if peer {
            libc::getpeername(fd, p, &mut len)
        } else {
            libc::getsockname(fd, p, &mut len)
        }
    };
    if r < 0 {
        return Err(errno("netlink name"));
    }
    Ok((addr.nl_pid, addr.nl_groups))
}

fn nl_bind(fd: RawFd, port: u32, groups: u32, connect: bool) -> Check {
    // SAFETY: sockaddr_nl is plain integers; all zeros is valid.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    addr.nl_pid = port;
    addr.nl_groups = groups;
    let p = std::ptr::addr_of!(addr).cast();
    let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: the kernel reads a sockaddr_nl from a live local of that size.
    let r = unsafe {
        if connect {
            libc::connect(fd, p, len)
        } else {
            libc::bind(fd, p, len)
        }
    };
    if r < 0 {
        return Err(errno(if connect {
            "netlink connect"
        } else {
            "netlink bind"
        }));
    }
    Ok(())
}

struct Sockets {
    raw: OwnedFd,
    dgram: OwnedFd,
    watch: OwnedFd,
    route: OwnedFd,
    uevent: OwnedFd,
    uevent_port: u32,
    generic: OwnedFd,
    connected: OwnedFd,
}

fn setup() -> Result<Sockets, String> {
    let raw = packet(libc::SOCK_RAW, ETH_P_ALL)?;
    let r = raw.as_raw_fd();
    let sol = libc::SOL_PACKET;
    set_int(r, sol, libc::PACKET_VERSION, TPACKET_V2, "PACKET_VERSION")?;
    set_int(r, sol, libc::PACKET_AUXDATA, 1, "PACKET_AUXDATA")?;
    set_int(r, sol, libc::PACKET_ORIGDEV, 1, "PACKET_ORIGDEV")?;
    set_int(r, sol, libc::PACKET_RESERVE, 64, "PACKET_RESERVE")?;
    membership(r, libc::PACKET_MR_PROMISC, true)?;
    membership(r, libc::PACKET_MR_PROMISC, true)?;
    membership(r, libc::PACKET_MR_ALLMULTI, true)?;
    let ring: Vec<u8> = RING.iter().flat_map(|w| w.to_ne_bytes()).collect();
    set(r, sol, libc::PACKET_RX_RING, &ring, "PACKET_RX_RING")?;
    set_int(r, sol, libc::PACKET_FANOUT, FANOUT, "PACKET_FANOUT")?;
    let dgram = packet(libc::SOCK_DGRAM, ETH_P_ALL)?;
    set_int(
        dgram.as_raw_fd(),
        sol,
        libc::PACKET_FANOUT,
        FANOUT,
        "PACKET_FANOUT",
    )?;
    let watch = packet(libc::SOCK_DGRAM, ETH_P_IP)?;

    let route = socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
    nl_bind(route.as_raw_fd(), ROUTE_PORT, ROUTE_GROUPS, false)?;
    let uevent = socket(
        libc::AF_NETLINK,
        libc::SOCK_RAW,
        libc::NETLINK_KOBJECT_UEVENT,
    )?;
    nl_bind(uevent.as_raw_fd(), 0, 1, false)?;
    let (uevent_port, _) = nl_name(uevent.as_raw_fd(), false)?;
    let generic = socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_GENERIC)?;
    let connected = socket(
        libc::AF_NETLINK,
        libc::SOCK_RAW,
        libc::NETLINK_KOBJECT_UEVENT,
    )?;
    nl_bind(connected.as_raw_fd(), ROUTE_PORT, 0, true)?;
    Ok(Sockets {
        raw,
        dgram,
        watch,
        route,
        uevent,
        uevent_port,
        generic,
        connected,
    })
}

/// A packet socket's RX ring mapped by the program: where, and the socket (None once closed).
struct MappedRing {
    sock: Option<OwnedFd>,
    addr: usize,
    len: usize,
}

fn mapped_ring(keep_fd: bool) -> Result<MappedRing, String> {
    let sock = packet(libc::SOCK_DGRAM, ETH_P_IP)?;
    let fd = sock.as_raw_fd();
    let sol = libc::SOL_PACKET;
    set_int(fd, sol, libc::PACKET_VERSION, TPACKET_V3, "PACKET_VERSION")?;
    let req: Vec<u8> = RING3.iter().flat_map(|w| w.to_ne_bytes()).collect();
    set(fd, sol, libc::PACKET_RX_RING, &req, "PACKET_RX_RING (V3)")?;
    let len = (RING3[0] * RING3[1]) as usize;
    // SAFETY: a new shared mapping of the socket's ring at an address the kernel picks.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(errno("mmap of the V3 RX ring"));
    }
    Ok(MappedRing {
        sock: keep_fd.then_some(sock),
        addr: p as usize,
        len,
    })
}

/// The ring's line of /proc/self/maps is there as it was mapped: same address, size,
/// protection and sharing, and of the socket the program holds (the socket as it is now: a
/// restored socket is a new inode).
fn check_ring_mapping(m: &MappedRing) -> Check {
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("read maps: {e}"))?;
    let want = format!("{:x}-", m.addr);
    let line = maps
        .lines()
        .find(|l| l.starts_with(&want))
        .ok_or_else(|| format!("no mapping starts at {:#x} any more:\n{maps}", m.addr))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let end = f
        .first()
        .and_then(|r| r.split_once('-'))
        .and_then(|(_, e)| usize::from_str_radix(e, 16).ok())
        .ok_or_else(|| format!("bad maps line {line}"))?;
    let (maj, min) = f
        .get(3)
        .and_then(|d| d.split_once(':'))
        .and_then(|(a, b)| {
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            ))
        })
        .ok_or_else(|| format!("bad maps line {line}"))?;
    let ino: u64 = f.get(4).and_then(|i| i.parse().ok()).unwrap_or(0);
    if end - m.addr != m.len {
        return Err(format!(
            "the ring's mapping is {line}, want {} bytes",
            m.len
        ));
    }
    if f.get(1) != Some(&"rw-s") {
        return Err(format!("the ring's mapping is {line}, want rw-s"));
    }
    if !line.ends_with(&format!("socket:[{ino}]")) {
        return Err(format!(
            "the mapping at {:#x} is {line}, not a socket's",
            m.addr
        ));
    }
    if let Some(sock) = &m.sock {
        let st = nix::sys::stat::fstat(sock).map_err(|e| format!("fstat packet socket: {e}"))?;
        if ino != st.st_ino || libc::makedev(maj as u32, min as u32) != st.st_dev {
            return Err(format!(
                "the mapping at {:#x} is {line}, not of the packet socket (inode {})",
                m.addr, st.st_ino
            ));
        }
    }
    Ok(())
}

fn rd32(at: usize) -> u32 {
    // SAFETY: `at` lies in the ring mapping, 4-byte aligned; the kernel writes it
    // concurrently, hence the volatile read.
    unsafe { std::ptr::read_volatile(at as *const u32) }
}

/// Sends a UDP datagram over lo and waits until the kernel puts it in a block of the ring.
fn check_ring_traffic(m: &MappedRing) -> Check {
    let sock = m.sock.as_ref().ok_or("the ring's socket is closed")?;
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("udp: {e}"))?;
    let to = udp.local_addr().map_err(|e| format!("udp: {e}"))?;
    let payload = format!("into the ring of {}", std::process::id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let block = RING3[0] as usize;
    while std::time::Instant::now() < deadline {
        udp.send_to(payload.as_bytes(), to)
            .map_err(|e| format!("udp send: {e}"))?;
        let mut pfd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, a live local.
        unsafe { libc::poll(&mut pfd, 1, 500) };
        for b in 0..RING3[1] as usize {
            let base = m.addr + b * block;
            // struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1:
            // block_status, num_pkts, offset_to_first_pkt, ...
            if rd32(base + 8) & TP_STATUS_USER == 0 {
                continue;
            }
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            let mut pkt = base + rd32(base + 16) as usize;
            let mut found = false;
            for _ in 0..rd32(base + 12) {
                // struct tpacket3_hdr: next_offset, sec, nsec, snaplen, len, status, mac, net.
                let snaplen = rd32(pkt + 12) as usize;
                let mac = (rd32(pkt + 24) & 0xffff) as usize;
                if pkt + mac + snaplen <= base + block {
                    // SAFETY: the frame's bytes lie inside this block of the mapping, which the
                    // kernel handed over (TP_STATUS_USER) and no longer writes.
                    let data =
                        unsafe { std::slice::from_raw_parts((pkt + mac) as *const u8, snaplen) };
                    found |= data.windows(payload.len()).any(|w| w == payload.as_bytes());
                }
                let next = rd32(pkt) as usize;
                if next == 0 {
                    break;
                }
                pkt += next;
            }
            // The block goes back to the kernel (TP_STATUS_KERNEL).
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            // SAFETY: the block status word of a block the program owns, in the mapping.
            unsafe { std::ptr::write_volatile((base + 8) as *mut u32, 0) };
            if found {
                return Ok(());
            }
        }
    }
    Err("the kernel put no datagram sent over lo into the mapped ring".into())
}

fn run(result: &str, mode: Option<&str>, usr1: &SigSet) -> Check {
    let s = setup()?;
    let ring = match mode {
        Some("ring") => Some(mapped_ring(true)?),
        Some("ring-no-fd") => Some(mapped_ring(false)?),
        _ => None,
    };
    let _bypass = match mode {
        None | Some("ring") | Some("ring-no-fd") => None,
        Some("bypass") => {
            let b = packet(libc::SOCK_RAW, ETH_P_ALL)?;
            set_int(
                b.as_raw_fd(),
                libc::SOL_PACKET,
                20,
                1,
                "PACKET_QDISC_BYPASS",
            )?;
            Some(b)
        }
        Some(m) => return Err(format!("unknown mode {m}")),
    };
    std::fs::write(result, "READY\n").map_err(|e| format!("write READY: {e}"))?;
    while usr1.wait().is_err() {}
    check(&s)?;
    if let Some(m) = &ring {
        check_ring_mapping(m)?;
        if m.sock.is_some() {
            check_ring_traffic(m)?;
        }
    }
    Ok(())
}

fn check(s: &Sockets) -> Check {
    let sol = libc::SOL_PACKET;
    let r = s.raw.as_raw_fd();
    expect_int(
        r,
        libc::SOL_SOCKET,
        libc::SO_TYPE,
        libc::SOCK_RAW,
        "raw SO_TYPE",
    )?;
    expect_int(r, sol, libc::PACKET_VERSION, TPACKET_V2, "PACKET_VERSION")?;
    expect_int(r, sol, libc::PACKET_AUXDATA, 1, "PACKET_AUXDATA")?;
    expect_int(r, sol, libc::PACKET_ORIGDEV, 1, "PACKET_ORIGDEV")?;
    expect_int(r, sol, libc::PACKET_RESERVE, 64, "PACKET_RESERVE")?;
    expect_int(r, sol, libc::PACKET_FANOUT, FANOUT, "raw PACKET_FANOUT")?;
    expect_int(
        s.dgram.as_raw_fd(),
        sol,
        libc::PACKET_FANOUT,
        FANOUT,
        "datagram PACKET_FANOUT",
    )?;
    // Promiscuous mode was asked twice: the first drop leaves lo promiscuous, the second
    // takes the socket's share of lo's promiscuity away.
    let before = lo_promiscuity()?;
    membership(r, libc::PACKET_MR_PROMISC, false)?;
    let once = lo_promiscuity()?;
    membership(r, libc::PACKET_MR_PROMISC, false)?;
    let twice = lo_promiscuity()?;
    if before == 0 || once != before || twice + 1 != before {
        return Err(format!(
            "lo's promiscuity went {before} -> {once} -> {twice} over two drops"
        ));
    }
    membership(r, libc::PACKET_MR_ALLMULTI, false)?;
    // The RX ring is there with its size: a mapping of exactly that size works.
    let size = (RING[0] * RING[1]) as usize;
    // SAFETY: a new shared mapping of the socket's ring; nothing else is touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ,
            libc::MAP_SHARED,
            r,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(errno("mmap of the RX ring"));
    }
    // SAFETY: p is the mapping made above, of `size` bytes.
    unsafe { libc::munmap(p, size) };

    // The route socket: port id and groups, and it still answers.
    let (port, groups) = nl_name(s.route.as_raw_fd(), false)?;
    if (port, groups) != (ROUTE_PORT, ROUTE_GROUPS) {
        return Err(format!("route socket bound to {port:#x}/{groups:#x}"));
    }
    links(s.route.as_raw_fd())?;
    let (port, groups) = nl_name(s.uevent.as_raw_fd(), false)?;
    if (port, groups) != (s.uevent_port, 1) {
        return Err(format!(
            "uevent socket bound to {port:#x}/{groups:#x}, was {:#x}/1",
            s.uevent_port
        ));
    }
    expect_int(
        s.generic.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_PROTOCOL,
        libc::NETLINK_GENERIC,
        "generic SO_PROTOCOL",
    )?;
    let (port, _) = nl_name(s.generic.as_raw_fd(), false)?;
    if port != 0 {
        return Err(format!("the unbound generic socket has port id {port:#x}"));
    }
    let peer = nl_name(s.connected.as_raw_fd(), true)?;
    if peer != (ROUTE_PORT, 0) {
        return Err(format!("connected socket's peer is {peer:x?}"));
    }
    traffic(s.watch.as_raw_fd())
}

/// Asks for every link (RTM_GETLINK dump) and reads answers until the end.
fn links(fd: RawFd) -> Check {
    let mut req = [0u8; 32];
    req[..4].copy_from_slice(&32u32.to_ne_bytes());
    req[4..6].copy_from_slice(&libc::RTM_GETLINK.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req[6..8].copy_from_slice(&flags.to_ne_bytes());
    req[8..12].copy_from_slice(&7u32.to_ne_bytes());
    req[16] = libc::AF_UNSPEC as u8;
    // SAFETY: the kernel reads `req.len()` bytes of `req`; the peer is the kernel (port 0).
    let n = unsafe { libc::send(fd, req.as_ptr().cast(), req.len(), 0) };
    if n < 0 {
        return Err(errno("send RTM_GETLINK"));
    }
    let mut buf = vec![0u8; 65536];
    let mut seen_lo = false;
    for _ in 0..100 {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(errno("recv RTM_GETLINK"));
        }
        let mut b = &buf[..n as usize];
        while b.len() >= 16 {
            let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
            let kind = u16::from_ne_bytes([b[4], b[5]]);
            let seq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
            if len < 16 || len > b.len() {
                return Err(format!("RTM_GETLINK answer of {len} bytes"));
            }
            if seq != 7 {
                // A notification of the groups the socket is in.
                b = &b[((len + 3) & !3).min(b.len())..];
                continue;
            }
            if kind == libc::NLMSG_DONE as u16 {
                return if seen_lo {
                    Ok(())
                } else {
                    Err("RTM_GETLINK did not list lo".into())
                };
            }
            if kind == libc::NLMSG_ERROR as u16 {
                return Err("RTM_GETLINK answered an error".into());
            }
            if kind == libc::RTM_NEWLINK {
                seen_lo = true;
            }
            if len < 16 || len > b.len() {
                return Err(format!("RTM_GETLINK answer of {len} bytes"));
            }
            b = &b[((len + 3) & !3).min(b.len())..];
        }
    }
    Err("RTM_GETLINK never ended".into())
}

/// Sends a UDP datagram over lo; the IPv4 packet socket on lo must see it.
fn traffic(watch: RawFd) -> Check {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("udp: {e}"))?;
    let to = udp.local_addr().map_err(|e| format!("udp: {e}"))?;
    udp.send_to(b"through lo", to)
        .map_err(|e| format!("udp send: {e}"))?;
    let mut pfd = libc::pollfd {
        fd: watch,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, a live local.
    let n = unsafe { libc::poll(&mut pfd, 1, 5000) };
    if n <= 0 {
        return Err("the packet socket on lo saw no packet".into());
    }
    let mut buf = [0u8; 2048];
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::recv(watch, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 20 || buf[0] >> 4 != 4 {
        return Err(format!("the packet socket on lo read {n} bytes, not IPv4"));
    }
    Ok(())
}
