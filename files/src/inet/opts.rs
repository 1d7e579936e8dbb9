//! IP-level (`ip_opts_entry`) and TCP-level (`tcp_opts_entry`) options of an inet socket, read
//! at dump and set at restore, as CRIU records them: an option is kept only when it is not the
//! default.

use std::os::fd::BorrowedFd;

use criu_proto::images::{IpOptsEntry, IpOptsRawEntry, TcpOptsEntry};
use criu_sys::sockopt::{get_bytes, get_int, set_bytes, set_int};

use crate::sk_opts::OptError;

const IPV6_FREEBIND: i32 = 78;
/// SOL_RAW's ICMP_FILTER and SOL_ICMPV6's ICMPV6_FILTER.
const ICMP_FILTER: i32 = 1;
const ICMPV6_FILTER: i32 = 1;
const SOL_RAW: i32 = 255;
const SOL_ICMPV6: i32 = 58;

fn get(sock: BorrowedFd<'_>, name: &'static str, level: i32, opt: i32) -> Result<u32, OptError> {
    get_int(sock, level, opt)
        .map(|v| v as u32)
        .map_err(|e| (name, e))
}

fn nonzero(v: u32) -> Option<u32> {
    (v != 0).then_some(v)
}

fn set_flag(on: Option<bool>) -> bool {
    on == Some(true)
}

/// `ip_opts_entry` of a socket of `family`, `kind` (SOCK_*) and `proto`.
pub fn read_ip(
    sock: BorrowedFd<'_>,
    family: i32,
    kind: i32,
    proto: i32,
) -> Result<IpOptsEntry, OptError> {
    let mut o = IpOptsEntry::default();
    if kind == libc::SOCK_RAW {
        o.raw = Some(read_raw(sock, family, proto)?);
    }
    if family == libc::AF_INET6 {
        o.freebind =
            Some(get(sock, "IPV6_FREEBIND", libc::SOL_IPV6, IPV6_FREEBIND)? != 0).filter(|&b| b);
        o.pktinfo = Some(
            get(
                sock,
                "IPV6_RECVPKTINFO",
                libc::SOL_IPV6,
                libc::IPV6_RECVPKTINFO,
            )? != 0,
        )
        .filter(|&b| b);
    } else {
        o.freebind =
            Some(get(sock, "IP_FREEBIND", libc::SOL_IP, libc::IP_FREEBIND)? != 0).filter(|&b| b);
        o.pktinfo =
            Some(get(sock, "IP_PKTINFO", libc::SOL_IP, libc::IP_PKTINFO)? != 0).filter(|&b| b);
        o.tos = nonzero(get(sock, "IP_TOS", libc::SOL_IP, libc::IP_TOS)?);
        o.ttl = nonzero(get(sock, "IP_TTL", libc::SOL_IP, libc::IP_TTL)?);
    }
    Ok(o)
}

fn read_raw(sock: BorrowedFd<'_>, family: i32, proto: i32) -> Result<IpOptsRawEntry, OptError> {
    let mut r = IpOptsRawEntry::default();
    let filter = |level, opt, words: usize| -> Result<Vec<u32>, OptError> {
        let mut buf = vec![0u8; words * 4];
        get_bytes(sock, level, opt, &mut buf).map_err(|e| ("ICMP filter", e))?;
        Ok(buf
            .chunks(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    };
    if family == libc::AF_INET6 {
        r.hdrincl = Some(get(sock, "IPV6_HDRINCL", libc::SOL_IPV6, 36)? != 0).filter(|&b| b);
        if proto == libc::IPPROTO_ICMPV6 {
            r.icmpv_filter = filter(SOL_ICMPV6, ICMPV6_FILTER, 8)?;
        }
    } else {
        r.hdrincl =
            Some(get(sock, "IP_HDRINCL", libc::SOL_IP, libc::IP_HDRINCL)? != 0).filter(|&b| b);
        r.nodefrag = Some(get(sock, "IP_NODEFRAG", libc::SOL_IP, 22)? != 0).filter(|&b| b);
        if proto == libc::IPPROTO_ICMP {
            r.icmpv_filter = filter(SOL_RAW, ICMP_FILTER, 1)?;
        }
    }
    Ok(r)
}

/// Sets `ip_opts_entry` again (after any bind).
pub fn apply_ip(
    sock: BorrowedFd<'_>,
    family: i32,
    proto: i32,
    o: &IpOptsEntry,
) -> Result<(), OptError> {
    let set = |name, level, opt, v: u32| set_int(sock, level, opt, v as i32).map_err(|e| (name, e));
    if set_flag(o.freebind) {
        if family == libc::AF_INET6 {
            set("IPV6_FREEBIND", libc::SOL_IPV6, IPV6_FREEBIND, 1)?;
        } else {
            set("IP_FREEBIND", libc::SOL_IP, libc::IP_FREEBIND, 1)?;
        }
    }
    if family == libc::AF_INET6 {
        if set_flag(o.pktinfo) {
            set(
                "IPV6_RECVPKTINFO",
                libc::SOL_IPV6,
                libc::IPV6_RECVPKTINFO,
                1,
            )?;
        }
    } else {
        if set_flag(o.pktinfo) {
            set("IP_PKTINFO", libc::SOL_IP, libc::IP_PKTINFO, 1)?;
        }
        if let Some(tos) = o.tos {
            set("IP_TOS", libc::SOL_IP, libc::IP_TOS, tos)?;
        }
        if let Some(ttl) = o.ttl {
            set("IP_TTL", libc::SOL_IP, libc::IP_TTL, ttl)?;
        }
    }
    let Some(r) = &o.raw else { return Ok(()) };
    let words = |w: &[u32]| w.iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>();
    if family == libc::AF_INET6 {
        if set_flag(r.hdrincl) {
            set("IPV6_HDRINCL", libc::SOL_IPV6, 36, 1)?;
        }
        if proto == libc::IPPROTO_ICMPV6 && !r.icmpv_filter.is_empty() {
            set_bytes(sock, SOL_ICMPV6, ICMPV6_FILTER, &words(&r.icmpv_filter))
                .map_err(|e| ("ICMPV6_FILTER", e))?;
        }
    } else {
        if set_flag(r.hdrincl) {
            set("IP_HDRINCL", libc::SOL_IP, libc::IP_HDRINCL, 1)?;
        }
        if set_flag(r.nodefrag) {
            set("IP_NODEFRAG", libc::SOL_IP, 22, 1)?;
        }
        if proto == libc::IPPROTO_ICMP && !r.icmpv_filter.is_empty() {
            set_bytes(sock, SOL_RAW, ICMP_FILTER, &words(&r.icmpv_filter))
                .map_err(|e| ("ICMP_FILTER", e))?;
        }
    }
    Ok(())
}

/// `tcp_opts_entry`.
pub fn read_tcp(sock: BorrowedFd<'_>) -> Result<TcpOptsEntry, OptError> {
    let tcp = |name, opt| get(sock, name, libc::SOL_TCP, opt);
    Ok(TcpOptsEntry {
        nodelay: Some(tcp("TCP_NODELAY", libc::TCP_NODELAY)? != 0).filter(|&b| b),
        cork: Some(tcp("TCP_CORK", libc::TCP_CORK)? != 0).filter(|&b| b),
        keepcnt: nonzero(tcp("TCP_KEEPCNT", libc::TCP_KEEPCNT)?),
        keepidle: nonzero(tcp("TCP_KEEPIDLE", libc::TCP_KEEPIDLE)?),
        keepintvl: nonzero(tcp("TCP_KEEPINTVL", libc::TCP_KEEPINTVL)?),
    })
}

pub fn apply_tcp(sock: BorrowedFd<'_>, o: &TcpOptsEntry) -> Result<(), OptError> {
    let set =
        |name, opt, v: u32| set_int(sock, libc::SOL_TCP, opt, v as i32).map_err(|e| (name, e));
    if set_flag(o.nodelay) {
        set("TCP_NODELAY", libc::TCP_NODELAY, 1)?;
    }
    if set_flag(o.cork) {
        set("TCP_CORK", libc::TCP_CORK, 1)?;
    }
    for (v, name, opt) in [
        (o.keepcnt, "TCP_KEEPCNT", libc::TCP_KEEPCNT),
        (o.keepidle, "TCP_KEEPIDLE", libc::TCP_KEEPIDLE),
        (o.keepintvl, "TCP_KEEPINTVL", libc::TCP_KEEPINTVL),
    ] {
        if let Some(v) = v {
            set(name, opt, v)?;
        }
    }
    Ok(())
}
