//! The mount syscalls neither nix nor rustix wraps: `mount_setattr(2)` and probes for
//! `statmount(2)`/`listmount(2)`.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

use crate::ret::check;

pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
pub const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
pub const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
pub const MOUNT_ATTR__ATIME: u64 = 0x0000_0070;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0000_0000;
pub const MOUNT_ATTR_NOATIME: u64 = 0x0000_0010;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x0000_0020;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x0000_0080;

/// `AT_EMPTY_PATH`: act on the fd itself.
pub const AT_EMPTY_PATH: u32 = 0x1000;
/// `AT_RECURSIVE`: act on the whole subtree.
pub const AT_RECURSIVE: u32 = 0x8000;

/// Propagation types for [`MountAttr::propagation`] (the `MS_*` values).
pub const MS_UNBINDABLE: u64 = 1 << 17;
pub const MS_PRIVATE: u64 = 1 << 18;
pub const MS_SLAVE: u64 = 1 << 19;
pub const MS_SHARED: u64 = 1 << 20;

/// `struct mount_attr`, the argument of `mount_setattr(2)`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

/// `mount_setattr(dirfd, path, flags, attr)`: changes per-mount attributes and propagation of
/// the mount at `path` relative to `dirfd` (or of `dirfd` itself with an empty path and
/// [`AT_EMPTY_PATH`]).
pub fn mount_setattr<Fd: AsFd>(
    dirfd: Fd,
    path: &Path,
    flags: u32,
    attr: &MountAttr,
) -> Result<(), Errno> {
    let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: the path is a NUL-terminated string that outlives the call, `attr` points to a
    // live `struct mount_attr` whose size is passed, and the kernel only reads it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd.as_fd().as_raw_fd(),
            path.as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(ret).map(drop)
}

/// Whether this kernel has `statmount(2)` and `listmount(2)`: each called with a null buffer,
/// which a kernel that has them answers with EFAULT or EINVAL rather than ENOSYS.
pub fn has_statmount_listmount() -> (bool, bool) {
    const SYS_STATMOUNT: libc::c_long = 457;
    const SYS_LISTMOUNT: libc::c_long = 458;
    let probe = |nr: libc::c_long| {
        // SAFETY: every pointer argument is null, which the kernel checks before touching
        // memory; nothing is written in this process.
        let ret = unsafe { libc::syscall(nr, 0usize, 0usize, 0usize, 0usize) };
        !(ret < 0 && Errno::last() == Errno::ENOSYS)
    };
    (probe(SYS_STATMOUNT), probe(SYS_LISTMOUNT))
}
