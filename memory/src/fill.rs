//! Restore half of memory, second step: the pages written back from the page images into the
//! mapped areas (through a userfaultfd where the task has one, else plainly), and into shared
//! memory objects.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use criu_proto::ImageKind;

use crate::restore::{PageRun, RestoreMemError};
use crate::vma::*;
pub struct UffdAreas<'a> {
    pub uffd: &'a criu_sys::uffd::Userfault,
    /// (start, end) of each registered area.
    pub areas: &'a [(u64, u64)],
}

impl UffdAreas<'_> {
    fn covers(&self, r: &PageRun) -> bool {
        let end = r.vaddr + r.pages * PAGE_SIZE;
        self.areas.iter().any(|(s, e)| *s <= r.vaddr && end <= *e)
    }
}

/// Copies every run from `pages-<id>.img` into the task: straight from a mapping of the image
/// with process_vm_writev (one copy), falling back to `/proc/<pid>/mem` for areas that
/// process_vm_writev refuses (read-only ones; that path writes them too). Large images are
/// split over two threads. Runs inside `uffd`'s areas go through UFFDIO_COPY instead.
pub fn fill(
    pid: i32,
    dir: &Path,
    pages_id: u32,
    runs: &[PageRun],
    uffd: Option<&UffdAreas>,
) -> Result<u64, RestoreMemError> {
    let kind = ImageKind::PAGES;
    let path = dir.join(kind.file_name(Some(u64::from(pages_id))));
    let shown = path.display().to_string();
    let io = |e| criu_proto::Error::Io {
        path: shown.clone(),
        source: e,
    };
    let pages = File::open(&path).map_err(io)?;
    let image = criu_sys::mapping::FileMapping::new(&pages).map_err(io)?;
    let size = image.bytes().len() as u64;
    for r in runs {
        if r.offset + r.pages * PAGE_SIZE > size {
            return Err(RestoreMemError::ShortPages {
                path: shown,
                offset: r.offset,
                vaddr: r.vaddr,
                pages: r.pages,
            });
        }
    }
    let mem = OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/mem"))
        .map_err(|source| RestoreMemError::OpenMem { pid, source })?;
    // A run may cross area bounds (CRIU merges adjacent areas' pages into one entry): cut it
    // there, so that each piece lies wholly inside one watched area or outside all of them.
    let pieces;
    let runs = match uffd {
        Some(u) => {
            pieces = split_at_bounds(runs, u.areas);
            pieces.as_slice()
        }
        None => runs,
    };
    let total: u64 = runs.iter().map(|r| r.pages * PAGE_SIZE).sum();
    tracing::info!(target: "progress", total);
    let (first, second) = split_by_bytes(runs, total / 2);
    let (first, second) = (first.as_slice(), second.as_slice());
    if second.is_empty() || total < (64 << 20) {
        copy_runs(pid, image.bytes(), &mem, runs, uffd)?;
    } else {
        std::thread::scope(|s| {
            let other = s.spawn(|| {
                // The caller may be pinned to one CPU (a restore's tracer): this half may
                // run on any.
                let mut any = nix::sched::CpuSet::new();
                for cpu in 0..nix::sched::CpuSet::count() {
                    let _ = any.set(cpu);
                }
                let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &any);
                copy_runs(pid, image.bytes(), &mem, second, uffd)
            });
            let mine = copy_runs(pid, image.bytes(), &mem, first, uffd);
            let theirs = other.join().unwrap_or_else(|_| {
                Err(RestoreMemError::OpenMem {
                    pid,
                    source: std::io::Error::other("copy thread panicked"),
                })
            });
            mine.and(theirs)
        })?;
    }
    Ok(total)
}

pub(crate) fn copy_runs(
    pid: i32,
    image: &[u8],
    mem: &File,
    runs: &[PageRun],
    uffd: Option<&UffdAreas>,
) -> Result<(), RestoreMemError> {
    use nix::sys::uio::{process_vm_writev, RemoteIoVec};
    let target = nix::unistd::Pid::from_raw(pid);
    for r in runs {
        let src = &image[r.offset as usize..(r.offset + r.pages * PAGE_SIZE) as usize];
        if let Some(u) = uffd.filter(|u| u.covers(r)) {
            match u.uffd.copy(r.vaddr, src) {
                Ok(()) => continue,
                // Pages already there (or a refused area): the plain path below writes them.
                // The plain write below must not fault on a page still missing in a watched
                // area (nobody would serve the fault): the run leaves the watch first.
                Err(e) => {
                    tracing::debug!(
                        "pid {pid}: UFFDIO_COPY at {:#x}: {e}; writing it instead",
                        r.vaddr
                    );
                    let _ = u.uffd.unregister(r.vaddr, r.pages * PAGE_SIZE);
                }
            }
        }
        let mut done = 0usize;
        while done < src.len() {
            let chunk = &src[done..];
            let addr = r.vaddr + done as u64;
            let remote = [RemoteIoVec {
                base: addr as usize,
                len: chunk.len(),
            }];
            match process_vm_writev(target, &[std::io::IoSlice::new(chunk)], &remote) {
                Ok(n) if n > 0 => done += n,
                // Refused: a run lies in one area, so the rest of it is read-only; /proc/PID/mem
                // writes those too, in one go.
                Ok(_) | Err(nix::errno::Errno::EFAULT) => {
                    mem.write_all_at(chunk, addr)
                        .map_err(|source| RestoreMemError::Write {
                            pid,
                            addr,
                            len: chunk.len(),
                            source,
                        })?;
                    done += chunk.len();
                }
                Err(e) => {
                    return Err(RestoreMemError::Write {
                        pid,
                        addr,
                        len: chunk.len(),
                        source: e.into(),
                    })
                }
            }
        }
        tracing::info!(target: "progress", done = src.len() as u64);
    }
    Ok(())
}

/// Writes runs of a shared object's pages (run addresses are offsets in the object) into the
/// object's file.
pub fn fill_file(
    file: &File,
    dir: &Path,
    pages_id: u32,
    runs: &[PageRun],
) -> Result<u64, RestoreMemError> {
    let path = dir.join(ImageKind::PAGES.file_name(Some(u64::from(pages_id))));
    let shown = path.display().to_string();
    let pages = File::open(&path).map_err(|e| criu_proto::Error::Io {
        path: shown.clone(),
        source: e,
    })?;
    if is_hugetlb(file) {
        return fill_hugetlb_file(file, &pages, &shown, runs);
    }
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0;
    for r in runs {
        let len = r.pages * PAGE_SIZE;
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            let chunk = &mut buf[..n];
            pages.read_exact_at(chunk, r.offset + done).map_err(|_| {
                RestoreMemError::ShortPages {
                    path: shown.clone(),
                    offset: r.offset + done,
                    vaddr: r.vaddr,
                    pages: r.pages,
                }
            })?;
            file.write_all_at(chunk, r.vaddr + done)
                .map_err(|source| RestoreMemError::Write {
                    pid: 0,
                    addr: r.vaddr + done,
                    len: n,
                    source,
                })?;
            done += n as u64;
        }
        total += len;
    }
    Ok(total)
}

/// A hugetlbfs file (its block size is the huge page size).
fn is_hugetlb(file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    file.metadata().is_ok_and(|m| m.blksize() > PAGE_SIZE)
}

/// `fill_file` for a hugetlbfs file, which refuses write(2): through a shared mapping of it.
fn fill_hugetlb_file(
    file: &File,
    pages: &File,
    shown: &str,
    runs: &[PageRun],
) -> Result<u64, RestoreMemError> {
    let write_err = |addr: u64, len: usize| {
        move |source| RestoreMemError::Write {
            pid: 0,
            addr,
            len,
            source,
        }
    };
    let size = file.metadata().map_err(write_err(0, 0))?.len();
    let io_err = |e| criu_proto::Error::Io {
        path: shown.to_string(),
        source: e,
    };
    let image = criu_sys::mapping::FileMapping::new(pages).map_err(io_err)?;
    let src = image.bytes();
    let mut total = 0;
    for r in runs {
        let len = r.pages * PAGE_SIZE;
        if r.offset + len > src.len() as u64 {
            return Err(RestoreMemError::ShortPages {
                path: shown.to_string(),
                offset: r.offset,
                vaddr: r.vaddr,
                pages: r.pages,
            });
        }
        if r.vaddr + len > size {
            let beyond = std::io::Error::other(format!("past the object's size {size}"));
            return Err(write_err(r.vaddr, len as usize)(beyond));
        }
        total += len;
    }
    criu_sys::mapping::with_shared_mut(file, size as usize, |dst| {
        for r in runs {
            let len = (r.pages * PAGE_SIZE) as usize;
            let (from, to) = (r.offset as usize, r.vaddr as usize);
            dst[to..to + len].copy_from_slice(&src[from..from + len]);
        }
    })
    .map_err(write_err(0, size as usize))?;
    Ok(total)
}

/// Cuts runs at every start and end of `areas`.
fn split_at_bounds(runs: &[PageRun], areas: &[(u64, u64)]) -> Vec<PageRun> {
    let mut bounds: Vec<u64> = areas.iter().flat_map(|&(s, e)| [s, e]).collect();
    bounds.sort_unstable();
    bounds.dedup();
    let mut out = Vec::with_capacity(runs.len());
    for r in runs {
        let end = r.vaddr + r.pages * PAGE_SIZE;
        let mut at = r.vaddr;
        for &b in bounds.iter().filter(|&&b| b > r.vaddr && b < end) {
            out.push(PageRun {
                vaddr: at,
                pages: (b - at) / PAGE_SIZE,
                offset: r.offset + (at - r.vaddr),
            });
            at = b;
        }
        out.push(PageRun {
            vaddr: at,
            pages: (end - at) / PAGE_SIZE,
            offset: r.offset + (at - r.vaddr),
        });
    }
    out
}

/// Splits the runs into two halves of about `half` bytes, cutting a run in two if needed.
fn split_by_bytes(runs: &[PageRun], half: u64) -> (Vec<PageRun>, Vec<PageRun>) {
    let (mut first, mut second) = (Vec::new(), Vec::new());
    let mut acc = 0;
    for r in runs {
        let len = r.pages * PAGE_SIZE;
        if acc >= half {
            second.push(*r);
        } else if acc + len <= half {
            first.push(*r);
        } else {
            let head = (half - acc) / PAGE_SIZE;
            if head > 0 {
                first.push(PageRun { pages: head, ..*r });
            }
            let cut = head * PAGE_SIZE;
            second.push(PageRun {
                vaddr: r.vaddr + cut,
                pages: r.pages - head,
                offset: r.offset + cut,
            });
        }
        acc += len;
    }
    (first, second)
}

const CHUNK: usize = 4 << 20;

/// Reads a raw pages image whole (for small images and tests).
pub fn read_pages_image(dir: &Path, pages_id: u32) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    File::open(dir.join(ImageKind::PAGES.file_name(Some(u64::from(pages_id)))))?
        .read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_cut_at_area_bounds() {
        let page = PAGE_SIZE;
        let runs = [PageRun {
            vaddr: 0x1000,
            pages: 4,
            offset: 0,
        }];
        let cut = split_at_bounds(&runs, &[(0x2000, 0x3000), (0x3000, 0x8000)]);
        let want = [
            PageRun {
                vaddr: 0x1000,
                pages: 1,
                offset: 0,
            },
            PageRun {
                vaddr: 0x2000,
                pages: 1,
                offset: page,
            },
            PageRun {
                vaddr: 0x3000,
                pages: 2,
                offset: 2 * page,
            },
        ];
        assert_eq!(cut, want);
        assert_eq!(split_at_bounds(&runs, &[]), runs);
    }

    #[test]
    fn runs_split_near_the_middle() {
        let runs: Vec<PageRun> = (0..4)
            .map(|i| PageRun {
                vaddr: i * 0x10000,
                pages: 16,
                offset: i * 16 * PAGE_SIZE,
            })
            .collect();
        let (a, b) = split_by_bytes(&runs, 2 * 16 * PAGE_SIZE);
        assert_eq!((a.len(), b.len()), (2, 2));
        // One big run is cut in the middle, keeping addresses and image offsets in step.
        let one = [PageRun {
            vaddr: 0x100000,
            pages: 10,
            offset: 0x3000,
        }];
        let (a, b) = split_by_bytes(&one, 4 * PAGE_SIZE);
        assert_eq!(
            a,
            vec![PageRun {
                vaddr: 0x100000,
                pages: 4,
                offset: 0x3000
            }]
        );
        assert_eq!(
            b,
            vec![PageRun {
                vaddr: 0x100000 + 4 * PAGE_SIZE,
                pages: 6,
                offset: 0x3000 + 4 * PAGE_SIZE
            }]
        );
    }

    #[test]
    fn fill_writes_pages_into_a_live_process_and_checks_image_size() {
        use criu_proto::images::{PagemapEntry, PagemapHead};
        use criu_proto::ImageWriter;
        // Our own memory stands in for a task: /proc/self/mem accepts writes.
        let mut target = vec![0u8; 3 * PAGE_SIZE as usize + PAGE_SIZE as usize];
        let base = (target.as_mut_ptr() as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let dir = tempfile::tempdir().unwrap();
        let mut pm = ImageWriter::create(dir.path(), &ImageKind::PAGEMAP, Some(1)).unwrap();
        pm.write(&PagemapHead { pages_id: 5 }).unwrap();
        pm.write(&PagemapEntry {
            vaddr: base,
            compat_nr_pages: 2,
            flags: Some(PE_PRESENT),
            nr_pages: Some(2),
            ..Default::default()
        })
        .unwrap();
        pm.finish().unwrap();
        let data: Vec<u8> = (0..2 * PAGE_SIZE as usize)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(dir.path().join("pages-5.img"), &data).unwrap();
        let sources = crate::chain::read_chain(dir.path(), 1).unwrap();
        assert_eq!(sources.len(), 1);
        let (id, runs) = (sources[0].pages_id, sources[0].runs.clone());
        assert_eq!(id, 5);
        let n = fill(std::process::id() as i32, dir.path(), id, &runs, None).unwrap();
        assert_eq!(n, 2 * PAGE_SIZE);
        let off = (base - target.as_ptr() as u64) as usize;
        assert_eq!(&target[off..off + data.len()], &data[..]);
        // A pages image shorter than the pagemap claims is refused before any write.
        std::fs::write(dir.path().join("pages-5.img"), &data[..100]).unwrap();
        assert!(matches!(
            fill(std::process::id() as i32, dir.path(), id, &runs, None),
            Err(RestoreMemError::ShortPages { .. })
        ));
    }
}
