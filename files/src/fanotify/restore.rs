//! fanotify at restore: criu creates each group with its init flags and adds its marks back:
//! inode marks on the path found at dump (or the inode opened from its handle, see `inotify`),
//! mount marks on where the mount was; the mask and the ignored mask each by their own
//! fanotify_mark, as CRIU does.

use std::os::fd::AsFd;
use std::path::Path;

use criu_proto::images::{FanotifyMarkEntry, FdTypes, MarkType};

use crate::inotify::restore::WatchTarget;
use crate::registry::{SharedError, SharedFiles};
use criu_proto::dump_images::DumpImages;

pub fn open_all(images: &DumpImages, shared: &mut SharedFiles) -> Result<(), SharedError> {
    for (id, e) in shared.to_make(images, FdTypes::Fanotify, "ffy", |f| f.ffy.as_ref())? {
        let err = |what: String| SharedError::Notify {
            id,
            kind: "fanotify".into(),
            what,
        };
        // FAN_NONBLOCK is O_NONBLOCK; the fd's status flags carry it.
        let mut flags = e.faflags & !libc::FAN_NONBLOCK;
        if e.flags as i32 & libc::O_NONBLOCK != 0 {
            flags |= libc::FAN_NONBLOCK;
        }
        let fd = criu_sys::notify::fanotify_init(flags, e.evflags)
            .map_err(|e| err(format!("fanotify_init({flags:#x}): {e}")))?;
        for m in &e.mark {
            add_mark(&fd, m, &shared.root).map_err(|e| err(format!("mark {:#x}: {e}", m.mask)))?;
        }
        crate::eventfd::restore::set_status_flags(fd.as_fd(), e.flags)
            .map_err(|e| err(format!("F_SETFL: {e}")))?;
        shared.restore_fown(id, &fd, &e.fown)?;
        shared.add_description(id, fd);
    }
    Ok(())
}

fn add_mark(
    fd: &std::os::fd::OwnedFd,
    m: &FanotifyMarkEntry,
    root: &crate::root::FsRoot,
) -> Result<(), String> {
    let mut flags = libc::FAN_MARK_ADD | m.mflags;
    let target = if m.r#type == MarkType::Mount as i32 {
        flags |= libc::FAN_MARK_MOUNT;
        let path =
            m.me.as_ref()
                .and_then(|me| me.path.clone())
                .ok_or("mount mark without a path")?;
        WatchTarget::at(root, Path::new(&path))
    } else if m.r#type == MarkType::Inode as i32 {
        let ie = m.ie.as_ref().ok_or("inode mark without its inode")?;
        WatchTarget::find(root, &ie.f_handle, m.s_dev)?
    } else {
        return Err(format!("unknown mark type {}", m.r#type));
    };
    let mark = |flags: u32, mask: u32| {
        criu_sys::notify::fanotify_mark(fd.as_fd(), flags, u64::from(mask), &target.path)
            .map_err(|e| format!("fanotify_mark {}: {e}", target.path.display()))
    };
    if m.mask != 0 {
        mark(flags, m.mask)?;
    }
    if m.ignored_mask != 0 {
        mark(flags | libc::FAN_MARK_IGNORED_MASK, m.ignored_mask)?;
    }
    Ok(())
}
