//! mq_open fds at restore: each queue is found or made once in the IPC namespace of the
//! calling thread (the tree's, see `criu_ns::Owned::run_in_tree_ns`), then each description
//! is opened on it with its access mode and O_NONBLOCK.
//!
//! A queue the dump kept (it was not in an IPC namespace of the tree, or was unlinked) is made
//! with its messages only if its name is free: a queue of the host still there is the host's,
//! as a regular file is, and is used as it is. A queue of the tree's own namespace was made
//! with the namespace. An unlinked queue is made under a passing name, removed at once.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};

use criu_proto::dump_images::DumpImages;
use criu_proto::images::{FdTypes, PosixMqFileEntry};
use criu_proto::{ImageKind, ImageReader};
use criu_sys::mqueue;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::dump::KEPT_FLAGS;
use crate::registry::{SharedError, SharedFiles};

fn error(e: &PosixMqFileEntry, what: &'static str) -> impl FnOnce(Errno) -> SharedError {
    let (id, name) = (e.id, e.name.clone());
    move |errno| SharedError::File {
        id,
        path: format!("POSIX message queue /{name}"),
        what,
        errno,
    }
}

fn notify(e: &PosixMqFileEntry, what: String) -> SharedError {
    SharedError::Notify {
        id: e.id,
        kind: format!("POSIX message queue /{}", e.name),
        what,
    }
}

/// Queues a restore made in criu's own IPC namespace (a host queue the images carried whose
/// name was free): removed again unless the restore succeeds ([`MadeQueues::keep`]).
#[derive(Debug, Default)]
pub struct MadeQueues {
    names: Vec<String>,
    kept: bool,
}

impl MadeQueues {
    /// The restore succeeded: the queues stay.
    pub fn keep(&mut self) {
        self.kept = true;
    }
}

impl Drop for MadeQueues {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for name in &self.names {
            if let Err(e) = mqueue::unlink(name) {
                tracing::warn!("POSIX message queue /{name} made by the restore stays: {e}");
            }
        }
    }
}

/// Whether the calling thread is in criu's own IPC namespace.
fn in_own_ipc_ns() -> bool {
    let link = |p: &str| std::fs::read_link(p).ok();
    let mine = link("/proc/thread-self/ns/ipc");
    mine.is_some() && mine == link("/proc/self/ns/ipc")
}

pub fn open_all(images: &DumpImages, shared: &mut SharedFiles) -> Result<(), SharedError> {
    let ext = shared.to_make(images, FdTypes::Ext, "ext", |f| f.ext.as_ref())?;
    if ext.is_empty() {
        return Ok(());
    }
    let entries: BTreeMap<u32, PosixMqFileEntry> =
        ImageReader::open_if_exists(&images.dir, &ImageKind::POSIX_MQ_FILES, None)?
            .map(|mut r| r.read_all::<PosixMqFileEntry>())
            .transpose()?
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
    // Queues by queue_id: criu's description of each, to open the others on.
    let mut queues: BTreeMap<u64, OwnedFd> = BTreeMap::new();
    // A queue the image carries first, whichever description carries it.
    let mut order: Vec<&PosixMqFileEntry> = Vec::new();
    for (id, _) in &ext {
        let e = entries.get(id).ok_or(SharedError::Notify {
            id: *id,
            kind: "external file".into(),
            what: "no posix-mq-files.img entry: an external file of a CRIU plugin, \
                   which this restore cannot make"
                .into(),
        })?;
        order.push(e);
    }
    order.sort_by_key(|e| e.queue.is_none());
    for e in order {
        let q = match queues.entry(e.queue_id) {
            std::collections::btree_map::Entry::Occupied(q) => q.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                let (q, made) = queue_of(e, images.root().host_pid())?;
                if made && in_own_ipc_ns() {
                    shared.mq_made.names.push(e.name.clone());
                }
                v.insert(q)
            }
        };
        let flags = OFlag::from_bits_retain((e.flags & KEPT_FLAGS) as i32) | OFlag::O_CLOEXEC;
        let path = format!("/proc/self/fd/{}", q.as_raw_fd());
        let fd = nix::fcntl::open(path.as_str(), flags, Mode::empty())
            .map_err(error(e, "open the description"))?;
        let fown = ext
            .iter()
            .find(|(id, _)| *id == e.id)
            .map(|(_, x)| x.fown)
            .unwrap_or_default();
        shared.restore_fown(e.id, &fd, &fown)?;
        shared.add_description(e.id, fd);
    }
    Ok(())
}

/// criu's description of the queue of `e`, found or made, and whether it was made under its
/// own name.
fn queue_of(e: &PosixMqFileEntry, root: i32) -> Result<(OwnedFd, bool), SharedError> {
    let any = libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC;
    if e.unlinked == Some(true) {
        let Some(q) = &e.queue else {
            return Err(notify(
                e,
                "unlinked, but the image does not carry it".into(),
            ));
        };
        let mut passing = q.clone();
        passing.name = format!("criu-rs-restore-{root}-{}", e.queue_id);
        return criu_ns::mqueue::create(&passing, true)
            .map(|fd| (fd, false))
            .map_err(|err| notify(e, err.to_string()));
    }
    match (mqueue::open(&e.name, any, 0, None), &e.queue) {
        (Ok(fd), _) => Ok((fd, false)),
        (Err(Errno::ENOENT), Some(q)) => {
            if q.name != e.name {
                return Err(notify(e, format!("the image's queue is named /{}", q.name)));
            }
            criu_ns::mqueue::create(q, false)
                .map(|fd| (fd, true))
                .map_err(|err| notify(e, err.to_string()))
        }
        (Err(errno), _) => Err(error(e, "mq_open")(errno)),
    }
}
