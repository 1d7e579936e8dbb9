//! The network probes (sock_diag, TCP, socket options, netlink, tun), each compared with the
//! same fact found another way, as in `tests`. These run as root on the test machine.

use super::tests::{agree, at_least, enabled};
use super::*;
use std::os::fd::AsRawFd;

#[test]
fn sock_diag_matches_config() {
    let need = enabled("UNIX_DIAG")
        && enabled("INET_DIAG")
        && enabled("INET_TCP_DIAG")
        && enabled("INET_UDP_DIAG")
        && enabled("PACKET_DIAG")
        && enabled("NETLINK_DIAG");
    agree("sock_diag", sockets::sock_diag(), need);
    agree(
        "net_diag_raw",
        sockets::net_diag_raw(),
        enabled("INET_RAW_DIAG"),
    );
    assert_eq!(
        sockets::sock_diag_dump(libc::AF_UNIX, 0).is_ok(),
        enabled("UNIX_DIAG")
    );
}

/// UDP-Lite counts where the kernel has it: its diag answer is part of the verdict, and that
/// answer agrees with the kernel config (udp_diag serves UDP and UDP-Lite).
#[test]
fn udplite_diag_is_asked_and_counted() {
    let udplite = |fam| {
        sockets::required_diag_families()
            .iter()
            .any(|&(f, p, _)| f == fam && p == libc::IPPROTO_UDPLITE as u8)
    };
    let v4 = std::path::Path::new("/proc/net/udplite").exists();
    assert_eq!(udplite(libc::AF_INET), v4);
    let v6 = std::path::Path::new("/proc/net/udplite6").exists();
    assert_eq!(udplite(libc::AF_INET6), v6 && sockets::ipv6_enabled());
    if v4 {
        assert_eq!(
            sockets::sock_diag_dump(libc::AF_INET, libc::IPPROTO_UDPLITE as u8).is_ok(),
            enabled("INET_UDP_DIAG")
        );
    }
    // A family whose diag fails makes the verdict no, UDP-Lite included.
    let fams = sockets::required_diag_families();
    let only_udplite_fails = |_f: libc::c_int, p: u8| {
        if p == libc::IPPROTO_UDPLITE as u8 {
            Err(ProbeError::Sys {
                what: "test".into(),
                errno: Errno::ENOENT,
            })
        } else {
            Ok(())
        }
    };
    let verdict = sockets::diag_verdict(&fams, only_udplite_fails);
    if v4 || v6 {
        let e = verdict.expect_err("a failed UDP-Lite diag must fail sock_diag");
        assert!(e.to_string().contains("udplite"), "{e}");
    } else {
        assert!(verdict.is_ok());
    }
}

#[test]
fn tcp_probes_match_config() {
    agree("tcp", sockets::tcp_repair(), enabled("INET"));
    agree("tcp_window", sockets::tcp_repair_window(), at_least(4, 8));
    agree(
        "tcp_half_closed",
        sockets::tcp_half_closed(),
        at_least(4, 12),
    );
}

#[test]
fn sockopt_probes_match_version() {
    agree("sock_peek_off", sockets::sock_peek_off(), at_least(3, 4));
    agree("so_gets", sockets::so_gets(), at_least(3, 8));
    agree(
        "sockopt_buf_lock",
        sockets::sockopt_buf_lock(),
        at_least(5, 14),
    );
    agree(
        "ipv6_freebind",
        sockets::ipv6_freebind(),
        at_least(4, 15) && enabled("IPV6"),
    );
}

/// The netns fd from SIOCGSKNS is the same namespace as /proc/self/ns/net.
#[test]
fn sk_ns_gives_our_netns() {
    let sk = std::os::unix::net::UnixDatagram::unbound().expect("socket");
    let ns = sockets::netns_of(sk.as_raw_fd());
    agree("sk_ns", sockets::sk_netns(), ns.is_ok());
    let ns = ns.expect("SIOCGSKNS");
    let a = nix::sys::stat::fstat(&ns).expect("fstat");
    let b = nix::sys::stat::stat("/proc/self/ns/net").expect("stat");
    assert_eq!((a.st_dev, a.st_ino), (b.st_dev, b.st_ino));
}

/// SIOCUNIXFILE on a bound socket gives an O_PATH fd of the very socket file.
#[test]
fn sk_unix_file_opens_the_socket_file() {
    let dir = std::env::temp_dir().join(format!("criu-check-sk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).expect("mkdir");
    let path = dir.join("sock");
    let sk = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
    let fd = sockets::unix_socket_file(sk.as_raw_fd());
    let link = fd
        .as_ref()
        .ok()
        .and_then(|fd| std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok());
    drop(sk);
    let _ = std::fs::remove_dir_all(&dir);
    agree(
        "sk_unix_file",
        sockets::sk_unix_file(),
        link.as_deref() == Some(path.as_path()),
    );
}

#[test]
fn tun_matches_device_node() {
    let dev = nix::sys::stat::stat("/dev/net/tun").ok();
    let is_tun = dev
        .map(|st| libc::major(st.st_rdev) == 10 && libc::minor(st.st_rdev) == 200)
        .unwrap_or(false);
    agree("tun", sockets::tun(), is_tun && enabled("TUN"));
    agree(
        "tun_ns",
        sockets::tun_netns(),
        is_tun && enabled("TUN") && at_least(4, 9),
    );
}

// ---- netlink ----

#[test]
fn netlink_probes_match_config() {
    agree("nsid", netlink::nsid(), at_least(4, 0) && enabled("NET_NS"));
    agree(
        "link_nsid",
        netlink::link_nsid(),
        enabled("VETH") && enabled("NET_NS"),
    );
    agree("newifindex", netlink::newifindex(), at_least(6, 2));
    agree("nftables", netlink::nftables(), enabled("NF_TABLES"));
    agree(
        "network_lock_nftables",
        netlink::nftables_concat_set(),
        enabled("NF_TABLES") && enabled("NF_TABLES_INET"),
    );
}

// ---- namespaces ----
