//! Private memory a child inherits from its parent at restore, so that pages the two shared
//! copy-on-write before the dump are shared again afterwards. The parent's memory is restored
//! before it forks the child; the child keeps every area (anonymous or file) that it and its
//! parent have alike, and only pages whose content differs from what it inherited are written.

use std::fs::{File, OpenOptions};
use std::path::Path;

use criu_proto::images::VmaEntry;
use criu_proto::ImageKind;

use crate::fill::copy_runs;
use crate::restore::{plan, MapPlan, PageRun, RestoreMemError};
use crate::vma::PAGE_SIZE;

/// madvise advice numbers whose areas a fork does not copy as they are.
const MADV_DONTFORK: u32 = 10;
const MADV_WIPEONFORK: u32 = 18;

/// Bytes compared per read of the task's memory.
const COMPARE_CHUNK: u64 = 1 << 20;

/// The (start, end) of each area that `child` and `parent` both map alike (same bounds,
/// protection, flags, file and offset) and that a fork copies: the child keeps these.
pub fn inherited_areas(child: &[VmaEntry], parent: &[VmaEntry]) -> Vec<(u64, u64)> {
    let forked = |v: &VmaEntry| match plan(v) {
        Ok(p @ MapPlan::Mmap { .. }) => {
            let madv = v.madv.unwrap_or(0);
            let copied = madv & (1 << MADV_DONTFORK | 1 << MADV_WIPEONFORK) == 0;
            copied.then_some(p)
        }
        _ => None,
    };
    let theirs: Vec<MapPlan> = parent.iter().filter_map(forked).collect();
    child
        .iter()
        .filter_map(forked)
        .filter(|p| theirs.contains(p))
        .filter_map(|p| match p {
            MapPlan::Mmap { addr, len, .. } => Some((addr, addr + len)),
            _ => None,
        })
        .collect()
}

/// Splits `runs` into those inside `areas` and the others (a run lies in one area).
pub fn split_runs(runs: &[PageRun], areas: &[(u64, u64)]) -> (Vec<PageRun>, Vec<PageRun>) {
    runs.iter()
        .partition(|r| areas.iter().any(|&(s, e)| s <= r.vaddr && r.vaddr < e))
}

/// Page ranges inside `areas` where the parent had pages and the child has none: the child
/// inherited content there that must read as zeroes again.
pub fn stale_ranges(
    parent: &[PageRun],
    child: &[PageRun],
    areas: &[(u64, u64)],
) -> Vec<(u64, u64)> {
    let child = sorted_ranges(child);
    let mut out = Vec::new();
    for (start, end) in sorted_ranges(parent) {
        for &(a_start, a_end) in areas {
            let (s, e) = (start.max(a_start), end.min(a_end));
            if s < e {
                subtract(s, e, &child, &mut out);
            }
        }
    }
    out
}

fn sorted_ranges(runs: &[PageRun]) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = runs
        .iter()
        .map(|r| (r.vaddr, r.vaddr + r.pages * PAGE_SIZE))
        .collect();
    v.sort_unstable();
    v
}

/// Pushes [s, e) minus the sorted, disjoint `holes` onto `out`.
fn subtract(mut s: u64, e: u64, holes: &[(u64, u64)], out: &mut Vec<(u64, u64)>) {
    for &(hs, he) in holes {
        if he <= s || hs >= e {
            continue;
        }
        if hs > s {
            out.push((s, hs));
        }
        s = s.max(he);
        if s >= e {
            return;
        }
    }
    if s < e {
        out.push((s, e));
    }
}

/// What `fill_differing` did, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InheritedFill {
    pub written: u64,
    /// Pages already right (still shared with the parent).
    pub kept: u64,
}

/// Writes the pages of `runs` (all inside inherited areas) whose content in the task differs
/// from the image, leaving equal pages shared with the parent.
pub fn fill_differing(
    pid: i32,
    dir: &Path,
    pages_id: u32,
    runs: &[PageRun],
) -> Result<InheritedFill, RestoreMemError> {
    let path = dir.join(ImageKind::PAGES.file_name(Some(u64::from(pages_id))));
    let shown = path.display().to_string();
    let io = |source| criu_proto::Error::Io {
        path: shown.clone(),
        source,
    };
    let image = criu_sys::mapping::FileMapping::new(&File::open(&path).map_err(io)?).map_err(io)?;
    let bytes = image.bytes();
    let mem = OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/mem"))
        .map_err(|source| RestoreMemError::OpenMem { pid, source })?;
    let mut differing = Vec::new();
    let mut done = InheritedFill::default();
    let mut current = vec![0u8; COMPARE_CHUNK as usize];
    for r in runs {
        let len = r.pages * PAGE_SIZE;
        if r.offset + len > bytes.len() as u64 {
            return Err(RestoreMemError::ShortPages {
                path: shown,
                offset: r.offset,
                vaddr: r.vaddr,
                pages: r.pages,
            });
        }
        let mut at = 0;
        while at < len {
            let n = (len - at).min(COMPARE_CHUNK);
            let have = &mut current[..n as usize];
            std::os::unix::fs::FileExt::read_exact_at(&mem, have, r.vaddr + at).map_err(
                |source| RestoreMemError::Read {
                    pid,
                    addr: r.vaddr + at,
                    len: n as usize,
                    source,
                },
            )?;
            let want = &bytes[(r.offset + at) as usize..(r.offset + at + n) as usize];
            for page in 0..n / PAGE_SIZE {
                let (s, e) = (
                    (page * PAGE_SIZE) as usize,
                    ((page + 1) * PAGE_SIZE) as usize,
                );
                if have[s..e] == want[s..e] {
                    done.kept += PAGE_SIZE;
                    continue;
                }
                done.written += PAGE_SIZE;
                let vaddr = r.vaddr + at + page * PAGE_SIZE;
                match differing.last_mut() {
                    Some(PageRun {
                        vaddr: v, pages, ..
                    }) if *v + *pages * PAGE_SIZE == vaddr => *pages += 1,
                    _ => differing.push(PageRun {
                        vaddr,
                        pages: 1,
                        offset: r.offset + at + page * PAGE_SIZE,
                    }),
                }
            }
            at += n;
        }
    }
    copy_runs(pid, bytes, &mem, &differing, None)?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vma::VMA_AREA_REGULAR;

    fn anon(start: u64, end: u64, prot: u32) -> VmaEntry {
        VmaEntry {
            start,
            end,
            prot,
            flags: (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u32,
            status: VMA_AREA_REGULAR | crate::vma::VMA_ANON_PRIVATE,
            fd: -1,
            ..Default::default()
        }
    }

    fn run(vaddr: u64, pages: u64) -> PageRun {
        PageRun {
            vaddr,
            pages,
            offset: 0,
        }
    }

    #[test]
    fn only_identical_copied_areas_are_inherited() {
        let rw = (libc::PROT_READ | libc::PROT_WRITE) as u32;
        let mut dontfork = anon(0x5000, 0x6000, rw);
        dontfork.madv = Some(1 << MADV_DONTFORK);
        let file = |shmid, pgoff| VmaEntry {
            flags: libc::MAP_PRIVATE as u32,
            status: VMA_AREA_REGULAR | crate::vma::VMA_FILE_PRIVATE,
            shmid,
            pgoff,
            ..anon(0xa000, 0xb000, rw)
        };
        let parent = [
            anon(0x1000, 0x3000, rw),
            anon(0x3000, 0x4000, rw),
            dontfork,
            anon(0x7000, 0x8000, rw),
            file(3, 0),
        ];
        let child = [
            anon(0x1000, 0x3000, rw),
            anon(0x3000, 0x4000, libc::PROT_READ as u32),
            dontfork,
            anon(0x7000, 0x9000, rw),
            file(3, 0),
        ];
        assert_eq!(
            inherited_areas(&child, &parent),
            vec![(0x1000, 0x3000), (0xa000, 0xb000)]
        );
        let moved = [file(3, 0x1000)];
        assert!(
            inherited_areas(&moved, &parent).is_empty(),
            "another offset of the file"
        );
    }

    #[test]
    fn stale_ranges_are_parent_pages_the_child_lacks() {
        let areas = [(0x10000, 0x20000)];
        let parent = [run(0x10000, 4), run(0x30000, 1)];
        let child = [run(0x11000, 1)];
        assert_eq!(
            stale_ranges(&parent, &child, &areas),
            vec![(0x10000, 0x11000), (0x12000, 0x14000)]
        );
        assert!(stale_ranges(&parent, &[run(0x10000, 4)], &areas).is_empty());
    }

    #[test]
    fn runs_split_by_area() {
        let (inside, outside) = split_runs(&[run(0x1000, 1), run(0x5000, 2)], &[(0x4000, 0x8000)]);
        assert_eq!(
            (inside, outside),
            (vec![run(0x5000, 2)], vec![run(0x1000, 1)])
        );
    }

    #[test]
    fn only_differing_pages_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let page = PAGE_SIZE as usize;
        // Three pages of this process; the image differs in the middle one only.
        let mut buf = vec![7u8; 4 * page];
        let skip = (page - buf.as_ptr() as usize % page) % page;
        let mine = &mut buf[skip..skip + 3 * page];
        let mut image = mine.to_vec();
        image[page + 5] = 9;
        std::fs::write(dir.path().join(ImageKind::PAGES.file_name(Some(1))), &image).unwrap();
        let vaddr = mine.as_mut_ptr() as u64;
        let runs = [PageRun {
            vaddr,
            pages: 3,
            offset: 0,
        }];
        let done = fill_differing(std::process::id() as i32, dir.path(), 1, &runs).unwrap();
        assert_eq!(
            done,
            InheritedFill {
                written: PAGE_SIZE,
                kept: 2 * PAGE_SIZE
            }
        );
        assert_eq!(std::hint::black_box(&mine)[page + 5], 9);
    }
}
