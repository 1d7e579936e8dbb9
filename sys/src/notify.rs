//! Raw calls behind epoll, inotify and fanotify dump and restore: which file an epoll target
//! slot holds (kcmp), opening a watched inode from its exported file handle, inotify with a
//! chosen next watch descriptor, and fanotify groups and marks.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

/// KCMP_EPOLL_TFD from linux/kcmp.h.
const KCMP_EPOLL_TFD: libc::c_long = 7;

/// `_IOW('I', 0, __s32)` from linux/inotify.h: the wd the next added watch gets.
const INOTIFY_IOC_SETNEXTWD: libc::c_ulong = 0x4004_4900;

/// The largest file handle the kernel exports (MAX_HANDLE_SZ).
pub const MAX_HANDLE_SZ: usize = 128;

/// struct kcmp_epoll_slot from linux/kcmp.h.
#[repr(C)]
struct EpollSlot {
    efd: u32,
    tfd: u32,
    toff: u32,
}

/// Whether `fd` of `pid` is the file registered in epoll `efd` (of the same `pid`) as the
/// `toff`-th target with fd number `tfd` (targets sharing a number are counted in fdinfo order).
pub fn epoll_target_is(pid: i32, efd: i32, tfd: i32, toff: u32, fd: i32) -> Result<bool, Errno> {
    let slot = EpollSlot {
        efd: efd as u32,
        tfd: tfd as u32,
        toff,
    };
    // SAFETY: for KCMP_EPOLL_TFD the kernel reads one struct kcmp_epoll_slot at the last
    // argument, which points at `slot`, alive for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid as libc::c_long,
            pid as libc::c_long,
            KCMP_EPOLL_TFD,
            fd as libc::c_ulong,
            &slot as *const EpollSlot,
        )
    };
    Ok(crate::ret::check(r)? == 0)
}

/// Opens the inode behind an exported file handle, on the filesystem `mount` is on
/// (open_by_handle_at; needs CAP_DAC_READ_SEARCH). `flags` as for open, e.g. O_PATH.
pub fn open_by_handle(
    mount: BorrowedFd<'_>,
    handle_type: i32,
    handle: &[u8],
    flags: i32,
) -> Result<OwnedFd, Errno> {
    if handle.len() > MAX_HANDLE_SZ {
        return Err(Errno::EINVAL);
    }
    // struct file_handle: handle_bytes (u32), handle_type (i32), then the bytes.
    let mut buf = [0u8; 8 + MAX_HANDLE_SZ];
    buf[..4].copy_from_slice(&(handle.len() as u32).to_ne_bytes());
    buf[4..8].copy_from_slice(&handle_type.to_ne_bytes());
    buf[8..8 + handle.len()].copy_from_slice(handle);
    // SAFETY: the kernel reads a struct file_handle of 8 + handle_bytes bytes at `buf`, which
    // holds that many, alive for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_raw_fd() as libc::c_long,
            buf.as_ptr(),
            (flags | libc::O_CLOEXEC) as libc::c_long,
        )
    };
    crate::ret::new_fd(fd)
}

fn c_path(path: &Path) -> Result<CString, Errno> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

/// A new close-on-exec inotify instance; `flags` may add IN_NONBLOCK.
pub fn inotify_init(flags: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: inotify_init1 takes only an integer.
    let fd = unsafe { libc::inotify_init1(flags | libc::IN_CLOEXEC) };
    crate::ret::new_fd(fd)
}

/// Adds (or updates) a watch; returns its wd.
pub fn inotify_add_watch(fd: BorrowedFd<'_>, path: &Path, mask: u32) -> Result<i32, Errno> {
    let c = c_path(path)?;
    // SAFETY: `c` is a NUL-terminated string alive for the call.
    let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) };
    crate::ret::check(wd)
}

pub fn inotify_rm_watch(fd: BorrowedFd<'_>, wd: i32) -> Result<(), Errno> {
    // SAFETY: inotify_rm_watch takes only integers.
    crate::ret::check(unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) })?;
    Ok(())
}

/// Makes `wd` the next watch descriptor given out (kernels with checkpoint/restore support).
pub fn inotify_set_next_wd(fd: BorrowedFd<'_>, wd: i32) -> Result<(), Errno> {
    // SAFETY: this ioctl takes its argument by value, reading no memory.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), INOTIFY_IOC_SETNEXTWD, wd as libc::c_long) };
    crate::ret::check(r)?;
    Ok(())
}

/// A new fanotify group with exactly `flags` (the group shows them in fdinfo); criu's fd gets
/// close-on-exec afterwards, which does not change them.
pub fn fanotify_init(flags: u32, event_flags: u32) -> Result<OwnedFd, Errno> {
    // SAFETY: fanotify_init takes only integers.
    let fd = crate::ret::new_fd(unsafe { libc::fanotify_init(flags, event_flags) })?;
    nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )?;
    Ok(fd)
}

/// fanotify_mark on `path` (relative paths from the cwd).
pub fn fanotify_mark(fd: BorrowedFd<'_>, flags: u32, mask: u64, path: &Path) -> Result<(), Errno> {
    let c = c_path(path)?;
    // SAFETY: `c` is a NUL-terminated string alive for the call.
    let r = unsafe { libc::fanotify_mark(fd.as_raw_fd(), flags, mask, libc::AT_FDCWD, c.as_ptr()) };
    crate::ret::check(r)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn inotify_wds_can_be_chosen() {
        let dir = tempfile::tempdir().unwrap();
        let fd = inotify_init(0).unwrap();
        match inotify_set_next_wd(fd.as_fd(), 7) {
            Ok(()) => {
                let wd = inotify_add_watch(fd.as_fd(), dir.path(), libc::IN_CREATE).unwrap();
                assert_eq!(wd, 7);
                inotify_rm_watch(fd.as_fd(), wd).unwrap();
            }
            Err(e) => assert!(matches!(e, Errno::ENOTTY | Errno::EINVAL), "{e}"),
        }
        assert_eq!(
            inotify_add_watch(fd.as_fd(), &dir.path().join("missing"), libc::IN_CREATE),
            Err(Errno::ENOENT)
        );
    }

    #[test]
    fn an_epoll_target_is_found_by_kcmp() {
        let me = std::process::id() as i32;
        let ep =
            nix::sys::epoll::Epoll::new(nix::sys::epoll::EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        let ev = nix::sys::epoll::EpollEvent::new(nix::sys::epoll::EpollFlags::EPOLLIN, 1);
        ep.add(&r, ev).unwrap();
        let efd = ep.0.as_raw_fd();
        let tfd = r.as_raw_fd();
        assert_eq!(epoll_target_is(me, efd, tfd, 0, tfd), Ok(true));
        assert_eq!(epoll_target_is(me, efd, tfd, 0, w.as_raw_fd()), Ok(false));
        assert!(epoll_target_is(me, efd, tfd, 1, tfd).is_err());
    }
}
