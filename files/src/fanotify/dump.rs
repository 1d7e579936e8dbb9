//! fanotify fds: one files.img entry per fanotify group, with its init flags and marks. An
//! inode mark keeps the watched inode's handle and a path found for it (see `inotify`); a mount
//! mark keeps the mount's id and where it is mounted. Filesystem marks have no place in CRIU's
//! image: such a group fails the dump. Queued events are dropped, as in CRIU.

use criu_procfs::fdinfo::FanotifyTarget;
use criu_proto::images::{
    FanotifyFileEntry, FanotifyInodeMarkEntry, FanotifyMarkEntry, FanotifyMountMarkEntry, FdTypes,
    FdinfoEntry, FileEntry, MarkType,
};

use crate::inotify::dump::{find_inode, read_notify_fd};
use crate::table::{fdinfo, FileTable};

#[derive(Debug, thiserror::Error)]
pub enum FanotifyError {
    #[error("pid {pid}: fd {fd}: fanotify: {what}")]
    Fd { pid: i32, fd: i32, what: String },
    #[error(transparent)]
    Fown(#[from] crate::fown::dump::FownError),
}

/// The fdinfo entry of `pid`'s fanotify `fd`; its group's entry is added on first sight.
pub fn dump_fanotify_fd(
    pid: i32,
    fd: i32,
    table: &std::sync::Mutex<FileTable>,
) -> Result<FdinfoEntry, FanotifyError> {
    let err = |what: String| FanotifyError::Fd { pid, fd, what };
    let n = read_notify_fd(pid, fd).map_err(err)?;
    let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
    let force_irmap = t.opts.force_irmap;
    let root = t.root.clone();
    let id = t.described(pid, fd, n.st, |id| {
        let fa = n.info.fanotify.clone().unwrap_or_default();
        let mounts = root.mounts().map_err(err)?;
        let mut mark = Vec::with_capacity(fa.marks.len());
        for m in &fa.marks {
            let mut entry = FanotifyMarkEntry {
                id,
                mflags: m.mflags,
                mask: m.mask,
                ignored_mask: m.ignored_mask,
                ..Default::default()
            };
            match &m.target {
                FanotifyTarget::Inode { ino, sdev, fhandle } => {
                    let found = (force_irmap, &mounts[..], &root);
                    let f_handle = find_inode(*sdev, *ino, fhandle.as_ref(), found)
                        .map_err(|e| err(format!("inode mark: {e}")))?;
                    entry.r#type = MarkType::Inode as i32;
                    entry.s_dev = *sdev;
                    entry.ie = Some(FanotifyInodeMarkEntry {
                        i_ino: *ino,
                        f_handle,
                    });
                }
                FanotifyTarget::Mount { mnt_id } => {
                    let mnt = mounts
                        .iter()
                        .find(|mi| mi.mnt_id == *mnt_id)
                        .ok_or_else(|| err(format!("mount mark: no mount with id {mnt_id}")))?;
                    entry.r#type = MarkType::Mount as i32;
                    entry.s_dev = (mnt.major << 20) | mnt.minor;
                    entry.me = Some(FanotifyMountMarkEntry {
                        mnt_id: *mnt_id as u32,
                        path: Some(mnt.mount_point.to_string_lossy().into_owned()),
                    });
                }
                FanotifyTarget::Filesystem { sdev } => {
                    return Err(err(format!(
                        "filesystem mark (device {sdev:#x}) is not supported by this dump"
                    )))
                }
            }
            mark.push(entry);
        }
        Ok::<_, FanotifyError>(FileEntry {
            r#type: FdTypes::Fanotify as i32,
            id,
            ffy: Some(FanotifyFileEntry {
                id,
                flags: n.flags,
                fown: crate::fown::dump::read(pid, fd, n.flags)?,
                faflags: fa.flags,
                evflags: fa.event_flags,
                mark,
            }),
            ..Default::default()
        })
    })?;
    Ok(fdinfo(id, fd, u32::from(n.cloexec), FdTypes::Fanotify))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd};

    #[test]
    fn marks_are_dumped() {
        let fd = match criu_sys::notify::fanotify_init(libc::FAN_CLASS_NOTIF, libc::O_RDONLY as u32)
        {
            Ok(fd) => fd,
            Err(nix::errno::Errno::EPERM) => panic!(
                "this test needs root (fanotify_init needs CAP_SYS_ADMIN; run the tests as root, \
                 see README)"
            ),
            Err(e) => panic!(
                "this machine lacks fanotify (CONFIG_FANOTIFY): fanotify_init failed: {e}. To run \
                 the rest, leave the test out: cargo nextest run -E 'not test(marks_are_dumped)'"
            ),
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        criu_sys::notify::fanotify_mark(
            fd.as_fd(),
            libc::FAN_MARK_ADD,
            libc::FAN_MODIFY | libc::FAN_CLOSE_WRITE,
            &file,
        )
        .unwrap();
        criu_sys::notify::fanotify_mark(
            fd.as_fd(),
            libc::FAN_MARK_ADD | libc::FAN_MARK_MOUNT,
            libc::FAN_OPEN,
            dir.path(),
        )
        .unwrap();
        let me = std::process::id() as i32;
        let table = std::sync::Mutex::new(FileTable::new(Default::default()));
        dump_fanotify_fd(me, fd.as_raw_fd(), &table).unwrap();
        let t = table.into_inner().unwrap();
        let ffy = t.entries()[0].ffy.as_ref().unwrap();
        assert_eq!(ffy.faflags & libc::FAN_CLASS_NOTIF, libc::FAN_CLASS_NOTIF);
        assert_eq!(ffy.mark.len(), 2);
        let inode = ffy
            .mark
            .iter()
            .find(|m| m.r#type == MarkType::Inode as i32)
            .unwrap();
        assert_eq!(
            inode.ie.as_ref().unwrap().f_handle.path.as_deref(),
            Some(file.to_str().unwrap())
        );
        assert_eq!(
            u64::from(inode.mask),
            libc::FAN_MODIFY | libc::FAN_CLOSE_WRITE
        );
        let mount = ffy
            .mark
            .iter()
            .find(|m| m.r#type == MarkType::Mount as i32)
            .unwrap();
        assert_eq!(u64::from(mount.mask), libc::FAN_OPEN);
        assert!(mount.me.as_ref().unwrap().path.is_some());
    }
}
