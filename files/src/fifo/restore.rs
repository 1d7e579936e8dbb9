//! FIFOs at restore: each description a task's fds name is opened once, in criu, through the
//! path of its regular-file entry. A fifo opened read-only or write-only waits for the other
//! end, so criu first opens it read-write (which never waits) and opens the wanted mode
//! through that fd; the bytes go back once per fifo, through the read-write fd.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};

use criu_proto::images::{FdTypes, PipeDataEntry, RegFileEntry};
use criu_proto::{ImageKind, ImageReader};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::registry::{SharedError, SharedFiles};
use criu_proto::dump_images::DumpImages;

/// Flags that only mean something when a file is first created; never replayed.
const CREATION_FLAGS: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY;

/// What fifo-data.img holds for one fifo.
struct FifoBytes {
    size: Option<u32>,
    bytes: Vec<u8>,
}

pub fn open_all(images: &DumpImages, shared: &mut SharedFiles) -> Result<(), SharedError> {
    let ids: Vec<u32> = images
        .fd_ids_of_type(FdTypes::Fifo)
        .into_iter()
        .filter(|&id| !shared.is_inherited(id))
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let mut data = read_fifo_data(images)?;
    let mut refilled = BTreeSet::new();
    for id in ids {
        let fifo = images
            .files
            .get(&id)
            .and_then(|f| f.fifo.as_ref())
            .ok_or(SharedError::Missing { id, kind: "fifo" })?;
        let reg_id = fifo.regf_id.unwrap_or(fifo.id);
        let reg = images
            .files
            .get(&reg_id)
            .and_then(|f| f.reg.as_ref())
            .ok_or(SharedError::Missing {
                id: reg_id,
                kind: "reg (of a fifo)",
            })?;
        let bytes = if refilled.insert(fifo.pipe_id) {
            data.remove(&fifo.pipe_id)
        } else {
            None
        };
        let fd = open(&shared.root, id, reg, bytes)?;
        shared.restore_fown(id, &fd, &reg.fown)?;
        shared.add_description(id, fd);
    }
    Ok(())
}

/// Opens the fifo of `reg` (its name seen from `root`) with its flags, refilling it with
/// `bytes` first if given.
fn open(
    root: &crate::root::FsRoot,
    id: u32,
    reg: &RegFileEntry,
    bytes: Option<FifoBytes>,
) -> Result<OwnedFd, SharedError> {
    let err = |what: &'static str| {
        let path = reg.name.clone();
        move |errno: nix::errno::Errno| SharedError::File {
            id,
            path,
            what,
            errno,
        }
    };
    let both = nix::fcntl::open(
        &root.resolve(&reg.name),
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err("open read-write"))?;
    // O_ASYNC given to open() is recorded but does not arm signals: F_SETFL does.
    let flags = reg.flags as i32 & !CREATION_FLAGS & !libc::O_ASYNC;
    let again = format!("/proc/self/fd/{}", both.as_raw_fd());
    let fd = nix::fcntl::open(
        again.as_str(),
        OFlag::from_bits_retain(flags | libc::O_CLOEXEC),
        Mode::empty(),
    )
    .map_err(err("open"))?;
    if reg.flags as i32 & libc::O_ASYNC != 0 {
        let fl = OFlag::from_bits_retain(flags | libc::O_ASYNC);
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(fl)).map_err(err("F_SETFL"))?;
    }
    if let Some(data) = bytes {
        if let Some(size) = data.size {
            nix::fcntl::fcntl(&both, nix::fcntl::FcntlArg::F_SETPIPE_SZ(size as i32))
                .map_err(err("F_SETPIPE_SZ"))?;
        }
        std::fs::File::from(both)
            .write_all(&data.bytes)
            .map_err(|e| {
                err("refill")(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))
            })?;
    }
    Ok(fd)
}

/// fifo-data.img by pipe id (absent image: no bytes).
fn read_fifo_data(images: &DumpImages) -> Result<BTreeMap<u32, FifoBytes>, SharedError> {
    let mut out = BTreeMap::new();
    let Some(mut img) = ImageReader::open_if_exists(&images.dir, &ImageKind::FIFO_DATA, None)?
    else {
        return Ok(out);
    };
    while let Some(entry) = img.read::<PipeDataEntry>()? {
        let bytes = img.read_payload(u64::from(entry.bytes))?;
        out.insert(
            entry.pipe_id,
            FifoBytes {
                size: entry.size,
                bytes,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_read_only_end_opens_without_waiting_and_gets_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600)).unwrap();
        let reg = |flags: i32| RegFileEntry {
            id: 2,
            flags: flags as u32,
            name: path.to_str().unwrap().to_string(),
            ..Default::default()
        };
        let root = crate::root::FsRoot::default();
        let w = open(&root, 1, &reg(libc::O_WRONLY), None).unwrap();
        let r = open(
            &root,
            1,
            &reg(libc::O_RDONLY | libc::O_NONBLOCK),
            Some(FifoBytes {
                size: Some(1 << 16),
                bytes: b"kept".to_vec(),
            }),
        )
        .unwrap();
        let fl = nix::fcntl::fcntl(&r, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert_eq!(fl & libc::O_ACCMODE, libc::O_RDONLY);
        assert_ne!(fl & libc::O_NONBLOCK, 0);
        let mut got = [0u8; 16];
        let n = std::fs::File::from(r).read(&mut got).unwrap();
        assert_eq!(&got[..n], b"kept");
        drop(w);
    }
}
