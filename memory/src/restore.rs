//! Restore half of memory: how each dumped VMA is mapped again in the stub, and the pages
//! written back from the page images.

use std::path::Path;

use criu_proto::images::VmaEntry;
use criu_proto::ImageKind;

use crate::vma::*;

#[derive(Debug, thiserror::Error)]
pub enum RestoreMemError {
    #[error(transparent)]
    Image(#[from] criu_proto::Error),
    #[error("{path}: pagemap image has no head entry")]
    NoHead { path: String },
    #[error("{path}: at byte {offset}: page run {vaddr:#x}+{pages} pages ends past the image")]
    ShortPages {
        path: String,
        offset: u64,
        vaddr: u64,
        pages: u64,
    },
    #[error("pid {pid}: cannot write {len} bytes at {addr:#x} through /proc/{pid}/mem: {source}")]
    Write {
        pid: i32,
        addr: u64,
        len: usize,
        source: std::io::Error,
    },
    #[error("pid {pid}: cannot read {len} bytes at {addr:#x} through /proc/{pid}/mem: {source}")]
    Read {
        pid: i32,
        addr: u64,
        len: usize,
        source: std::io::Error,
    },
    #[error("pid {pid}: cannot open /proc/{pid}/mem: {source}")]
    OpenMem { pid: i32, source: std::io::Error },
    #[error("vma {start:#x}-{end:#x}: {what}")]
    Vma { start: u64, end: u64, what: String },
    #[error(transparent)]
    Tracee(#[from] criu_tracee::TraceeError),
    #[error("{dir}: {what}")]
    Chain { dir: String, what: String },
    /// The pid is named by the caller's message.
    #[error("{what}")]
    Task { pid: i32, what: String },
}

/// How one VMA is created in the stub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapPlan {
    /// mmap at a fixed address; `file_id` names the reg-files entry to map, if any.
    Mmap {
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        file_id: Option<u32>,
        offset: u64,
    },
    /// Shared memory whose pages live in `pagemap-shmem-<shmid>.img`: an anonymous shared
    /// mapping (`memfd_file` is `None`) or a memfd mapping (the files.img id of the memfd).
    Shared {
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        memfd_file: Option<u32>,
        shmid: u64,
        offset: u64,
    },
    /// A System V segment, attached again by id (its contents came back with the ipc
    /// namespace). `attach` is false for later pieces of one attachment (split by mprotect):
    /// the first piece's shmat mapped them; they only take their protection.
    SysvShm {
        addr: u64,
        len: u64,
        prot: u64,
        shmid: u64,
        attach: bool,
    },
    /// A packet socket's ring (CRIU's `VMA_AREA_SOCKET`): mapped again from the restored
    /// socket `file_id` (files.img id), whose rings are set when criu makes it. The ring's
    /// contents are the kernel's and are not restored (CRIU neither).
    Socket {
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        file_id: u32,
        offset: u64,
    },
    /// Part of the vDSO set, recreated as a whole by `arch_prctl(ARCH_MAP_VDSO_64)`.
    Vdso,
    /// `[vsyscall]`: fixed by the kernel, nothing to do.
    Skip,
}

/// Decides how to map `vma`.
pub fn plan(vma: &VmaEntry) -> Result<MapPlan, RestoreMemError> {
    let bad = |what: &str| RestoreMemError::Vma {
        start: vma.start,
        end: vma.end,
        what: what.into(),
    };
    let s = vma.status;
    // Guard ranges are no areas of their own: `rebuild::map_vmas` installs them last.
    if s & (VMA_AREA_VSYSCALL | VMA_AREA_GUARD) != 0 {
        return Ok(MapPlan::Skip);
    }
    if s & (VMA_AREA_VDSO | VMA_AREA_VVAR) != 0 {
        return Ok(MapPlan::Vdso);
    }
    if vma.end <= vma.start
        || !vma.start.is_multiple_of(PAGE_SIZE)
        || !vma.end.is_multiple_of(PAGE_SIZE)
    {
        return Err(bad("bad bounds"));
    }
    if s & VMA_AREA_SYSVIPC != 0 {
        return Ok(MapPlan::SysvShm {
            addr: vma.start,
            len: vma.end - vma.start,
            prot: u64::from(vma.prot),
            shmid: vma.shmid,
            attach: vma.pgoff == 0,
        });
    }
    if s & VMA_UNSUPP != 0 {
        return Err(bad("this kind of mapping is not restored yet"));
    }
    if s & VMA_AREA_SOCKET != 0 {
        let file_id = u32::try_from(vma.shmid).map_err(|_| bad("socket file id out of range"))?;
        return Ok(MapPlan::Socket {
            addr: vma.start,
            len: vma.end - vma.start,
            prot: u64::from(vma.prot),
            flags: (u64::from(vma.flags) & !(libc::MAP_ANONYMOUS as u64)) | libc::MAP_FIXED as u64,
            file_id,
            offset: vma.pgoff,
        });
    }
    let shared_flags =
        (u64::from(vma.flags) & !(libc::MAP_ANONYMOUS as u64)) | libc::MAP_FIXED as u64;
    if s & VMA_AREA_MEMFD != 0 {
        let file = u32::try_from(vma.shmid).map_err(|_| bad("memfd file id out of range"))?;
        return Ok(MapPlan::Shared {
            addr: vma.start,
            len: vma.end - vma.start,
            prot: u64::from(vma.prot),
            flags: shared_flags,
            memfd_file: Some(file),
            shmid: 0,
            offset: vma.pgoff,
        });
    }
    if s & VMA_ANON_SHARED != 0 {
        return Ok(MapPlan::Shared {
            addr: vma.start,
            len: vma.end - vma.start,
            prot: u64::from(vma.prot),
            flags: shared_flags | libc::MAP_ANONYMOUS as u64,
            memfd_file: None,
            shmid: vma.shmid,
            offset: vma.pgoff,
        });
    }
    let mut flags = u64::from(vma.flags) | libc::MAP_FIXED as u64;
    // An AIO ring's pages come back in anonymous memory, replaced by a new ring later.
    if s & VMA_AREA_AIORING != 0 {
        flags = (flags & !(libc::MAP_SHARED as u64)) | libc::MAP_PRIVATE as u64;
    }
    // Grows-down areas too are mapped exactly where they were: the image holds no guard page.
    let start = vma.start;
    let file_id = if s & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0 {
        flags &= !(libc::MAP_ANONYMOUS as u64);
        Some(u32::try_from(vma.shmid).map_err(|_| bad("file id out of range"))?)
    } else {
        flags |= libc::MAP_ANONYMOUS as u64;
        None
    };
    Ok(MapPlan::Mmap {
        addr: start,
        len: vma.end - start,
        prot: u64::from(vma.prot),
        flags,
        file_id,
        offset: if file_id.is_some() { vma.pgoff } else { 0 },
    })
}

/// The madvise(2) advice values to apply for `vma.madv` (a bit per advice number).
pub fn advice(vma: &VmaEntry) -> Vec<i32> {
    let madv = vma.madv.unwrap_or(0);
    (0..64i32)
        .filter(|b| madv & (1u64 << b) != 0)
        .map(|b: i32| b)
        .collect()
}

/// One run of dumped pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRun {
    pub vaddr: u64,
    pub pages: u64,
    /// Offset of the run's first byte in the pages image.
    pub offset: u64,
}

/// Reads `pagemap-shmem-<shmid>.img`: the pages image id and the runs stored in it, in image
/// order; run addresses are offsets in the shared object. Shared memory is dumped whole: an
/// entry in a parent dump is refused (tasks' pages are read along the chain, chain.rs).
pub fn read_shmem_pagemap(dir: &Path, shmid: u64) -> Result<(u32, Vec<PageRun>), RestoreMemError> {
    let (pages_id, entries) = crate::chain::read_entries(dir, &ImageKind::SHMEM_PAGEMAP, shmid)?;
    let mut runs = Vec::with_capacity(entries.len());
    for e in entries {
        let Some(offset) = e.offset else {
            return Err(RestoreMemError::Chain {
                dir: dir.display().to_string(),
                what: format!(
                    "{}: pages at {:#x} are in a parent dump, which is not read for shared memory",
                    ImageKind::SHMEM_PAGEMAP.file_name(Some(shmid)),
                    e.vaddr
                ),
            });
        };
        runs.push(PageRun {
            vaddr: e.vaddr,
            pages: e.pages,
            offset,
        });
    }
    Ok((pages_id, runs))
}

/// Anonymous areas watched by a userfaultfd of the task: runs inside them are put in place
/// with UFFDIO_COPY (no zeroing, no fault per page).
pub use crate::fill::{fill, fill_file, read_pages_image, UffdAreas};

#[cfg(test)]
mod tests {
    use super::*;

    fn vma(start: u64, end: u64, prot: i32, flags: i32, status: u32) -> VmaEntry {
        VmaEntry {
            start,
            end,
            pgoff: 0x2000,
            shmid: 7,
            prot: prot as u32,
            flags: flags as u32,
            status,
            fd: -1,
            ..Default::default()
        }
    }

    #[test]
    fn anonymous_private_mapping() {
        let v = vma(
            0x1000,
            0x3000,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            VMA_AREA_REGULAR | VMA_ANON_PRIVATE,
        );
        assert_eq!(
            plan(&v).unwrap(),
            MapPlan::Mmap {
                addr: 0x1000,
                len: 0x2000,
                prot: 3,
                flags: (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED) as u64,
                file_id: None,
                offset: 0
            }
        );
    }

    #[test]
    fn file_mapping_keeps_offset_and_file() {
        let v = vma(
            0x1000,
            0x2000,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            VMA_AREA_REGULAR | VMA_FILE_PRIVATE,
        );
        match plan(&v).unwrap() {
            MapPlan::Mmap {
                file_id,
                offset,
                flags,
                ..
            } => {
                assert_eq!(file_id, Some(7));
                assert_eq!(offset, 0x2000);
                assert_eq!(flags & libc::MAP_ANONYMOUS as u64, 0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn vdso_and_vsyscall_and_bad_areas() {
        assert_eq!(
            plan(&vma(0x1000, 0x2000, 5, 2, VMA_AREA_REGULAR | VMA_AREA_VDSO)).unwrap(),
            MapPlan::Vdso
        );
        assert_eq!(
            plan(&vma(0x1000, 0x2000, 1, 2, VMA_AREA_REGULAR | VMA_AREA_VVAR)).unwrap(),
            MapPlan::Vdso
        );
        assert_eq!(
            plan(&vma(0x1000, 0x2000, 5, 2, VMA_AREA_VSYSCALL)).unwrap(),
            MapPlan::Skip
        );
        assert!(plan(&vma(0x2000, 0x1000, 3, 0x22, VMA_AREA_REGULAR)).is_err());
        assert!(plan(&vma(0x1001, 0x2000, 3, 0x22, VMA_AREA_REGULAR)).is_err());
        assert!(plan(&vma(0x1000, 0x2000, 3, 0x22, VMA_AREA_REGULAR | VMA_UNSUPP)).is_err());
    }

    #[test]
    fn a_packet_ring_is_mapped_from_its_socket() {
        let mut v = vma(
            0x7f00_0000_0000,
            0x7f00_0000_2000,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            VMA_AREA_REGULAR | VMA_AREA_SOCKET,
        );
        v.pgoff = 0;
        assert_eq!(
            plan(&v).unwrap(),
            MapPlan::Socket {
                addr: 0x7f00_0000_0000,
                len: 0x2000,
                prot: 3,
                flags: (libc::MAP_SHARED | libc::MAP_FIXED) as u64,
                file_id: 7,
                offset: 0,
            }
        );
        v.shmid = u64::MAX;
        assert!(plan(&v).is_err(), "a file id past u32");
    }

    #[test]
    fn a_system_v_segment_is_attached_by_its_first_piece_only() {
        let mut v = vma(
            0x1000,
            0x3000,
            1,
            libc::MAP_SHARED,
            VMA_AREA_REGULAR | VMA_AREA_SYSVIPC,
        );
        v.shmid = 65538;
        v.pgoff = 0;
        let want = |attach| MapPlan::SysvShm {
            addr: 0x1000,
            len: 0x2000,
            prot: 1,
            shmid: 65538,
            attach,
        };
        assert_eq!(plan(&v).unwrap(), want(true));
        v.pgoff = 0x1000;
        assert_eq!(plan(&v).unwrap(), want(false));
    }

    #[test]
    fn shared_mappings() {
        let mut v = vma(
            0x1000,
            0x3000,
            3,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            VMA_AREA_REGULAR | VMA_ANON_SHARED,
        );
        v.shmid = 2037;
        match plan(&v).unwrap() {
            MapPlan::Shared {
                memfd_file: None,
                shmid: 2037,
                flags,
                ..
            } => {
                assert_ne!(flags & libc::MAP_ANONYMOUS as u64, 0);
                assert_ne!(flags & libc::MAP_SHARED as u64, 0);
            }
            other => panic!("{other:?}"),
        }
        let v = vma(
            0x1000,
            0x3000,
            3,
            libc::MAP_SHARED,
            VMA_AREA_REGULAR | VMA_FILE_SHARED | VMA_AREA_MEMFD,
        );
        assert!(matches!(
            plan(&v).unwrap(),
            MapPlan::Shared {
                memfd_file: Some(7),
                ..
            }
        ));
    }

    #[test]
    fn grows_down_areas_are_mapped_at_their_imaged_start() {
        let v = vma(
            0x10000,
            0x20000,
            3,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_GROWSDOWN,
            VMA_AREA_REGULAR | VMA_ANON_PRIVATE,
        );
        match plan(&v).unwrap() {
            MapPlan::Mmap {
                addr, len, flags, ..
            } => {
                assert_eq!((addr, len), (0x10000, 0x10000));
                assert_ne!(flags & libc::MAP_GROWSDOWN as u64, 0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn madvise_bits() {
        let mut v = vma(0x1000, 0x2000, 3, 0x22, VMA_AREA_REGULAR);
        v.madv = Some((1 << libc::MADV_DONTFORK) | (1 << libc::MADV_HUGEPAGE));
        assert_eq!(advice(&v), vec![libc::MADV_DONTFORK, libc::MADV_HUGEPAGE]);
    }
}
