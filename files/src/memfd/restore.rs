//! memfd at restore. Each memfd inode is one shared memory object made by `SharedFiles`
//! (named, filled from its pagemap-shmem image), whether tasks map it, hold it as an fd, or
//! both; here it gets its owner, mode and seals, and every memfd description a task's fd
//! names is opened on it.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};

use criu_proto::images::{FdTypes, MemfdInodeEntry};
use nix::fcntl::{FcntlArg, OFlag, SealFlag};

use crate::eventfd::restore::failed;
use crate::registry::{SharedError, SharedFiles};
use criu_proto::dump_images::DumpImages;

/// F_SEAL_FUTURE_WRITE refuses new writable shared mappings, which the tasks' own mappings
/// are: it waits until they are back (`add_late_seals`), and F_SEAL_SEAL with it.
const F_SEAL_FUTURE_WRITE: u32 = 0x10;
const F_SEAL_SEAL: u32 = 0x1;

/// The seals of `inode` split into (now, once the tasks' memory is back).
fn seals(inode: &MemfdInodeEntry) -> (u32, u32) {
    if inode.seals & F_SEAL_FUTURE_WRITE == 0 {
        return (inode.seals, 0);
    }
    let late = inode.seals & (F_SEAL_FUTURE_WRITE | F_SEAL_SEAL);
    (inode.seals & !late, late)
}

fn add_seals(file: impl AsFd, seals: u32) -> nix::Result<()> {
    if seals == 0 {
        return Ok(());
    }
    let flags = SealFlag::from_bits_retain(seals as i32);
    nix::fcntl::fcntl(file.as_fd(), FcntlArg::F_ADD_SEALS(flags)).map(drop)
}

/// The seals that had to wait for the tasks' mappings; call once every task's memory is back.
pub fn add_late_seals(images: &DumpImages, shared: &SharedFiles) -> Result<(), SharedError> {
    for inode in images.memfd_inodes.values() {
        let shmid = u64::from(inode.shmid);
        let (_, late) = seals(inode);
        let Some(object) = shared.shmem_object(shmid).filter(|_| late != 0) else {
            continue;
        };
        add_seals(object, late).map_err(|errno| SharedError::Shmem {
            shmid,
            what: format!("memfd {}: F_ADD_SEALS", inode.name),
            source: errno.into(),
        })?;
    }
    Ok(())
}

/// The memfd inodes some task's fd names, each once.
pub fn inodes_of_fds(images: &DumpImages) -> Vec<&MemfdInodeEntry> {
    let mut out: Vec<&MemfdInodeEntry> = images
        .fd_ids_of_type(FdTypes::Memfd)
        .into_iter()
        .filter_map(|id| images.memfd_inode(id))
        .collect();
    out.sort_by_key(|i| i.inode_id);
    out.dedup_by_key(|i| i.inode_id);
    out
}

/// Owner, mode and seals of the memfd object `shmid`, once its contents are back.
pub fn finish_inode(file: &File, images: &DumpImages, shmid: u64) -> Result<(), SharedError> {
    let Some(inode) = images
        .memfd_inodes
        .values()
        .find(|i| u64::from(i.shmid) == shmid)
    else {
        return Ok(());
    };
    let err = |what: &'static str| {
        move |errno: nix::errno::Errno| SharedError::Shmem {
            shmid,
            what: format!("memfd {}: {what}", inode.name),
            source: errno.into(),
        }
    };
    nix::unistd::fchown(
        file,
        Some(nix::unistd::Uid::from_raw(inode.uid)),
        Some(nix::unistd::Gid::from_raw(inode.gid)),
    )
    .map_err(err("fchown"))?;
    if let Some(mode) = inode.mode {
        nix::sys::stat::fchmod(
            file,
            nix::sys::stat::Mode::from_bits_truncate(mode & 0o7777),
        )
        .map_err(err("fchmod"))?;
    }
    add_seals(file, seals(inode).0).map_err(err("F_ADD_SEALS"))
}

/// Every memfd description a task's fd names, on its inode's object: the first read-write
/// one is the object's own description (the one memfd_create made, which execveat accepts),
/// the others are opened again through /proc/self/fd.
pub fn open_all(images: &DumpImages, shared: &mut SharedFiles) -> Result<(), SharedError> {
    let mut original_given = std::collections::BTreeSet::new();
    for (id, e) in shared.to_make(images, FdTypes::Memfd, "memfd", |f| f.memfd.as_ref())? {
        let inode = images.memfd_inode(id).ok_or(SharedError::Missing {
            id,
            kind: "memfd inode",
        })?;
        let err = failed(id, "memfd");
        let object = shared
            .shmem_object(u64::from(inode.shmid))
            .ok_or(SharedError::Missing {
                id,
                kind: "memfd object",
            })?;
        let rdwr = e.flags & libc::O_ACCMODE as u32 == libc::O_RDWR as u32;
        let fd: OwnedFd = if rdwr && original_given.insert(inode.inode_id) {
            let fd = object.try_clone_to_owned().map_err(|e| {
                err("dup")(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))
            })?;
            crate::eventfd::restore::set_status_flags(fd.as_fd(), e.flags)
                .map_err(err("F_SETFL"))?;
            fd
        } else {
            let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&object));
            let creation = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY;
            let flags = OFlag::from_bits_retain((e.flags as i32 & !creation) | libc::O_CLOEXEC);
            nix::fcntl::open(path.as_str(), flags, nix::sys::stat::Mode::empty())
                .map_err(err("open"))?
        };
        nix::unistd::lseek(&fd, e.pos as i64, nix::unistd::Whence::SeekSet)
            .map_err(err("lseek"))?;
        shared.restore_fown(id, &fd, &e.fown)?;
        shared.add_description(id, fd);
    }
    Ok(())
}
