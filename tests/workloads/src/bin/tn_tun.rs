//! Self-checking tun workload for restore tests: `tn_tun RESULT_FILE`, run in a network
//! namespace of its own.
//!
//! Opens `/dev/net/tun` four times: one file attached to nothing (non-blocking); one
//! attached to a new tun device `tunq0` (no packet info); two queues of a new multi-queue tap
//! `tapq1` (virtio header size 12, send buffer 65536), the second detached. None of the
//! devices is persistent. Writes "READY" and waits for SIGUSR1 (the test gives `tunq0` an
//! address and sets it up meanwhile), then checks every file is attached as it was, that a
//! datagram sent to 10.9.9.2 comes out of `tunq0`'s file, that the detached queue can be
//! attached again, and that `tunq0` goes away with its file (not persistent); writes "PASS" or
//! "FAIL: why".

use std::os::fd::RawFd;

use criu_test_workloads::verdict::{catch_usr1, ensure, ready_then_wait, Check};

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    pad: [u8; 22],
}

fn ifreq(name: &str, flags: i32) -> IfReq {
    let mut r = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: flags as libc::c_short,
        pad: [0; 22],
    };
    r.name[..name.len()].copy_from_slice(name.as_bytes());
    r
}

fn open_tun(flags: i32) -> RawFd {
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | flags) };
    assert!(fd >= 0, "open /dev/net/tun");
    fd
}

fn ioctl_ptr<T>(fd: RawFd, req: libc::Ioctl, arg: &mut T) -> i32 {
    // SAFETY: every request used here takes a pointer to a `T` that lives for the call.
    unsafe { libc::ioctl(fd, req, arg as *mut T) }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn attach(fd: RawFd, name: &str, flags: i32) {
    let mut r = ifreq(name, flags);
    assert_eq!(
        ioctl_ptr(fd, libc::TUNSETIFF, &mut r),
        0,
        "TUNSETIFF {name}"
    );
}

/// TUNGETIFF: (name, flags), or the errno.
fn attached(fd: RawFd) -> Result<(String, i32), i32> {
    let mut r = ifreq("", 0);
    if ioctl_ptr(fd, libc::TUNGETIFF, &mut r) < 0 {
        return Err(errno());
    }
    let len = r.name.iter().position(|&b| b == 0).unwrap_or(r.name.len());
    let name = String::from_utf8_lossy(&r.name[..len]).into_owned();
    Ok((name, i32::from(r.flags as u16)))
}

fn get_int(fd: RawFd, req: libc::Ioctl) -> i32 {
    let mut v: libc::c_int = -1;
    ioctl_ptr(fd, req, &mut v);
    v
}

/// Whether the namespace has a device called `name`.
fn has_device(name: &str) -> bool {
    // SAFETY: plain socket call.
    let sk = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    let mut r = ifreq(name, 0);
    let found = ioctl_ptr(sk, libc::SIOCGIFINDEX, &mut r) == 0;
    // SAFETY: closes the socket made above.
    unsafe { libc::close(sk) };
    found
}

/// A datagram to 10.9.9.2:9 must come out of `tun` as an IPv4 packet to that address.
fn packet_comes_out(tun: RawFd) -> Check {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("bind: {e}"))?;
    sock.send_to(b"hello", "10.9.9.2:9")
        .map_err(|e| format!("send to 10.9.9.2: {e}"))?;
    let mut buf = [0u8; 2048];
    for _ in 0..50 {
        // SAFETY: reads into a live buffer.
        let n = unsafe { libc::read(tun, buf.as_mut_ptr().cast(), buf.len()) };
        // Without packet info, the first byte is the IP version; IPv6 router solicitations
        // may come first.
        if n >= 20 && buf[0] >> 4 == 4 && buf[16..20] == [10, 9, 9, 2] {
            return Ok(());
        }
        if n < 0 {
            return Err(format!("read tunq0's file: errno {}", errno()));
        }
    }
    Err("no packet to 10.9.9.2 came out of tunq0's file".into())
}

fn checks(fds: [RawFd; 4]) -> Check {
    let [plain, tun, q1, q2] = fds;
    ensure(attached(plain) == Err(libc::EBADFD), || {
        format!("the plain file is attached: {:?}", attached(plain))
    })?;
    // SAFETY: plain fcntl.
    let fl = unsafe { libc::fcntl(plain, libc::F_GETFL) };
    ensure(fl & libc::O_NONBLOCK != 0, || {
        "the plain file lost O_NONBLOCK".into()
    })?;
    let (name, flags) = attached(tun).map_err(|e| format!("tunq0's file: errno {e}"))?;
    ensure(name == "tunq0" && flags & libc::IFF_TUN != 0, || {
        format!("tunq0's file is attached to {name} with flags {flags:#x}")
    })?;
    for (fd, detached) in [(q1, false), (q2, true)] {
        let (name, flags) = attached(fd).map_err(|e| format!("tapq1's queue: errno {e}"))?;
        let want = libc::IFF_TAP | libc::IFF_MULTI_QUEUE;
        ensure(name == "tapq1" && flags & want == want, || {
            format!("a queue of tapq1 is attached to {name} with flags {flags:#x}")
        })?;
        ensure((flags & libc::IFF_DETACH_QUEUE != 0) == detached, || {
            format!("tapq1's queue (fd {fd}): detached should be {detached}, flags {flags:#x}")
        })?;
    }
    let (hdr, sndbuf) = (
        get_int(q1, libc::TUNGETVNETHDRSZ),
        get_int(q1, libc::TUNGETSNDBUF),
    );
    ensure((hdr, sndbuf) == (12, 65536), || {
        format!("tapq1: virtio header size {hdr}, send buffer {sndbuf}")
    })?;
    let mut r = ifreq("", libc::IFF_ATTACH_QUEUE);
    ensure(ioctl_ptr(q2, libc::TUNSETQUEUE, &mut r) == 0, || {
        format!("the detached queue cannot attach: errno {}", errno())
    })?;
    packet_comes_out(tun)?;
    // SAFETY: closes tunq0's only file.
    unsafe { libc::close(tun) };
    ensure(!has_device("tunq0"), || {
        "tunq0 outlived its only file: it came back persistent".into()
    })
}

fn main() {
    // A dump root leads its session.
    let _ = nix::unistd::setsid();
    let result = std::env::args().nth(1).expect("usage: tn_tun RESULT_FILE");
    catch_usr1();
    let plain = open_tun(libc::O_NONBLOCK);
    let tun = open_tun(0);
    attach(tun, "tunq0", libc::IFF_TUN | libc::IFF_NO_PI);
    let q1 = open_tun(0);
    attach(
        q1,
        "tapq1",
        libc::IFF_TAP | libc::IFF_MULTI_QUEUE | libc::IFF_VNET_HDR,
    );
    let mut hdr: libc::c_int = 12;
    assert_eq!(ioctl_ptr(q1, libc::TUNSETVNETHDRSZ, &mut hdr), 0);
    let mut sndbuf: libc::c_int = 65536;
    assert_eq!(ioctl_ptr(q1, libc::TUNSETSNDBUF, &mut sndbuf), 0);
    let q2 = open_tun(0);
    attach(
        q2,
        "tapq1",
        libc::IFF_TAP | libc::IFF_MULTI_QUEUE | libc::IFF_VNET_HDR,
    );
    let mut r = ifreq("", libc::IFF_DETACH_QUEUE);
    assert_eq!(ioctl_ptr(q2, libc::TUNSETQUEUE, &mut r), 0, "detach");
    ready_then_wait(&result);
    let text = match checks([plain, tun, q1, q2]) {
        Ok(()) => "PASS\n".to_string(),
        Err(why) => format!("FAIL: {why}\n"),
    };
    std::fs::write(&result, text).expect("write result");
}
