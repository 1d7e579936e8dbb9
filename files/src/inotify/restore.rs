//! inotify at restore: criu creates each instance and adds its watches back, each on the path
//! found at dump (or, without one, on the inode opened again from its file handle), with the
//! wd the dump recorded: the kernel is told the next wd (INOTIFY_IOC_SETNEXTWD); on a kernel
//! without that ioctl, watches are added and removed until the counter reaches the wd, as CRIU
//! does, which needs the watches in ascending wd order.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use criu_procfs::fdinfo::split_kernel_dev;
use criu_proto::images::{FdTypes, FhEntry, InotifyWdEntry};
use nix::errno::Errno;

use crate::registry::{SharedError, SharedFiles};
use crate::root::FsRoot;
use criu_proto::dump_images::DumpImages;

/// Bits inotify_add_watch takes back from a dumped mask: the events, IN_ONESHOT and
/// IN_EXCL_UNLINK (the kernel shows both as mask bits).
const WATCH_BITS: u32 = libc::IN_ALL_EVENTS | libc::IN_ONESHOT | libc::IN_EXCL_UNLINK;

fn notify_err(id: u32, kind: &str, what: impl Into<String>) -> SharedError {
    SharedError::Notify {
        id,
        kind: kind.to_string(),
        what: what.into(),
    }
}

pub fn open_all(images: &DumpImages, shared: &mut SharedFiles) -> Result<(), SharedError> {
    for (id, e) in shared.to_make(images, FdTypes::Inotify, "ify", |f| f.ify.as_ref())? {
        let err = |what: String| notify_err(id, "inotify", what);
        let fd = criu_sys::notify::inotify_init(e.flags as i32 & libc::IN_NONBLOCK)
            .map_err(|e| err(format!("inotify_init1: {e}")))?;
        let mut watches: Vec<&InotifyWdEntry> = e.wd.iter().collect();
        watches.sort_by_key(|w| w.wd);
        for w in watches {
            add_watch(&fd, w, &shared.root)
                .map_err(|e| err(format!("watch {} (inode {}): {e}", w.wd, w.i_ino)))?;
        }
        // O_ASYNC and the owner: inotify signals its owner when an event is queued.
        crate::eventfd::restore::set_status_flags(fd.as_fd(), e.flags)
            .map_err(|e| err(format!("F_SETFL: {e}")))?;
        shared.restore_fown(id, &fd, &e.fown)?;
        shared.add_description(id, fd);
    }
    Ok(())
}

fn add_watch(fd: &OwnedFd, w: &InotifyWdEntry, root: &FsRoot) -> Result<(), String> {
    let target = WatchTarget::find(root, &w.f_handle, w.s_dev)?;
    let mask = w.mask & WATCH_BITS;
    let want = w.wd as i32;
    let chosen = criu_sys::notify::inotify_set_next_wd(fd.as_fd(), want).is_ok();
    loop {
        let wd = criu_sys::notify::inotify_add_watch(fd.as_fd(), &target.path, mask)
            .map_err(|e| format!("inotify_add_watch {}: {e}", target.path.display()))?;
        if wd == want {
            return Ok(());
        }
        if chosen || wd > want {
            return Err(format!("the kernel gave wd {wd}, not {want}"));
        }
        criu_sys::notify::inotify_rm_watch(fd.as_fd(), wd)
            .map_err(|e| format!("inotify_rm_watch {wd}: {e}"))?;
    }
}

/// A path to a watched inode, and the fd that keeps it openable when it is a /proc link.
pub(crate) struct WatchTarget {
    pub path: PathBuf,
    _fd: Option<OwnedFd>,
}

impl WatchTarget {
    /// The task's `path`, seen from `root`.
    pub fn at(root: &FsRoot, path: &std::path::Path) -> WatchTarget {
        WatchTarget {
            path: root.resolve(path),
            _fd: None,
        }
    }

    /// The dump's path for the inode if it has one, else the inode opened from its handle on
    /// one of the tree's mounts of its filesystem (both seen from `root`).
    pub fn find(root: &FsRoot, fh: &FhEntry, s_dev: u32) -> Result<WatchTarget, String> {
        if let Some(p) = &fh.path {
            return Ok(WatchTarget::at(root, std::path::Path::new(p)));
        }
        let handle: Vec<u8> = fh.handle.iter().flat_map(|w| w.to_le_bytes()).collect();
        let len = (fh.bytes as usize).min(handle.len());
        let mounts = root.mounts()?;
        let mut last = Errno::ENODEV;
        for m in mounts
            .iter()
            .filter(|m| (m.major, m.minor) == split_kernel_dev(s_dev))
        {
            let Ok(mnt) = std::fs::File::open(root.resolve(&m.mount_point)) else {
                continue;
            };
            match criu_sys::notify::open_by_handle(
                mnt.as_fd(),
                fh.r#type as i32,
                &handle[..len],
                libc::O_PATH,
            ) {
                Ok(fd) => {
                    return Ok(WatchTarget {
                        path: PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
                        _fd: Some(fd),
                    })
                }
                Err(e) => last = e,
            }
        }
        Err(format!(
            "no path in the image and the file handle opens on no mount of device {s_dev:#x}: {last}"
        ))
    }
}
