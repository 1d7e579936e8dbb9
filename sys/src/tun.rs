//! `/dev/net/tun` ioctls for persistent tun/tap devices: attach to one to read its settings,
//! or make one with a given index, flags, owner, group, send buffer and virtio header size.
//! `/dev/net/tun` works in the network namespace of the thread that opens it.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;

use nix::errno::Errno;

/// `struct ifreq` with the flags member of its union (40 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    pad: [u8; 22],
}

/// A device's settings as `tun_link_entry` keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunSettings {
    /// TUNSETIFF flags (IFF_TUN or IFF_TAP, IFF_NO_PI, IFF_VNET_HDR, IFF_MULTI_QUEUE,
    /// IFF_PERSIST...).
    pub flags: u32,
    /// -1: none.
    pub owner: i32,
    /// -1: none.
    pub group: i32,
    pub vnethdr: i32,
    pub sndbuf: i32,
}

fn ifreq(name: &str, flags: u32) -> Result<IfReq, Errno> {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: flags as libc::c_short,
        pad: [0; 22],
    };
    if name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(Errno::EINVAL);
    }
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    Ok(req)
}

fn open() -> Result<File, Errno> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// An ioctl whose argument is a pointer to `T`.
fn ioctl_ptr<T>(f: &File, request: libc::Ioctl, arg: &mut T) -> Result<(), Errno> {
    // SAFETY: every caller passes a request whose argument is a pointer to a `T` (an int or
    // the repr(C) `IfReq`, as large as the kernel's `struct ifreq`), and `arg` is live and
    // writable for the call.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), request, arg as *mut T) };
    crate::ret::check(r)?;
    Ok(())
}

/// An ioctl whose argument is a plain value.
fn ioctl_val(f: &File, request: libc::Ioctl, arg: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: every caller passes a request that takes its argument by value (TUNSETPERSIST,
    // TUNSETOWNER, TUNSETGROUP): the kernel reads no memory through it.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), request, arg) };
    crate::ret::check(r)?;
    Ok(())
}

/// Attaches to the existing device `name` (`flags` must be its own: TUNSETIFF sets the
/// device's features to them) and reads its virtio header size and send buffer; the owner
/// and group are not read here.
pub fn read(name: &str, flags: u32) -> Result<TunSettings, Errno> {
    let f = open()?;
    let mut req = ifreq(name, flags & !(libc::IFF_PERSIST as u32))?;
    ioctl_ptr(&f, libc::TUNSETIFF, &mut req)?;
    let mut req = ifreq("", 0)?;
    ioctl_ptr(&f, libc::TUNGETIFF, &mut req)?;
    let (mut vnethdr, mut sndbuf): (libc::c_int, libc::c_int) = (0, 0);
    ioctl_ptr(&f, libc::TUNGETVNETHDRSZ, &mut vnethdr)?;
    ioctl_ptr(&f, libc::TUNGETSNDBUF, &mut sndbuf)?;
    Ok(TunSettings {
        flags: u32::from(req.flags as u16),
        owner: -1,
        group: -1,
        vnethdr,
        sndbuf,
    })
}

/// Makes persistent device `name` with index `index` (0: any) and settings `s`.
pub fn create(name: &str, index: u32, s: &TunSettings) -> Result<(), (&'static str, Errno)> {
    let f = open().map_err(|e| ("open /dev/net/tun", e))?;
    if index != 0 {
        let mut i = index as libc::c_int;
        ioctl_ptr(&f, libc::TUNSETIFINDEX, &mut i).map_err(|e| ("TUNSETIFINDEX", e))?;
    }
    let mut req = ifreq(name, s.flags & !(libc::IFF_PERSIST as u32)).map_err(|e| ("name", e))?;
    ioctl_ptr(&f, libc::TUNSETIFF, &mut req).map_err(|e| ("TUNSETIFF", e))?;
    if s.owner != -1 {
        ioctl_val(&f, libc::TUNSETOWNER, s.owner as libc::c_ulong)
            .map_err(|e| ("TUNSETOWNER", e))?;
    }
    if s.group != -1 {
        ioctl_val(&f, libc::TUNSETGROUP, s.group as libc::c_ulong)
            .map_err(|e| ("TUNSETGROUP", e))?;
    }
    let mut sndbuf = s.sndbuf;
    ioctl_ptr(&f, libc::TUNSETSNDBUF, &mut sndbuf).map_err(|e| ("TUNSETSNDBUF", e))?;
    let mut vnethdr = s.vnethdr;
    ioctl_ptr(&f, libc::TUNSETVNETHDRSZ, &mut vnethdr).map_err(|e| ("TUNSETVNETHDRSZ", e))?;
    ioctl_val(&f, libc::TUNSETPERSIST, 1).map_err(|e| ("TUNSETPERSIST", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_is_the_kernels_size_and_names_are_checked() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert!(ifreq("tap0", 2).is_ok());
        assert_eq!(ifreq("a-name-far-too-long", 2).unwrap_err(), Errno::EINVAL);
    }
}
