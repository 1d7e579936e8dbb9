//! memfd at dump, as CRIU 4.x writes it: each memfd inode once in memfd.img (name, owner,
//! mode, size, seals) with its contents in `pagemap-shmem-<shmid>.img` (shmid: the inode
//! number), and each open description in files.img pointing at its inode. A mapping of a
//! memfd names a files.img memfd entry too (one per inode), so fd and mapping are one object.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use criu_proto::images::{
    FdTypes, FdinfoEntry, FileEntry, FownEntry, MemfdFileEntry, MemfdInodeEntry,
};
use criu_proto::{ImageKind, ImageWriter};

use crate::eventfd::dump::lock;
use crate::table::{fdinfo, FileStat, FileTable};

const PREFIX: &str = "/memfd:";

#[derive(Debug, thiserror::Error)]
pub enum MemfdError {
    #[error("pid {pid}: {what}: memfd {name}: {source}")]
    Io {
        pid: i32,
        what: String,
        name: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Fown(#[from] crate::fown::dump::FownError),
    #[error("pid {pid}: fd {fd}: memfd: cannot read fdinfo: {source}")]
    Fdinfo {
        pid: i32,
        fd: i32,
        source: criu_procfs::ProcError,
    },
    #[error("pid {pid}: {what}: memfd {name}: huge page size is not a power of two")]
    Hugetlb {
        pid: i32,
        what: String,
        name: String,
    },
}

/// The memfd inodes of a dump.
#[derive(Debug, Default)]
pub struct MemfdInodes {
    /// memfd.img inode id by (dev, ino).
    ids: HashMap<(u64, u64), u32>,
    entries: Vec<MemfdInodeEntry>,
    /// Contents still to dump: shmid, a file open on the inode, its size.
    contents: Vec<(u64, File, u64)>,
    /// The files.img entry that mappings of an inode name, by (dev, ino).
    mapping_files: HashMap<(u64, u64), u32>,
}

impl MemfdInodes {
    /// The inode id of the memfd reachable at `path` (an fd or map_files link of `pid`),
    /// recorded with its contents the first time.
    fn inode(
        &mut self,
        pid: i32,
        what: &str,
        path: &Path,
        name: &str,
        meta: &std::fs::Metadata,
    ) -> Result<u32, MemfdError> {
        let key = (meta.dev(), meta.ino());
        if let Some(&id) = self.ids.get(&key) {
            return Ok(id);
        }
        let err = |step: &str| {
            let what = format!("{what}: {step}");
            let name = name.to_string();
            move |source| MemfdError::Io {
                pid,
                what,
                name,
                source,
            }
        };
        // On hugetlbfs the block size is the huge page size: memfd_create takes it as
        // MFD_HUGETLB with log2(size) at MFD_HUGE_SHIFT, which CRIU records.
        let hugetlb_flag = match meta.blksize() {
            0..=4096 => None,
            size if size.is_power_of_two() => {
                Some(libc::MFD_HUGETLB | size.trailing_zeros() << libc::MFD_HUGE_SHIFT)
            }
            _ => {
                return Err(MemfdError::Hugetlb {
                    pid,
                    what: what.to_string(),
                    name: name.to_string(),
                })
            }
        };
        let file = File::open(path).map_err(err("open"))?;
        let seals = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GET_SEALS)
            .map_err(|e| err("F_GET_SEALS")(e.into()))?;
        let id = self.entries.len() as u32 + 1;
        // As in CRIU, the shmid is the (32-bit) inode number.
        let shmid = meta.ino() as u32;
        self.entries.push(MemfdInodeEntry {
            name: name.to_string(),
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.size(),
            shmid,
            seals: seals as u32,
            inode_id: u64::from(id),
            hugetlb_flag,
            mode: Some(meta.mode()),
        });
        self.contents.push((u64::from(shmid), file, meta.size()));
        self.ids.insert(key, id);
        Ok(id)
    }

    /// Contents not yet dumped, as shared memory objects: shmid, (file, size).
    pub fn take_contents(&mut self) -> Vec<(u64, (File, u64))> {
        std::mem::take(&mut self.contents)
            .into_iter()
            .map(|(shmid, file, size)| (shmid, (file, size)))
            .collect()
    }

    pub fn entries(&self) -> &[MemfdInodeEntry] {
        &self.entries
    }
}

/// Whether an fd's path is a memfd's (`/memfd:NAME`, always shown deleted).
pub fn is_memfd_path(path: &Path) -> bool {
    path.to_str().is_some_and(|p| p.starts_with(PREFIX))
}

/// Whether `pid`'s `fd` (its path shown deleted) is a memfd or shared anonymous memory (opened
/// through map_files): a file of the kernel's internal shmem mount, which CRIU dumps as a
/// memfd (named `/dev/zero` for anonymous memory).
pub fn is_memfd_fd(pid: i32, fd: i32, path: &Path) -> bool {
    if is_memfd_path(path) {
        return true;
    }
    if path != Path::new("/dev/zero") {
        return false;
    }
    let meta = std::fs::metadata(format!("/proc/{pid}/fd/{fd}"));
    matches!((meta, shmem_dev()), (Ok(m), Some(dev)) if m.dev() == dev)
}

/// The device of the kernel's internal shmem mount (memfds, shared anonymous memory).
fn shmem_dev() -> Option<u64> {
    static DEV: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *DEV.get_or_init(|| {
        let fd =
            nix::sys::memfd::memfd_create("criu-shmem-dev", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
                .ok()?;
        Some(File::from(fd).metadata().ok()?.dev())
    })
}

/// The memfd's own name, without the `/memfd:` prefix and ` (deleted)` suffix.
fn memfd_name(path: &Path) -> String {
    let p = path.to_string_lossy();
    let p = p.strip_suffix(" (deleted)").unwrap_or(&p);
    p.strip_prefix(PREFIX).unwrap_or(p).to_string()
}

fn memfd_entry(id: u32, flags: u32, pos: u64, fown: FownEntry, inode_id: u32) -> FileEntry {
    FileEntry {
        r#type: FdTypes::Memfd as i32,
        id,
        memfd: Some(MemfdFileEntry {
            id,
            flags,
            pos,
            fown,
            inode_id,
        }),
        ..Default::default()
    }
}

pub fn dump_memfd_fd(
    pid: i32,
    fd: i32,
    path: &Path,
    table: &Mutex<FileTable>,
) -> Result<FdinfoEntry, MemfdError> {
    let link = std::path::PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
    let what = format!("fd {fd}");
    let (name, meta) = name_and_stat(pid, &what, path, &link)?;
    let info = criu_procfs::read_fdinfo(pid, fd).map_err(|source| MemfdError::Fdinfo {
        pid,
        fd,
        source,
    })?;
    let cloexec = libc::O_CLOEXEC as u32;
    let flags = info.flags & !cloexec;
    let pos = info.pos.max(0) as u64;
    let mut t = lock(table);
    let inode_id = t.memfds.inode(pid, &what, &link, &name, &meta)?;
    let id = t.described(pid, fd, FileStat::of(&meta), |id| {
        let fown = crate::fown::dump::read(pid, fd, flags)?;
        Ok::<_, MemfdError>(memfd_entry(id, flags, pos, fown, inode_id))
    })?;
    Ok(fdinfo(
        id,
        fd,
        u32::from(info.flags & cloexec != 0),
        FdTypes::Memfd,
    ))
}

/// The name of the memfd shown as `path` and the stat of the file at `link` (`what` of
/// `pid`), which an fd and a mapping both start with.
fn name_and_stat(
    pid: i32,
    what: &str,
    path: &Path,
    link: &Path,
) -> Result<(String, std::fs::Metadata), MemfdError> {
    let name = memfd_name(path);
    match std::fs::metadata(link) {
        Ok(meta) => Ok((name, meta)),
        Err(source) => Err(MemfdError::Io {
            pid,
            what: format!("{what}: stat"),
            name,
            source,
        }),
    }
}

/// The files.img id a mapping of a memfd names (`vma.shmid` of a VMA_AREA_MEMFD area): one
/// entry per inode, shared by all its mappings.
pub fn mapping_file_id(
    pid: i32,
    start: u64,
    end: u64,
    path: &Path,
    table: &Mutex<FileTable>,
) -> Result<u32, MemfdError> {
    let link = criu_procfs::maps::map_file_path(pid, start, end);
    let what = format!("mapping {start:#x}-{end:#x}");
    let (name, meta) = name_and_stat(pid, &what, path, &link)?;
    let mut t = lock(table);
    let key = (meta.dev(), meta.ino());
    if let Some(&id) = t.memfds.mapping_files.get(&key) {
        return Ok(id);
    }
    let inode_id = t.memfds.inode(pid, &what, &link, &name, &meta)?;
    let flags = libc::O_RDWR as u32;
    let id = t.add(|id| memfd_entry(id, flags, 0, FownEntry::default(), inode_id));
    t.memfds.mapping_files.insert(key, id);
    Ok(id)
}

/// memfd.img, when some memfd was dumped.
pub fn write_inodes(dir: &Path, inodes: &MemfdInodes) -> criu_proto::Result<()> {
    if inodes.entries.is_empty() {
        return Ok(());
    }
    let mut w = ImageWriter::create(dir, &ImageKind::MEMFD_INODE, None)?;
    for e in &inodes.entries {
        w.write(e)?;
    }
    w.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn one_inode_for_fds_and_mappings_with_name_seals_and_contents() {
        use nix::sys::memfd::{memfd_create, MFdFlags};
        let me = std::process::id() as i32;
        let fd = memfd_create("unit-memfd", MFdFlags::MFD_ALLOW_SEALING).unwrap();
        let mut f = File::from(fd);
        f.write_all(b"hello").unwrap();
        nix::fcntl::fcntl(
            &f,
            nix::fcntl::FcntlArg::F_ADD_SEALS(nix::fcntl::SealFlag::F_SEAL_SHRINK),
        )
        .unwrap();
        let again = File::open(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
        let path = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
        assert!(is_memfd_path(&path), "{}", path.display());
        let table = Mutex::new(FileTable::new(Default::default()));
        let a = dump_memfd_fd(me, f.as_raw_fd(), &path, &table).unwrap();
        let b = dump_memfd_fd(me, again.as_raw_fd(), &path, &table).unwrap();
        assert_ne!(a.id, b.id, "two descriptions");
        let mut t = table.into_inner().unwrap();
        let e = &t.memfds.entries()[0];
        assert_eq!(t.memfds.entries().len(), 1);
        assert_eq!((e.name.as_str(), e.size), ("unit-memfd", 5));
        assert_eq!(e.seals, libc::F_SEAL_SHRINK as u32);
        let m = t.entries()[0].memfd.unwrap();
        assert_eq!((m.pos, m.inode_id), (5, 1));
        assert_eq!(t.memfds.take_contents().len(), 1);
    }

    #[test]
    fn a_hugetlb_memfd_records_its_page_size_flag() {
        use nix::sys::memfd::{memfd_create, MFdFlags};
        let fd = memfd_create("unit-huge", MFdFlags::MFD_HUGETLB).unwrap_or_else(|e| {
            panic!(
                "this machine lacks hugetlbfs (CONFIG_HUGETLBFS): memfd_create(MFD_HUGETLB) \
                 failed: {e}. To run the rest, leave the test out: cargo nextest run \
                 -E 'not test(a_hugetlb_memfd_records_its_page_size_flag)'"
            )
        });
        let f = File::from(fd);
        let size = f.metadata().unwrap().blksize();
        f.set_len(size).unwrap();
        let me = std::process::id() as i32;
        let path = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
        let table = Mutex::new(FileTable::new(Default::default()));
        dump_memfd_fd(me, f.as_raw_fd(), &path, &table).unwrap();
        let t = table.into_inner().unwrap();
        let e = &t.memfds.entries()[0];
        let want = libc::MFD_HUGETLB | (size.trailing_zeros() << libc::MFD_HUGE_SHIFT);
        assert_eq!(e.hugetlb_flag, Some(want));
        assert_eq!(e.size, size);
    }
}
