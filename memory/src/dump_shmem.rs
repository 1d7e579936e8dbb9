//! Dump half of shared anonymous memory: each object once, whoever maps it, read through the
//! shmem file behind one of its mappings (holes skipped with SEEK_DATA), into
//! `pagemap-shmem-<inode>.img` with run addresses as offsets in the object.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use criu_proto::images::{PagemapEntry, PagemapHead};
use criu_proto::{ImageKind, ImageWriter};
use nix::unistd::{lseek, Whence};

use crate::dump_pages::PagesTo;
use crate::vma::{PAGE_SIZE, PE_PRESENT};

#[derive(Debug, thiserror::Error)]
pub enum ShmemDumpError {
    #[error(transparent)]
    Image(#[from] criu_proto::Error),
    #[error("shared memory {shmid}: {what}: {source}")]
    Io {
        shmid: u64,
        what: String,
        source: std::io::Error,
    },
    #[error("shared memory {shmid}: {source}")]
    Server {
        shmid: u64,
        source: crate::page_server::PageServerError,
    },
}

/// Writes the pages of object `shmid` (of `size` bytes, readable through `file`) to
/// `pages-<pages_id>.img` and its pagemap. Returns the number of pages written.
pub fn dump_shmem(
    dir: &Path,
    shmid: u64,
    pages_id: u32,
    file: &File,
    size: u64,
) -> Result<u64, ShmemDumpError> {
    dump_shmem_to(PagesTo::Dir(dir), shmid, pages_id, file, size)
}

/// The pages image and pagemap of one object, written here or sent to a page server.
enum Out<'a> {
    Files {
        pages: File,
        pagemap: ImageWriter<std::io::BufWriter<File>>,
    },
    Server(std::sync::MutexGuard<'a, crate::page_server::Client>),
}

/// [`dump_shmem`] into the images dir or to a page server (as `pagemap-shmem-ID.img`,
/// CRIU's shared memory type).
pub fn dump_shmem_to(
    to: PagesTo<'_>,
    shmid: u64,
    pages_id: u32,
    file: &File,
    size: u64,
) -> Result<u64, ShmemDumpError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |source| ShmemDumpError::Io {
            shmid,
            what,
            source,
        }
    };
    let server = |source| ShmemDumpError::Server { shmid, source };
    let target = crate::page_server::Target::Shmem(shmid);
    let mut out = match to {
        PagesTo::Dir(dir) => {
            let pages_path = dir.join(ImageKind::PAGES.file_name(Some(u64::from(pages_id))));
            let pages =
                criu_proto::create_image_file(&pages_path).map_err(io("create pages image"))?;
            let mut pagemap = ImageWriter::create(dir, &ImageKind::SHMEM_PAGEMAP, Some(shmid))?;
            pagemap.write(&PagemapHead { pages_id })?;
            Out::Files { pages, pagemap }
        }
        PagesTo::Server(client) => {
            let mut client = client.lock().unwrap_or_else(|e| e.into_inner());
            client.open(target).map_err(server)?;
            Out::Server(client)
        }
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    let mut at = 0u64;
    while at < size {
        let Some(start) = seek(file, at, Whence::SeekData).map_err(io("SEEK_DATA"))? else {
            break;
        };
        let end = seek(file, start, Whence::SeekHole)
            .map_err(io("SEEK_HOLE"))?
            .unwrap_or(size)
            .min(size);
        let (start, end) = (
            start / PAGE_SIZE * PAGE_SIZE,
            end.div_ceil(PAGE_SIZE) * PAGE_SIZE,
        );
        let nr = (end - start) / PAGE_SIZE;
        if let Out::Server(client) = &mut out {
            client.add(target, start, nr, PE_PRESENT).map_err(server)?;
        }
        let mut off = start;
        while off < end {
            let n = ((end - off) as usize).min(buf.len());
            // The last page of an object whose size is not a page multiple (a memfd) is
            // read up to the size and padded with zeros.
            let have = (size.saturating_sub(off) as usize).min(n);
            file.read_exact_at(&mut buf[..have], off)
                .map_err(io("read"))?;
            buf[have..n].fill(0);
            match &mut out {
                Out::Files { pages, .. } => pages
                    .write_all(&buf[..n])
                    .map_err(io("write pages image"))?,
                Out::Server(client) => client.pages(&buf[..n]).map_err(server)?,
            }
            off += n as u64;
        }
        if let Out::Files { pagemap, .. } = &mut out {
            pagemap.write(&PagemapEntry {
                vaddr: start,
                compat_nr_pages: 0,
                flags: Some(PE_PRESENT),
                nr_pages: Some(nr),
                ..Default::default()
            })?;
        }
        written += nr;
        at = end;
    }
    if let Out::Files { pagemap, .. } = out {
        pagemap.finish()?;
    }
    Ok(written)
}

/// lseek with SEEK_DATA/SEEK_HOLE; `None` when there is no more data (ENXIO).
fn seek(file: &File, at: u64, whence: Whence) -> std::io::Result<Option<u64>> {
    match lseek(file.as_fd(), at as i64, whence) {
        Ok(pos) => Ok(Some(pos as u64)),
        Err(nix::errno::Errno::ENXIO) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_written_pages_are_dumped_at_their_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let obj = tempfile::tempfile().unwrap();
        obj.set_len(64 * PAGE_SIZE).unwrap();
        obj.write_all_at(b"first", 0).unwrap();
        obj.write_all_at(b"later", 40 * PAGE_SIZE + 10).unwrap();
        let n = dump_shmem(dir.path(), 99, 7, &obj, 64 * PAGE_SIZE).unwrap();
        // Sparse files on this filesystem keep the holes: two pages, not 64.
        assert!((2..64).contains(&n), "{n} pages");
        let (id, runs) = crate::restore::read_shmem_pagemap(dir.path(), 99).unwrap();
        assert_eq!(id, 7);
        let pages = crate::restore::read_pages_image(dir.path(), 7).unwrap();
        let find = |off: u64| {
            let r = runs
                .iter()
                .find(|r| r.vaddr <= off && off < r.vaddr + r.pages * PAGE_SIZE)
                .expect("run");
            (r.offset + off - r.vaddr) as usize
        };
        assert_eq!(&pages[find(0)..find(0) + 5], b"first");
        let at = find(40 * PAGE_SIZE + 10);
        assert_eq!(&pages[at..at + 5], b"later");
    }

    #[test]
    fn an_object_sent_to_a_page_server_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let (port, server) = crate::page_server::serve_one(dir.path());
        let obj = tempfile::tempfile().unwrap();
        obj.set_len(16 * PAGE_SIZE).unwrap();
        obj.write_all_at(b"sent", 5 * PAGE_SIZE + 3).unwrap();
        let client = std::sync::Mutex::new(
            crate::page_server::Client::connect("127.0.0.1", port, None).unwrap(),
        );
        let n = dump_shmem_to(PagesTo::Server(&client), 42, 1, &obj, 16 * PAGE_SIZE).unwrap();
        client.lock().unwrap().close().unwrap();
        server.join().unwrap().unwrap();
        let (id, runs) = crate::restore::read_shmem_pagemap(dir.path(), 42).unwrap();
        assert_eq!(id, crate::page_server::SERVER_PAGES_BASE);
        assert_eq!(runs.iter().map(|r| r.pages).sum::<u64>(), n);
        let copy = tempfile::tempfile().unwrap();
        copy.set_len(16 * PAGE_SIZE).unwrap();
        crate::restore::fill_file(&copy, dir.path(), id, &runs).unwrap();
        let mut got = [0u8; 4];
        copy.read_exact_at(&mut got, 5 * PAGE_SIZE + 3).unwrap();
        assert_eq!(&got, b"sent");
    }

    #[test]
    fn a_hugetlb_object_round_trips_through_its_images() {
        use nix::sys::memfd::{memfd_create, MFdFlags};
        const LEAVE_OUT: &str = "To run the rest, leave the test out: cargo nextest run \
                                 -E 'not test(a_hugetlb_object_round_trips_through_its_images)'";
        // The kernel's own hugetlbfs mount backs these files: there is nothing to mount.
        let huge = || {
            let fd = memfd_create("unit-huge", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_HUGETLB)
                .unwrap_or_else(|e| {
                    panic!(
                        "this machine lacks hugetlbfs (CONFIG_HUGETLBFS): \
                         memfd_create(MFD_HUGETLB) failed: {e}. {LEAVE_OUT}"
                    )
                });
            File::from(fd)
        };
        let (obj, copy) = (huge(), huge());
        use std::os::unix::fs::MetadataExt;
        let size = obj.metadata().unwrap().blksize();
        obj.set_len(size).unwrap();
        // hugetlbfs refuses write(2): the bytes go in through a mapping, which takes a huge page
        // from the pool the administrator reserved (vm.nr_hugepages; the test must not change it).
        criu_sys::mapping::with_shared_mut(&obj, size as usize, |b| {
            b[3 * PAGE_SIZE as usize..][..5].copy_from_slice(b"huge!")
        })
        .unwrap_or_else(|e| {
            panic!(
                "this machine has no free huge page of {size} bytes (mapping the hugetlbfs file \
                 failed: {e}; HugePages_Free in /proc/meminfo, reserved with vm.nr_hugepages). \
                 {LEAVE_OUT}"
            )
        });
        let dir = tempfile::tempdir().unwrap();
        dump_shmem(dir.path(), 5, 3, &obj, size).unwrap();
        let (id, runs) = crate::restore::read_shmem_pagemap(dir.path(), 5).unwrap();
        copy.set_len(size).unwrap();
        crate::restore::fill_file(&copy, dir.path(), id, &runs).unwrap();
        let mut got = [0u8; 5];
        copy.read_exact_at(&mut got, 3 * PAGE_SIZE).unwrap();
        assert_eq!(&got, b"huge!");
    }
}
