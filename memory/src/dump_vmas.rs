//! The VMA list of a stopped task as CRIU records it in `mm-N.img`: protection, mmap flags
//! from the smaps VmFlags, madvise bits, CRIU's status bits, the file behind file mappings,
//! and the vvar areas merged into one.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use criu_procfs::{SmapsEntry, VmFlags, VmaName};
use criu_proto::images::VmaEntry;

use crate::vma::*;

#[derive(Debug, thiserror::Error)]
pub enum VmaDumpError {
    #[error("pid {pid}: cannot read smaps: {source}")]
    Smaps {
        pid: i32,
        source: criu_procfs::ProcError,
    },
    #[error("pid {pid}: cannot stat {path}: {source}")]
    MapFile {
        pid: i32,
        path: String,
        source: std::io::Error,
    },
    #[error("pid {pid}: mapping {start:#x}-{end:#x} ({what}) is not supported by this dump")]
    Unsupported {
        pid: i32,
        start: u64,
        end: u64,
        what: String,
    },
}

/// The file behind a file mapping, as `stat` and the map_files link show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedFile {
    pub path: PathBuf,
    /// /proc showed the name with " (deleted)": the file was unlinked since it was mapped.
    pub deleted: bool,
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub size: u64,
}

/// One VMA to dump; `file` is set for file mappings, whose `entry.shmid` must be set to the
/// file's id once the dump has one for it; `shmem` is set for shared anonymous memory, whose
/// pages are dumped once per object (`entry.shmid` is its inode); `socket` is set for a
/// mapping of a socket (a packet socket's ring): the inode of the socket, whose files.img id
/// `entry.shmid` must be set to once the task's fds are dumped (CRIU's `VMA_AREA_SOCKET`; no
/// pages are dumped, the kernel owns them).
#[derive(Debug, Clone)]
pub struct DumpVma {
    pub entry: VmaEntry,
    pub file: Option<MappedFile>,
    pub shmem: Option<SharedObject>,
    pub socket: Option<u64>,
}

/// A shared anonymous memory object: its inode and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedObject {
    pub ino: u64,
    pub size: u64,
}

impl DumpVma {
    /// Private memory whose pages go to the pages image (CRIU's `vma_area_is_private`, minus
    /// vvar, whose content the kernel provides).
    pub fn is_private(&self) -> bool {
        let s = self.entry.status;
        s & VMA_AREA_REGULAR != 0
            && s & (VMA_ANON_PRIVATE | VMA_FILE_PRIVATE | VMA_AREA_AIORING) != 0
            && s & VMA_AREA_VVAR == 0
            && self.entry.end <= TASK_SIZE
    }
}

/// Top of user space with 4-level paging.
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;

const MAP_SHARED: u32 = 0x01;
const MAP_PRIVATE: u32 = 0x02;
const MAP_DROPPABLE: u32 = 0x08;
const MAP_ANONYMOUS: u32 = 0x20;
const MAP_GROWSDOWN: u32 = 0x100;
const MAP_LOCKED: u32 = 0x2000;
const MAP_NORESERVE: u32 = 0x4000;
const MAP_HUGETLB: u32 = 0x40000;

/// mmap flags and madvise bits from VmFlags, as CRIU derives them.
fn flags_and_madv(f: VmFlags) -> (u32, u64) {
    let mut flags = 0;
    for (bit, flag) in [
        (VmFlags::GROWSDOWN, MAP_GROWSDOWN),
        (VmFlags::LOCKED, MAP_LOCKED),
        (VmFlags::NORESERVE, MAP_NORESERVE),
        (VmFlags::HUGETLB, MAP_HUGETLB),
        (VmFlags::DROPPABLE, MAP_DROPPABLE),
    ] {
        if f.contains(bit) {
            flags |= flag;
        }
    }
    let mut madv = 0u64;
    for (bit, advice) in [
        (VmFlags::SEQ_READ, libc::MADV_SEQUENTIAL),
        (VmFlags::RAND_READ, libc::MADV_RANDOM),
        (VmFlags::DONTCOPY, libc::MADV_DONTFORK),
        (VmFlags::DONTDUMP, libc::MADV_DONTDUMP),
        (VmFlags::MERGEABLE, libc::MADV_MERGEABLE),
        (VmFlags::HUGEPAGE, libc::MADV_HUGEPAGE),
        (VmFlags::NOHUGEPAGE, libc::MADV_NOHUGEPAGE),
        (VmFlags::WIPEONFORK, libc::MADV_WIPEONFORK),
    ] {
        if f.contains(bit) {
            madv |= 1u64 << advice;
        }
    }
    (flags, madv)
}

/// Reads and classifies the VMAs of a stopped task.
pub fn collect_vmas(pid: i32) -> Result<Vec<DumpVma>, VmaDumpError> {
    let smaps =
        criu_procfs::read_smaps(pid).map_err(|source| VmaDumpError::Smaps { pid, source })?;
    classify(pid, &smaps, &|start, end| map_file(pid, start, end))
}

/// What the map_files link of an area says: absent (anonymous), or the link's mode and the
/// file's stat.
pub struct MapFileInfo {
    pub link_mode: u32,
    pub target: PathBuf,
    pub meta: Option<std::fs::Metadata>,
}

fn map_file(pid: i32, start: u64, end: u64) -> Result<Option<MapFileInfo>, VmaDumpError> {
    let link = criu_procfs::maps::map_file_path(pid, start, end);
    let shown = link.display().to_string();
    let lmeta = match std::fs::symlink_metadata(&link) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(VmaDumpError::MapFile {
                pid,
                path: shown,
                source,
            })
        }
    };
    let target = std::fs::read_link(&link).map_err(|source| VmaDumpError::MapFile {
        pid,
        path: shown.clone(),
        source,
    })?;
    // Sockets and AIO rings cannot be opened; their stat is still of interest.
    let meta = std::fs::metadata(&link).ok();
    Ok(Some(MapFileInfo {
        link_mode: lmeta.mode(),
        target,
        meta,
    }))
}

fn strip_deleted(p: PathBuf) -> PathBuf {
    match p.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(s) => PathBuf::from(s),
        None => p,
    }
}

/// Classification proper, with the map_files lookup passed in (tests give fake ones).
pub fn classify(
    pid: i32,
    smaps: &[SmapsEntry],
    lookup: &dyn Fn(u64, u64) -> Result<Option<MapFileInfo>, VmaDumpError>,
) -> Result<Vec<DumpVma>, VmaDumpError> {
    let mut out: Vec<DumpVma> = Vec::with_capacity(smaps.len());
    for s in smaps {
        let v = &s.vma;
        let unsupported = |what: &str| VmaDumpError::Unsupported {
            pid,
            start: v.start,
            end: v.end,
            what: what.to_string(),
        };
        let (mut flags, madv) = flags_and_madv(s.vm_flags);
        flags |= if v.perms.shared {
            MAP_SHARED
        } else {
            MAP_PRIVATE
        };
        if flags & MAP_DROPPABLE != 0 {
            flags &= !MAP_PRIVATE;
        }
        let mut e = VmaEntry {
            start: v.start,
            end: v.end,
            pgoff: v.offset,
            shmid: 0,
            prot: v.perms.prot() as u32,
            flags,
            status: 0,
            fd: -1,
            madv: (madv != 0).then_some(madv),
            fdflags: None,
        };
        let mut file = None;
        let mut shmem = None;
        match &v.name {
            VmaName::Vsyscall => e.status |= VMA_AREA_VSYSCALL,
            VmaName::Vdso => e.status |= VMA_AREA_REGULAR | VMA_AREA_VDSO,
            VmaName::Vvar | VmaName::VvarVclock => e.status |= VMA_AREA_REGULAR | VMA_AREA_VVAR,
            VmaName::Heap => e.status |= VMA_AREA_REGULAR | VMA_AREA_HEAP,
            VmaName::Uprobes => return Err(unsupported("uprobes area")),
            _ => e.status |= VMA_AREA_REGULAR,
        }
        let io = s.vm_flags.contains(VmFlags::IO) || s.vm_flags.contains(VmFlags::PFNMAP);
        if s.vm_flags.contains(VmFlags::SHADOW_STACK) {
            return Err(unsupported("shadow stack"));
        }
        // An AIO ring (io_setup): its pages are imaged like private memory, and restore makes
        // a new ring and moves it here (see `rebuild::restore_aio_rings`).
        if matches!(&v.name, VmaName::File { path, deleted: true } if path.as_os_str() == "/[aio]")
        {
            e.status |= VMA_AREA_AIORING;
            out.push(DumpVma {
                entry: e,
                file: None,
                shmem: None,
                socket: None,
            });
            continue;
        }
        match lookup(v.start, v.end)? {
            Some(info) => {
                e.fdflags = Some(match info.link_mode & 0o600 {
                    0o200 => libc::O_WRONLY as u32,
                    0o600 => libc::O_RDWR as u32,
                    _ => libc::O_RDONLY as u32,
                });
                let Some(meta) = info.meta else {
                    return Err(unsupported("socket, AIO ring or unopenable file"));
                };
                let ft = meta.file_type();
                let is_devzero = std::os::unix::fs::FileTypeExt::is_char_device(&ft)
                    && meta.rdev() == libc::makedev(1, 5);
                // A socket's own pages (a packet socket's ring): recorded as CRIU records
                // it, the socket named later by its file id; the dump of the socket decides
                // whether it is one that can come back (a packet socket the task holds).
                if std::os::unix::fs::FileTypeExt::is_socket(&ft) {
                    e.status = VMA_AREA_REGULAR | VMA_AREA_SOCKET;
                    out.push(DumpVma {
                        entry: e,
                        file: None,
                        shmem: None,
                        socket: Some(meta.ino()),
                    });
                    continue;
                }
                if !(ft.is_file() || is_devzero) {
                    return Err(unsupported(&format!(
                        "mapping of a non-regular file {}",
                        info.target.display()
                    )));
                }
                match &v.name {
                    // A System V segment: its contents go with the ipc namespace's images;
                    // the area names it by id (its file's inode number), as CRIU's does.
                    VmaName::SysvShm { .. } => {
                        e.status |= VMA_AREA_SYSVIPC;
                        e.shmid = meta.ino();
                        out.push(DumpVma {
                            entry: e,
                            file: None,
                            shmem: None,
                            socket: None,
                        });
                        continue;
                    }
                    // The object is dumped with the memfd's inode (CRIU's form).
                    VmaName::Memfd { .. } => e.status |= VMA_AREA_MEMFD,
                    _ => {}
                }
                // Shared anonymous memory is a shmem file the kernel names "/dev/zero (deleted)",
                // or a hugetlbfs one named "/anon_hugepage (deleted)" for MAP_HUGETLB.
                let memfd = e.status & VMA_AREA_MEMFD != 0;
                let huge_page = huge_page_size(&meta);
                if let Some(size) = huge_page {
                    e.flags |= huge_size_bits(size);
                }
                // (A deleted file of a tmpfs mapped shared is a file mapping, remapped as a
                // ghost by the dump.)
                let target = info.target.to_string_lossy();
                let anon_name = target.starts_with("/dev/zero")
                    || (huge_page.is_some() && target.starts_with("/anon_hugepage"));
                let anon = !memfd && anon_name && meta.nlink() == 0 && v.dev_major == 0;
                // Private MAP_HUGETLB memory is anonymous private memory, its pages dumped
                // with the task's.
                let huge_private = anon && huge_page.is_some() && !v.perms.shared;
                // A private mapping of shared anonymous memory (mapped through an fd or
                // map_files) names the object in CRIU's memfd form, so that its pages not yet
                // copied stay those of the shared object.
                if anon && !v.perms.shared && !huge_private {
                    e.status |= VMA_AREA_MEMFD;
                }
                if huge_private {
                    e.status |= VMA_ANON_PRIVATE;
                    e.flags |= MAP_ANONYMOUS;
                } else if anon && v.perms.shared {
                    e.status |= VMA_ANON_SHARED;
                    e.flags |= MAP_ANONYMOUS;
                    e.shmid = meta.ino();
                    shmem = Some(SharedObject {
                        ino: meta.ino(),
                        size: meta.size(),
                    });
                } else {
                    e.status |= if v.perms.shared {
                        VMA_FILE_SHARED
                    } else {
                        VMA_FILE_PRIVATE
                    };
                    let deleted = info.target.to_string_lossy().ends_with(" (deleted)");
                    file = Some(MappedFile {
                        deleted,
                        path: strip_deleted(info.target),
                        dev: meta.dev(),
                        ino: meta.ino(),
                        mode: meta.mode(),
                        size: meta.size(),
                    });
                }
            }
            None => {
                if v.perms.shared {
                    return Err(unsupported("shared memory without a file behind it"));
                }
                e.status |= VMA_ANON_PRIVATE;
                e.flags |= MAP_ANONYMOUS;
            }
        }
        let is_vvar = e.status & VMA_AREA_VVAR != 0;
        if io && !is_vvar && e.status & (VMA_FILE_SHARED | VMA_ANON_SHARED) == 0 {
            return Err(unsupported("VM_IO/VM_PFNMAP area"));
        }
        // Consecutive vvar areas ([vvar], [vvar_vclock]) are kept as one, as CRIU does.
        if is_vvar {
            if let Some(prev) = out.last_mut() {
                if prev.entry.status & VMA_AREA_VVAR != 0 && prev.entry.end == e.start {
                    prev.entry.end = e.end;
                    continue;
                }
            }
        }
        // Grows-down areas are imaged as /proc shows them: since Linux 4.12 the stack guard
        // gap is no part of the area, and CRIU adds no guard page on such kernels.
        out.push(DumpVma {
            entry: e,
            file,
            shmem,
            socket: None,
        });
    }
    Ok(out)
}

/// The huge page size of a file on hugetlbfs (its block size), None for other files.
fn huge_page_size(meta: &std::fs::Metadata) -> Option<u64> {
    let size = meta.blksize();
    (size > 4096 && size.is_power_of_two()).then_some(size)
}

/// The MAP_HUGE_* bits of mmap flags naming huge pages of `size` bytes (log2 at bit 26).
fn huge_size_bits(size: u64) -> u32 {
    size.trailing_zeros() << 26
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c0002000 r--p 00000000 08:01 1234 /usr/bin/prog
Rss: 8 kB
VmFlags: rd mr mw me dw
55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0 [heap]
VmFlags: rd wr mr mw me ac
7f0000000000-7f0000004000 r--p 00000000 00:00 0 [vvar]
VmFlags: rd mr pf io de dd
7f0000004000-7f0000006000 r--p 00000000 00:00 0 [vvar_vclock]
VmFlags: rd mr pf io de dd
7f0000006000-7f0000008000 r-xp 00000000 00:00 0 [vdso]
VmFlags: rd ex mr mw me de
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
VmFlags: rd wr mr mw me gd ac hg
";

    fn lookup(start: u64, _end: u64) -> Result<Option<MapFileInfo>, VmaDumpError> {
        if start != 0x55d0_c000_0000 {
            return Ok(None);
        }
        // Any regular file's stat will do for the classification.
        let meta = std::fs::metadata("/proc/self/exe").ok();
        Ok(Some(MapFileInfo {
            link_mode: 0o400 | libc::S_IFLNK,
            target: "/usr/bin/prog".into(),
            meta,
        }))
    }

    #[test]
    fn areas_get_criu_status_flags_and_guard_page() {
        let smaps = criu_procfs::smaps::parse_smaps(SMAPS).unwrap();
        let v = classify(1, &smaps, &lookup).unwrap();
        assert_eq!(v.len(), 5, "the two vvar areas are merged");
        assert_eq!(v[0].entry.status, VMA_AREA_REGULAR | VMA_FILE_PRIVATE);
        assert_eq!(v[0].entry.fdflags, Some(libc::O_RDONLY as u32));
        assert_eq!(
            v[0].file.as_ref().map(|f| f.path.clone()),
            Some(PathBuf::from("/usr/bin/prog"))
        );
        assert_eq!(
            v[1].entry.status,
            VMA_AREA_REGULAR | VMA_AREA_HEAP | VMA_ANON_PRIVATE
        );
        assert_eq!(v[1].entry.flags, MAP_PRIVATE | MAP_ANONYMOUS);
        assert_eq!(
            (v[2].entry.start, v[2].entry.end),
            (0x7f00_0000_0000, 0x7f00_0000_6000)
        );
        assert_eq!(
            v[2].entry.status,
            VMA_AREA_REGULAR | VMA_AREA_VVAR | VMA_ANON_PRIVATE
        );
        assert!(!v[2].is_private(), "vvar content is the kernel's");
        assert_eq!(
            v[3].entry.status,
            VMA_AREA_REGULAR | VMA_AREA_VDSO | VMA_ANON_PRIVATE
        );
        assert_eq!(
            v[4].entry.start, 0x7ffc_0000_0000,
            "a stack is imaged from its real start, with no guard page"
        );
        assert_eq!(
            v[4].entry.flags,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN
        );
        assert_eq!(v[4].entry.madv, Some(1 << libc::MADV_HUGEPAGE));
        assert!(v[4].is_private());
    }

    #[test]
    fn a_deleted_file_mapped_shared_is_a_file_mapping_not_anonymous_memory() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, [1u8; 4096]).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&f));
        let unlinked = || std::fs::metadata(&link).ok();
        // Both are unlinked shmem-like files on a device of major 0; only the name differs.
        let text = "7f1000000000-7f1000001000 rw-s 00000000 00:01 77 /dev/zero (deleted)\nVmFlags: rd wr sh mr mw me ms\n\
                    7f2000000000-7f2000001000 rw-s 00000000 00:2a 78 /dev/shm/f (deleted)\nVmFlags: rd wr sh mr mw me ms\n";
        let smaps = criu_procfs::smaps::parse_smaps(text).unwrap();
        let v = classify(42, &smaps, &|start, _| {
            let target = if start == 0x7f10_0000_0000 {
                "/dev/zero (deleted)"
            } else {
                "/dev/shm/f (deleted)"
            };
            Ok(Some(MapFileInfo {
                link_mode: 0o600 | libc::S_IFLNK,
                target: target.into(),
                meta: unlinked(),
            }))
        })
        .unwrap();
        assert_ne!(v[0].entry.status & VMA_ANON_SHARED, 0);
        assert!(v[0].file.is_none());
        assert_ne!(v[1].entry.status & VMA_FILE_SHARED, 0);
        let file = v[1].file.as_ref().unwrap();
        assert_eq!(file.path, PathBuf::from("/dev/shm/f"));
        assert!(file.deleted);
    }

    /// A hugetlbfs memfd, or None where this machine has no huge pages to give.
    /// A hugetlbfs file (the kernel's own mount: nothing to mount); fails the test, naming
    /// hugetlbfs, where the kernel lacks it.
    fn hugetlb_file(test: &str) -> std::fs::File {
        use nix::sys::memfd::{memfd_create, MFdFlags};
        let fd = memfd_create("unit-huge", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_HUGETLB)
            .unwrap_or_else(|e| {
                panic!(
                    "this machine lacks hugetlbfs (CONFIG_HUGETLBFS): memfd_create(MFD_HUGETLB) \
                     failed: {e}. To run the rest, leave the test out: cargo nextest run \
                     -E 'not test({test})'"
                )
            });
        std::fs::File::from(fd)
    }

    #[test]
    fn anonymous_hugetlb_areas_are_anonymous_memory_with_their_page_size() {
        let f = hugetlb_file("anonymous_hugetlb_areas_are_anonymous_memory_with_their_page_size");
        let meta = f.metadata().unwrap();
        let size_bits = meta.blksize().trailing_zeros() << 26;
        let text = "7f1000000000-7f1000200000 rw-s 00000000 00:10 77 /anon_hugepage (deleted)\nVmFlags: rd wr sh mr mw me ms ht\n\
                    7f2000000000-7f2000200000 rw-p 00000000 00:10 78 /anon_hugepage (deleted)\nVmFlags: rd wr mr mw me ht\n";
        let smaps = criu_procfs::smaps::parse_smaps(text).unwrap();
        let v = classify(42, &smaps, &|_, _| {
            Ok(Some(MapFileInfo {
                link_mode: 0o600 | libc::S_IFLNK,
                target: "/anon_hugepage (deleted)".into(),
                meta: Some(meta.clone()),
            }))
        })
        .unwrap();
        let huge = MAP_HUGETLB | MAP_ANONYMOUS | size_bits;
        assert_eq!(v[0].entry.status, VMA_AREA_REGULAR | VMA_ANON_SHARED);
        assert_eq!(v[0].entry.flags, MAP_SHARED | huge);
        assert_eq!(v[0].shmem.map(|o| o.ino), Some(meta.ino()));
        assert!(v[0].file.is_none());
        assert_eq!(v[1].entry.status, VMA_AREA_REGULAR | VMA_ANON_PRIVATE);
        assert_eq!(v[1].entry.flags, MAP_PRIVATE | huge);
        assert!(v[1].file.is_none() && v[1].shmem.is_none());
        assert!(v[1].is_private());
    }

    #[test]
    fn a_socket_mapping_is_a_socket_area_named_by_its_inode_with_no_pages() {
        let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&a));
        let meta = std::fs::metadata(&link).unwrap();
        let text = "7f1000000000-7f1000022000 rw-s 00000000 00:08 4242 socket:[4242]\nVmFlags: rd wr sh mr mw me ms mm\n\
                    7f2000000000-7f2000002000 r--p 00000000 00:08 4242 socket:[4242]\nVmFlags: rd mr mw me mm\n";
        let smaps = criu_procfs::smaps::parse_smaps(text).unwrap();
        let v = classify(42, &smaps, &|_, _| {
            Ok(Some(MapFileInfo {
                link_mode: 0o600 | libc::S_IFLNK,
                target: "socket:[4242]".into(),
                meta: Some(meta.clone()),
            }))
        })
        .unwrap();
        assert_eq!(v.len(), 2);
        for d in &v {
            assert_eq!(d.entry.status, VMA_AREA_REGULAR | VMA_AREA_SOCKET);
            assert_eq!(d.socket, Some(meta.ino()));
            assert!(d.file.is_none() && d.shmem.is_none());
            assert!(!d.is_private(), "a ring's pages are the kernel's");
            assert_eq!(d.entry.fdflags, Some(libc::O_RDWR as u32));
            assert_eq!(d.entry.flags & MAP_ANONYMOUS, 0);
        }
        assert_eq!(v[0].entry.flags, MAP_SHARED);
        assert_eq!(v[0].entry.prot, (libc::PROT_READ | libc::PROT_WRITE) as u32);
        assert_eq!(v[1].entry.flags, MAP_PRIVATE);
    }

    #[test]
    fn shared_memory_without_a_file_is_refused_with_its_address() {
        let text = "7f1000000000-7f1000001000 rw-s 00000000 00:01 77 /dev/zero (deleted)\nVmFlags: rd wr sh mr mw me ms\n";
        let smaps = criu_procfs::smaps::parse_smaps(text).unwrap();
        let err = classify(42, &smaps, &|_, _| Ok(None))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pid 42") && err.contains("7f1000000000") && err.contains("shared memory"),
            "{err}"
        );
    }
}
