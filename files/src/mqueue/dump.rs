//! An mq_open fd at dump: its description (name, access mode, O_NONBLOCK) and, when the queue
//! is not in an IPC namespace the tree owns (whose queues the namespace dump keeps) or was
//! unlinked, the queue itself, once per queue.

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use criu_proto::images::{ExtFileEntry, FdTypes, FdinfoEntry, FileEntry, PosixMqFileEntry};
use criu_proto::{ImageKind, ImageWriter};

use crate::eventfd::dump::{lock, read_anon_fd};
use crate::table::{fdinfo, FileTable, FilesError};

/// The status flags a description keeps.
pub const KEPT_FLAGS: u32 = (libc::O_ACCMODE | libc::O_NONBLOCK) as u32;

/// The queue descriptions of a dump.
#[derive(Debug, Default)]
pub struct Queues {
    pub entries: Vec<PosixMqFileEntry>,
    /// Queues (dev, ino) already read.
    read: HashSet<(u64, u64)>,
    /// The device of the mqueue filesystem of the tree's IPC namespace, once known.
    tree_dev: Option<u64>,
}

/// Whether `pid`'s `fd` is a POSIX message queue: a file of an mqueue filesystem.
pub fn is_mqueue(pid: i32, fd: i32) -> bool {
    const MQUEUE_MAGIC: i64 = 0x1980_0202;
    nix::sys::statfs::statfs(format!("/proc/{pid}/fd/{fd}").as_str())
        .is_ok_and(|s| s.filesystem_type().0 == MQUEUE_MAGIC)
}

pub fn dump_mqueue_fd(
    pid: i32,
    fd: i32,
    path: &Path,
    deleted: bool,
    table: &Mutex<FileTable>,
) -> Result<FdinfoEntry, FilesError> {
    let fail = |what: String| FilesError::Other {
        pid,
        what: format!("fd {fd}: POSIX message queue {}: {what}", path.display()),
    };
    let a = read_anon_fd(pid, fd, "POSIX message queue")?;
    let name = path
        .to_str()
        .and_then(|p| p.strip_prefix('/'))
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| fail("not a queue name".into()))?
        .to_string();
    let mut t = lock(table);
    let own_ns =
        t.tree_ns_ids.ipc_ns_id.is_some() && t.tree_ns_ids.ipc_ns_id != t.own_ns_ids.ipc_ns_id;
    // The tree's tasks share one IPC namespace (see criu_ns::tree): a queue of another one
    // would come back, by name, in the wrong one.
    let tree_dev = match t.mqueues.tree_dev {
        Some(dev) => dev,
        None => {
            let dev = criu_ns::mqueue::fs_dev_of(pid).map_err(|e| fail(e.to_string()))?;
            t.mqueues.tree_dev = Some(dev);
            dev
        }
    };
    if a.st.dev != tree_dev {
        return Err(FilesError::Unsupported {
            pid,
            fd,
            kind: format!(
                "POSIX message queue {} of another IPC namespace than the task's",
                path.display()
            ),
        });
    }
    let key = (a.st.dev, a.st.ino);
    let needs_queue = (deleted || !own_ns) && !t.mqueues.read.contains(&key);
    let queue = if needs_queue {
        let own = reopen(pid, fd).map_err(|e| fail(format!("cannot open it again: {e}")))?;
        let q = criu_ns::mqueue::read(&own, &name).map_err(|e| fail(e.to_string()))?;
        t.mqueues.read.insert(key);
        Some(q)
    } else {
        None
    };
    let fown = crate::fown::dump::read(pid, fd, a.flags)?;
    let flags = a.flags & KEPT_FLAGS;
    let mut made = None;
    let id = t.described(pid, fd, a.st, |id| {
        made = Some(PosixMqFileEntry {
            id,
            flags,
            name: name.clone(),
            queue_id: a.st.ino,
            unlinked: deleted.then_some(true),
            queue: None,
        });
        Ok::<_, FilesError>(FileEntry {
            r#type: FdTypes::Ext as i32,
            id,
            ext: Some(ExtFileEntry { id, fown }),
            ..Default::default()
        })
    })?;
    if let Some(e) = made {
        t.mqueues.entries.push(e);
    }
    // A queue read for a description seen before goes with that description.
    if let Some(q) = queue {
        if let Some(e) = t.mqueues.entries.iter_mut().find(|e| e.id == id) {
            e.queue = Some(q);
        }
    }
    Ok(fdinfo(id, fd, a.fd_flags, FdTypes::Ext))
}

/// criu's own description of the queue `pid`'s `fd` is open on, to read it.
fn reopen(pid: i32, fd: i32) -> std::io::Result<OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(format!("/proc/{pid}/fd/{fd}"))?;
    Ok(f.into())
}

/// Writes posix-mq-files.img when the tree holds any queue.
pub fn write(dir: &Path, queues: &Queues) -> criu_proto::Result<()> {
    if queues.entries.is_empty() {
        return Ok(());
    }
    let mut w = ImageWriter::create(dir, &ImageKind::POSIX_MQ_FILES, None)?;
    for e in &queues.entries {
        w.write(e)?;
    }
    w.finish()?;
    Ok(())
}
