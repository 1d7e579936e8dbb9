//! Socket options as plain bytes and integers, for the options nix has no type for (TCP repair,
//! IP options, socket filters), and the queue-length ioctls.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

/// Reads option `opt` of `level` into `buf`; returns the length the kernel wrote.
pub fn get_bytes(fd: BorrowedFd<'_>, level: i32, opt: i32, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `buf` and updates `len`.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    crate::ret::check(i64::from(ret))?;
    Ok(len as usize)
}

/// Sets option `opt` of `level` to the bytes of `buf`.
pub fn set_bytes(fd: BorrowedFd<'_>, level: i32, opt: i32, buf: &[u8]) -> Result<(), Errno> {
    // SAFETY: the kernel reads `buf.len()` bytes from `buf`.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            buf.as_ptr().cast(),
            buf.len() as libc::socklen_t,
        )
    };
    crate::ret::check(i64::from(ret)).map(drop)
}

/// An integer option. Options the kernel keeps as one byte (IP_TOS is an int, but some
/// IPv6 ones are not) are read as the bytes the kernel gives, little end first.
pub fn get_int(fd: BorrowedFd<'_>, level: i32, opt: i32) -> Result<i32, Errno> {
    let mut buf = [0u8; 4];
    let n = get_bytes(fd, level, opt, &mut buf)?;
    buf[n.min(4)..].fill(0);
    Ok(i32::from_ne_bytes(buf))
}

pub fn set_int(fd: BorrowedFd<'_>, level: i32, opt: i32, val: i32) -> Result<(), Errno> {
    set_bytes(fd, level, opt, &val.to_ne_bytes())
}

/// A socket's attached classic BPF filter, one `struct sock_filter` (8 bytes) per u64, as
/// CRIU keeps it. Empty when none is attached.
pub fn get_filter(fd: BorrowedFd<'_>) -> Result<Vec<u64>, Errno> {
    // With a zero length the kernel answers with the number of instructions.
    let mut count: libc::socklen_t = 0;
    // SAFETY: a null buffer with length 0 only asks for the count, written to `count`.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            std::ptr::null_mut(),
            &mut count,
        )
    };
    crate::ret::check(i64::from(ret))?;
    if count == 0 {
        return Ok(Vec::new());
    }
    let mut insns = vec![0u64; count as usize];
    let mut len = count;
    // SAFETY: `insns` holds `count` instructions; SO_GET_FILTER takes the length in
    // instructions and writes at most that many.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            insns.as_mut_ptr().cast(),
            &mut len,
        )
    };
    crate::ret::check(i64::from(ret))?;
    insns.truncate(len as usize);
    Ok(insns)
}

/// Attaches a classic BPF filter read by `get_filter`.
pub fn attach_filter(fd: BorrowedFd<'_>, insns: &[u64]) -> Result<(), Errno> {
    let mut prog = insns.to_vec();
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr().cast(),
    };
    // SAFETY: `fprog` points at `prog`, alive for the call; the kernel copies the program.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            std::ptr::addr_of!(fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    crate::ret::check(i64::from(ret)).map(drop)
}

/// A new socket of any protocol number (nix names only some), close-on-exec.
pub fn socket(family: i32, kind: i32, proto: i32) -> Result<std::os::fd::OwnedFd, Errno> {
    // SAFETY: socket() takes plain integers and returns a new fd or -1.
    let fd = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, proto) };
    crate::ret::new_fd(fd)
}

/// A ping socket (datagram ICMP or ICMPv6) of the calling thread's network namespace. The
/// kernel lets only the groups of that namespace's `net.ipv4.ping_group_range` make one: a
/// namespace of a user namespace's tree names its own groups there, none of them criu's. The
/// calling thread then takes the range's first group as its effective gid for the one call
/// (a raw setresgid changes this thread alone), as the tree's own task would have it.
pub fn ping_socket(family: i32, kind: i32, proto: i32) -> Result<std::os::fd::OwnedFd, Errno> {
    match socket(family, kind, proto) {
        Err(Errno::EACCES) => {}
        other => return other,
    }
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
        .map_err(|_| Errno::EACCES)?;
    let Some(low) = range
        .split_whitespace()
        .next()
        .and_then(|g| g.parse::<u32>().ok())
    else {
        return Err(Errno::EACCES);
    };
    let keep = u64::from(u32::MAX); // -1: leave that id as it is
                                    // SAFETY: getegid takes no arguments.
    let egid = unsafe { libc::getegid() };
    // SAFETY: setresgid takes plain integers and changes the calling thread's ids only.
    crate::ret::check(unsafe { libc::syscall(libc::SYS_setresgid, keep, u64::from(low), keep) })?;
    let made = socket(family, kind, proto);
    // SAFETY: as above, back to the thread's own effective gid.
    crate::ret::check(unsafe { libc::syscall(libc::SYS_setresgid, keep, u64::from(egid), keep) })?;
    made
}

/// Binds a packet socket (AF_PACKET, SOCK_RAW or SOCK_DGRAM) to interface `ifindex` (0: every
/// interface), keeping the protocol it was made with.
pub fn bind_packet(fd: BorrowedFd<'_>, ifindex: i32) -> Result<(), Errno> {
    // SAFETY: sockaddr_ll is plain integers; all zeros is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex;
    // SAFETY: the kernel reads `size_of::<sockaddr_ll>()` bytes from a live local.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::addr_of!(addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    crate::ret::check(i64::from(ret)).map(drop)
}

/// Binds an old-style packet socket (SOCK_PACKET) to the interface named `name`, which such
/// sockets take in `sa_data` of a plain sockaddr.
pub fn bind_packet_name(fd: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
    // SAFETY: sockaddr is plain integers; all zeros is a valid value.
    let mut addr: libc::sockaddr = unsafe { std::mem::zeroed() };
    addr.sa_family = libc::AF_PACKET as u16;
    // The last byte stays 0: the kernel reads the name as a C string.
    if name.len() >= addr.sa_data.len() {
        return Err(Errno::ENAMETOOLONG);
    }
    for (d, s) in addr.sa_data.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: the kernel reads `size_of::<sockaddr>()` bytes from a live local.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::addr_of!(addr).cast(),
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    };
    crate::ret::check(i64::from(ret)).map(drop)
}

/// The queue lengths of a socket: SIOCINQ (bytes to read), SIOCOUTQ (bytes not yet
/// acknowledged) and SIOCOUTQNSD (bytes not yet sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    In,
    Out,
    OutNotSent,
}

pub fn queue_len(fd: BorrowedFd<'_>, queue: Queue) -> Result<u32, Errno> {
    let request = match queue {
        Queue::In => libc::FIONREAD,
        Queue::Out => libc::TIOCOUTQ,
        Queue::OutNotSent => 0x894B, // SIOCOUTQNSD
    };
    let mut len: libc::c_int = 0;
    // SAFETY: these ioctls write one int.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request, &mut len as *mut libc::c_int) };
    crate::ret::check(i64::from(ret))?;
    Ok(len as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn filter_round_trip() {
        let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        assert!(get_filter(a.as_fd()).unwrap().is_empty());
        // "ret #-1": accept everything; code 0x06, k = 0xffffffff.
        let insn = 0x06u64 | (0xffff_ffffu64 << 32);
        attach_filter(a.as_fd(), &[insn, insn]).unwrap();
        assert_eq!(get_filter(a.as_fd()).unwrap(), vec![insn, insn]);
    }

    #[test]
    fn int_options_and_queue_lengths() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        set_int(a.as_fd(), libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1).unwrap();
        assert_eq!(
            get_int(a.as_fd(), libc::SOL_SOCKET, libc::SO_KEEPALIVE).unwrap(),
            1
        );
        std::io::Write::write_all(&mut &b, b"hello").unwrap();
        assert_eq!(queue_len(a.as_fd(), Queue::In).unwrap(), 5);
    }
}
