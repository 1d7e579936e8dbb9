//! A network interface's flags and MTU through the classic ioctls, in the network namespace
//! of the calling thread.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;

fn socket() -> Result<OwnedFd, Errno> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
}

fn ifreq(name: &str) -> Result<libc::ifreq, Errno> {
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(Errno::ENAMETOOLONG);
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

fn ioctl(fd: &OwnedFd, request: libc::Ioctl, req: &mut libc::ifreq) -> Result<(), Errno> {
    // SAFETY: the interface ioctls read and write only the ifreq they are given.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request, req as *mut libc::ifreq) };
    crate::ret::check(ret as i64).map(drop)
}

/// The interface's flags (IFF_*) and MTU.
pub fn flags_and_mtu(name: &str) -> Result<(u32, u32), Errno> {
    let fd = socket()?;
    let mut req = ifreq(name)?;
    ioctl(&fd, libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags } as u16 as u32;
    ioctl(&fd, libc::SIOCGIFMTU, &mut req)?;
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu } as u32;
    Ok((flags, mtu))
}

/// Sets the interface's MTU and the flags that can be set this way (IFF_UP among them).
pub fn set_flags_and_mtu(name: &str, flags: u32, mtu: u32) -> Result<(), Errno> {
    let fd = socket()?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    ioctl(&fd, libc::SIOCSIFMTU, &mut req)?;
    req.ifr_ifru.ifru_flags = flags as u16 as libc::c_short;
    ioctl(&fd, libc::SIOCSIFFLAGS, &mut req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_up_and_a_missing_interface_is_an_error() {
        let (flags, mtu) = flags_and_mtu("lo").unwrap();
        assert_ne!(flags & libc::IFF_UP as u32, 0);
        assert!(mtu > 0);
        assert_eq!(flags_and_mtu("nosuchif0").unwrap_err(), Errno::ENODEV);
    }
}
