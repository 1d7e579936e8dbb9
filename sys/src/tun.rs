//! `/dev/net/tun` ioctls: attach to a persistent device to read its settings, make one with a
//! given index, flags, owner, group, send buffer and virtio header size; read what a task's
//! tun file is attached to, and attach one again. `/dev/net/tun` works in the network
//! namespace of the thread that opens it.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

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

/// Opens `/dev/net/tun` (read and write) with the extra status flags `flags` (O_NONBLOCK...),
/// close-on-exec.
pub fn open_with(flags: i32) -> Result<File, Errno> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

fn open() -> Result<File, Errno> {
    open_with(0)
}

/// An ioctl whose argument is a pointer to `T`.
fn ioctl_ptr<T>(f: &impl AsFd, request: libc::Ioctl, arg: &mut T) -> Result<(), Errno> {
    // SAFETY: every caller passes a request whose argument is a pointer to a `T` (an int or
    // the repr(C) `IfReq`, as large as the kernel's `struct ifreq`), and `arg` is live and
    // writable for the call.
    let r = unsafe { libc::ioctl(f.as_fd().as_raw_fd(), request, arg as *mut T) };
    crate::ret::check(r)?;
    Ok(())
}

/// An ioctl whose argument is a plain value; returns what the kernel returns.
fn ioctl_val(f: &impl AsFd, request: libc::Ioctl, arg: libc::c_ulong) -> Result<i32, Errno> {
    // SAFETY: every caller passes a request that takes its argument by value (TUNSETPERSIST,
    // TUNSETOWNER, TUNSETGROUP): the kernel reads no memory through it.
    let r = unsafe { libc::ioctl(f.as_fd().as_raw_fd(), request, arg) };
    crate::ret::check(r)
}

/// What a tun file is attached to: the device's name and TUNGETIFF's flags (the device's,
/// with IFF_DETACH_QUEUE for a detached queue); None for a file attached to nothing.
pub fn attached_to(f: BorrowedFd<'_>) -> Result<Option<(String, u32)>, Errno> {
    let mut req = ifreq("", 0)?;
    match ioctl_ptr(&f, libc::TUNGETIFF, &mut req) {
        Err(Errno::EBADFD) => return Ok(None),
        r => r?,
    }
    let len = req
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(req.name.len());
    let name = String::from_utf8_lossy(&req.name[..len]).into_owned();
    Ok(Some((name, u32::from(req.flags as u16))))
}

/// The virtio header size and send buffer of the device `f` is attached to.
pub fn queue_settings(f: BorrowedFd<'_>) -> Result<(i32, i32), Errno> {
    let (mut vnethdr, mut sndbuf): (libc::c_int, libc::c_int) = (0, 0);
    ioctl_ptr(&f, libc::TUNGETVNETHDRSZ, &mut vnethdr)?;
    ioctl_ptr(&f, libc::TUNGETSNDBUF, &mut sndbuf)?;
    Ok((vnethdr, sndbuf))
}

/// The length of the socket filter a tap file has (TUNGETFILTER; 0: none).
pub fn filter_len(f: BorrowedFd<'_>) -> Result<u16, Errno> {
    let mut prog = libc::sock_fprog {
        len: 0,
        filter: std::ptr::null_mut(),
    };
    ioctl_ptr(&f, libc::TUNGETFILTER, &mut prog)?;
    Ok(prog.len)
}

/// Attaches the tun file `f` to the existing device `name` with the device's `flags`
/// (IFF_PERSIST is not a TUNSETIFF flag and is left out) and send buffer (a queue that
/// attaches keeps its own until the device's is set again), then detaches its queue if
/// `detached`.
pub fn attach(
    f: BorrowedFd<'_>,
    name: &str,
    flags: u32,
    sndbuf: i32,
    detached: bool,
) -> Result<(), (&'static str, Errno)> {
    let mut req = ifreq(name, flags & !(libc::IFF_PERSIST as u32)).map_err(|e| ("name", e))?;
    ioctl_ptr(&f, libc::TUNSETIFF, &mut req).map_err(|e| ("TUNSETIFF", e))?;
    let mut sndbuf = sndbuf;
    ioctl_ptr(&f, libc::TUNSETSNDBUF, &mut sndbuf).map_err(|e| ("TUNSETSNDBUF", e))?;
    if detached {
        let mut req = ifreq("", libc::IFF_DETACH_QUEUE as u32).map_err(|e| ("name", e))?;
        ioctl_ptr(&f, libc::TUNSETQUEUE, &mut req).map_err(|e| ("TUNSETQUEUE", e))?;
    }
    Ok(())
}

/// Makes the device `f` is attached to persistent or not.
pub fn set_persist(f: BorrowedFd<'_>, on: bool) -> Result<(), Errno> {
    ioctl_val(&f, libc::TUNSETPERSIST, libc::c_ulong::from(on)).map(drop)
}

/// Attaches to the existing device `name` (`flags` must be its own: TUNSETIFF sets the
/// device's features to them) and reads its virtio header size and send buffer; the owner
/// and group are not read here.
pub fn read(name: &str, flags: u32) -> Result<TunSettings, Errno> {
    let f = open()?;
    let mut req = ifreq(name, flags & !(libc::IFF_PERSIST as u32))?;
    ioctl_ptr(&f, libc::TUNSETIFF, &mut req)?;
    let (_, flags) = attached_to(f.as_fd())?.ok_or(Errno::EBADFD)?;
    let (vnethdr, sndbuf) = queue_settings(f.as_fd())?;
    Ok(TunSettings {
        flags,
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
    set_persist(f.as_fd(), true).map_err(|e| ("TUNSETPERSIST", e))
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
