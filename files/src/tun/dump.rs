//! tun files at dump: what each is attached to, read through criu's copy of it (pidfd_getfd).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::Mutex;

use criu_proto::images::{FdTypes, FdinfoEntry, FileEntry, TunfileEntry};

use crate::table::{fdinfo, FileStat, FileTable, FilesError, OpenState};

/// The misc device number of `/dev/net/tun` (10:200).
const TUN_MAJOR: u32 = 10;
const TUN_MINOR: u32 = 200;

/// Whether `meta` is `/dev/net/tun`'s.
pub fn is_tun(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device()
        && libc::major(meta.rdev()) == TUN_MAJOR
        && libc::minor(meta.rdev()) == TUN_MINOR
}

/// The tun files of one dump.
#[derive(Debug, Default)]
pub struct TunFiles {
    /// files.img ids whose tun entry is written.
    dumped: BTreeSet<u32>,
    /// Devices the files are attached to (by namespace id and name), with their virtio
    /// header size and send buffer, for the device's dump (a device a file holds cannot be
    /// attached to again).
    pub held: BTreeMap<(u32, String), (i32, i32)>,
}

/// `pid`'s `fd`, a tun file at `path`; `open`: its status flags, position and mount.
pub fn dump_tun_fd(
    pid: i32,
    fd: i32,
    path: &Path,
    meta: &std::fs::Metadata,
    open: OpenState,
    fd_flags: u32,
    table: &Mutex<FileTable>,
) -> Result<FdinfoEntry, FilesError> {
    let lock = || table.lock().unwrap_or_else(|e| e.into_inner());
    let refuse = |why: String| FilesError::Unsupported {
        pid,
        fd,
        kind: format!("tun file {} ({why})", path.display()),
    };
    let copy = criu_sys::pidfd::take_fd(pid, fd).map_err(|e| FilesError::Other {
        pid,
        what: format!("fd {fd}: tun file: cannot take a copy with pidfd_getfd: {e}"),
    })?;
    // As CRIU: tun devices come back only in network namespaces of the tree's own.
    if !lock().inet.tree_has_netns() {
        return Err(refuse(
            "the tree has no network namespace of its own to make its device again".into(),
        ));
    }
    let ns_id = crate::socket::netns_id(pid, fd, "tun file", copy.as_fd(), table)?;
    let attached =
        criu_sys::tun::attached_to(copy.as_fd()).map_err(|e| refuse(format!("TUNGETIFF: {e}")))?;
    if let Some((name, flags)) = &attached {
        if flags & libc::IFF_TAP as u32 != 0 {
            let len = criu_sys::tun::filter_len(copy.as_fd())
                .map_err(|e| refuse(format!("TUNGETFILTER: {e}")))?;
            if len != 0 {
                // The filter's program is in the task's memory: CRIU refuses it too.
                return Err(refuse(format!(
                    "tap {name} has a socket filter of {len} instructions"
                )));
            }
        }
        let settings = criu_sys::tun::queue_settings(copy.as_fd())
            .map_err(|e| refuse(format!("TUNGETVNETHDRSZ/TUNGETSNDBUF: {e}")))?;
        // A detached queue keeps the send buffer it had when it left: an attached one
        // tells the device's.
        let mut t = lock();
        let key = (ns_id, name.clone());
        if flags & libc::IFF_DETACH_QUEUE as u32 == 0 {
            t.tun.held.insert(key, settings);
        } else {
            t.tun.held.entry(key).or_insert(settings);
        }
    }
    let fown = crate::fown::dump::read(pid, fd, open.flags)?;
    let mut t = lock();
    let id = t.regular(pid, fd, path, open, FileStat::of(meta));
    if t.tun.dumped.insert(id) {
        if let Some(e) = t.entry_mut(id) {
            crate::fown::dump::set_in(e, fown);
        }
        let detached = attached
            .as_ref()
            .map(|(_, flags)| flags & libc::IFF_DETACH_QUEUE as u32 != 0);
        t.push(FileEntry {
            r#type: FdTypes::Tunf as i32,
            id,
            tunf: Some(TunfileEntry {
                id,
                netdev: attached.map(|(name, _)| name),
                detached: detached.filter(|&d| d),
                ns_id: Some(ns_id),
            }),
            ..Default::default()
        });
    }
    Ok(fdinfo(id, fd, fd_flags, FdTypes::Tunf))
}
