//! Shared memory at restore: each object (anonymous shared memory, a memfd) is made once in
//! criu and filled from its page image; every task that maps it, or holds it as an fd, gets the
//! same object.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use criu_memory::restore::{plan, MapPlan};

use crate::registry::SharedError;
use criu_proto::dump_images::DumpImages;

/// A shared memory object as the dump describes it.
struct ShmemObject {
    /// `None` for anonymous shared memory, else the memfd's name.
    memfd_name: Option<String>,
    size: u64,
    /// 0, or MFD_HUGETLB with the huge page size bits: the object lives on hugetlbfs.
    hugetlb: u32,
}

/// MFD_HUGETLB and the page size bits (MAP_HUGE_SHIFT, as memfd_create takes them) of the
/// mmap flags of a hugetlb mapping; 0 for others.
fn hugetlb_of_mapping(flags: u64) -> u32 {
    const SIZE_BITS: u64 = 0x3f << libc::MAP_HUGE_SHIFT;
    if flags & libc::MAP_HUGETLB as u64 == 0 {
        return 0;
    }
    libc::MFD_HUGETLB | (flags & SIZE_BITS) as u32
}

/// Creates each shared memory object once, in criu, and fills it from its page image; returns
/// them by shmid.
pub fn create_all(images: &DumpImages) -> Result<BTreeMap<u64, OwnedFd>, SharedError> {
    let mut made = BTreeMap::new();
    let mut objects: BTreeMap<u64, ShmemObject> = BTreeMap::new();
    for t in &images.tasks {
        for vma in &t.mm.vmas {
            let Ok(MapPlan::Shared {
                len,
                flags,
                memfd_file,
                shmid,
                offset,
                ..
            }) = plan(vma)
            else {
                continue;
            };
            let (shmid, name, size) = match memfd_file.and_then(|id| images.memfd_inode(id)) {
                Some(inode) if inode.name != "/dev/zero" => {
                    (u64::from(inode.shmid), Some(inode.name.clone()), inode.size)
                }
                Some(inode) => (u64::from(inode.shmid), None, inode.size.max(offset + len)),
                None => (shmid, None, offset + len),
            };
            let obj = objects.entry(shmid).or_insert(ShmemObject {
                memfd_name: name,
                size: 0,
                hugetlb: hugetlb_of_mapping(flags),
            });
            obj.size = obj.size.max(size);
        }
    }
    // memfds that tasks hold as fds are objects too, mapped or not.
    for inode in crate::memfd::restore::inodes_of_fds(images) {
        let anonymous = inode.name == "/dev/zero";
        let obj = objects
            .entry(u64::from(inode.shmid))
            .or_insert(ShmemObject {
                memfd_name: (!anonymous).then(|| inode.name.clone()),
                size: 0,
                hugetlb: inode.hugetlb_flag.unwrap_or(0),
            });
        obj.size = obj.size.max(inode.size);
    }
    for (shmid, obj) in objects {
        let err = |what: &str| {
            let what = what.to_string();
            move |source| SharedError::Shmem {
                shmid,
                what,
                source,
            }
        };
        let file = match &obj.memfd_name {
            Some(name) => {
                criu_sys::shmem::memfd(name.strip_prefix("memfd:").unwrap_or(name), obj.hugetlb)
                    .map_err(err("memfd_create"))?
            }
            None if obj.hugetlb != 0 => {
                criu_sys::shmem::memfd("", obj.hugetlb).map_err(err("hugetlb shared memory"))?
            }
            None => criu_sys::shmem::anonymous_shared(obj.size)
                .map_err(err("anonymous shared memory"))?,
        };
        let file = std::fs::File::from(file);
        file.set_len(obj.size).map_err(err("set size"))?;
        // CRIU writes no page image for an object of size 0 (an empty memfd).
        let pagemap = criu_proto::ImageKind::SHMEM_PAGEMAP.file_name(Some(shmid));
        if obj.size > 0 || images.dir.join(pagemap).exists() {
            let (pages_id, runs) = criu_memory::restore::read_shmem_pagemap(&images.dir, shmid)?;
            criu_memory::restore::fill_file(&file, &images.dir, pages_id, &runs)?;
        }
        if obj.memfd_name.is_some() {
            crate::memfd::restore::finish_inode(&file, images, shmid)?;
        }
        made.insert(shmid, OwnedFd::from(file));
    }
    Ok(made)
}
