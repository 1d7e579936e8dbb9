//! Page images across a chain of dumps (pre-dump, `--prev-images-dir`): a pagemap entry with
//! PE_PARENT says its pages are in the parent dump, the directory the `parent` symlink names,
//! whose own entries may point further up.

use std::path::{Path, PathBuf};

use criu_proto::images::{PagemapEntry, PagemapHead};
use criu_proto::{ImageKind, ImageReader};

use crate::restore::{PageRun, RestoreMemError};
use crate::track::Ranges;
use crate::vma::{PAGE_SIZE, PE_PARENT, PE_PRESENT};

/// The name of the link to the parent dump in an images directory, as CRIU names it.
pub const PARENT_LINK: &str = "parent";

/// Longest chain followed (a loop of links must not hang the restore).
const MAX_DEPTH: usize = 1024;

/// One pagemap entry: its pages are in this dump's pages image at `offset`, or in the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub vaddr: u64,
    pub pages: u64,
    pub offset: Option<u64>,
}

/// A pagemap image of `kind` (a task's or a shared object's): its pages image id and its
/// entries in image order.
pub(crate) fn read_entries(
    dir: &Path,
    kind: &ImageKind,
    id: u64,
) -> Result<(u32, Vec<Entry>), RestoreMemError> {
    let mut img = ImageReader::open(dir, kind, Some(id))?;
    let head: PagemapHead = img.read()?.ok_or_else(|| RestoreMemError::NoHead {
        path: img.path().into(),
    })?;
    let mut out = Vec::new();
    let mut offset = 0u64;
    let bad = |what: String| broken(dir, format!("{}: {what}", kind.file_name(Some(id))));
    while let Some(e) = img.read::<PagemapEntry>()? {
        let pages = e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages));
        let flags = e.flags.unwrap_or(PE_PRESENT);
        // A damaged or hostile entry stops here, before any address sum can wrap.
        let end = pages
            .checked_mul(PAGE_SIZE)
            .and_then(|len| e.vaddr.checked_add(len))
            .filter(|&end| end <= USER_END);
        if e.vaddr % PAGE_SIZE != 0 || end.is_none() {
            return Err(bad(format!(
                "page run {:#x}+{pages} pages is not in the user address space",
                e.vaddr
            )));
        }
        if e.in_parent == Some(true) || flags & PE_PARENT != 0 {
            out.push(Entry {
                vaddr: e.vaddr,
                pages,
                offset: None,
            });
        } else if flags & PE_PRESENT != 0 {
            out.push(Entry {
                vaddr: e.vaddr,
                pages,
                offset: Some(offset),
            });
            offset = offset.saturating_add(pages * PAGE_SIZE);
        }
    }
    let pages_img = dir.join(ImageKind::PAGES.file_name(Some(u64::from(head.pages_id))));
    let size = std::fs::metadata(&pages_img).map_or(0, |m| m.len());
    if offset > size {
        return Err(bad(format!(
            "its entries hold {offset} bytes of pages, but {} has {size}",
            pages_img.display()
        )));
    }
    Ok((head.pages_id, out))
}

/// The end of the user address space with 5-level page tables (57 bits): no page of a
/// task lies past it.
const USER_END: u64 = 1 << 56;

fn entries(dir: &Path, pid: u64) -> Result<(u32, Vec<Entry>), RestoreMemError> {
    read_entries(dir, &ImageKind::PAGEMAP, pid)
}

/// The pages of one dump in the chain that a task gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSource {
    pub dir: PathBuf,
    pub pages_id: u32,
    pub runs: Vec<PageRun>,
}

/// The addresses `pid`'s pagemap in `dir` has pages for (its own or its parents'); `None`
/// when the dump has no pagemap for it (a task that did not exist then).
pub fn covered(dir: &Path, pid: u64) -> Result<Option<Ranges>, RestoreMemError> {
    if !dir.join(ImageKind::PAGEMAP.file_name(Some(pid))).exists() {
        return Ok(None);
    }
    let (_, list) = entries(dir, pid)?;
    let ranges = list
        .iter()
        .map(|e| (e.vaddr, e.vaddr + e.pages * PAGE_SIZE))
        .collect();
    Ok(Some(Ranges::new(ranges)))
}

/// Links `dir/parent` to `parent` (relative to `dir`, as `--prev-images-dir` gives it), as
/// CRIU does; a parent that does not exist is an error. Returns the link.
pub fn link_parent(dir: &Path, parent: &Path) -> Result<std::path::PathBuf, String> {
    if !dir.join(parent).is_dir() {
        return Err(format!(
            "Invalid parent image directory provided: {} (from {}) does not exist",
            parent.display(),
            dir.display()
        ));
    }
    let link = dir.join(PARENT_LINK);
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(&link)
            .map_err(|e| format!("cannot replace {}: {e}", link.display()))?;
    }
    std::os::unix::fs::symlink(parent, &link).map_err(|e| {
        format!(
            "cannot link {} to {}: {e}",
            link.display(),
            parent.display()
        )
    })?;
    if parent.is_absolute() {
        tracing::warn!("Absolute paths for parent links may not work on restore!");
    }
    Ok(link)
}

fn broken(dir: &Path, what: String) -> RestoreMemError {
    RestoreMemError::Chain {
        dir: dir.display().to_string(),
        what,
    }
}

/// Every page of `pid` along the chain from `dir`, grouped by the dump that holds it
/// (`dir`'s own first). Fails, naming the dump, where an entry points at a parent that does
/// not exist or does not have the page.
pub fn read_chain(dir: &Path, pid: u64) -> Result<Vec<PageSource>, RestoreMemError> {
    let mut sources = Vec::new();
    let mut at = dir.to_path_buf();
    // Ranges still looked for, sorted.
    let mut wanted: Vec<(u64, u64)> = Vec::new();
    for depth in 0..MAX_DEPTH {
        if depth > 0 {
            let parent = at.join(PARENT_LINK);
            if !parent.is_dir() {
                let (s, _) = wanted[0];
                return Err(broken(
                    &at,
                    format!(
                        "pid {pid}: pages at {s:#x} are in the parent dump, but there is no \
                         parent directory ({} is missing)",
                        parent.display()
                    ),
                ));
            }
            at = parent;
            if !at.join(ImageKind::PAGEMAP.file_name(Some(pid))).exists() {
                return Err(broken(
                    &at,
                    format!("pid {pid}: the child dump takes pages from it, but it has no pagemap for the task"),
                ));
            }
        }
        let (pages_id, mut list) = entries(&at, pid)?;
        list.sort_by_key(|e| e.vaddr);
        let mut runs = Vec::new();
        let mut next = Vec::new();
        if depth == 0 {
            for e in &list {
                match e.offset {
                    Some(offset) => runs.push(PageRun {
                        vaddr: e.vaddr,
                        pages: e.pages,
                        offset,
                    }),
                    None => next.push((e.vaddr, e.vaddr + e.pages * PAGE_SIZE)),
                }
            }
        } else {
            let mut found = Vec::new();
            // Both sorted: one sweep.
            let mut i = 0;
            for e in &list {
                let (es, ee) = (e.vaddr, e.vaddr + e.pages * PAGE_SIZE);
                while i < wanted.len() && wanted[i].1 <= es {
                    i += 1;
                }
                let mut j = i;
                while j < wanted.len() && wanted[j].0 < ee {
                    let (s, t) = (wanted[j].0.max(es), wanted[j].1.min(ee));
                    if s < t {
                        found.push((s, t));
                        match e.offset {
                            Some(offset) => runs.push(PageRun {
                                vaddr: s,
                                pages: (t - s) / PAGE_SIZE,
                                offset: offset + (s - es),
                            }),
                            None => next.push((s, t)),
                        }
                    }
                    j += 1;
                }
            }
            let found = Ranges::new(found);
            if let Some(&(s, _)) = wanted.iter().find(|(s, e)| {
                let covered: u64 = found.clip(*s, *e).map(|(a, b)| b - a).sum();
                covered != e - s
            }) {
                return Err(broken(
                    &at,
                    format!("pid {pid}: the child dump takes the page at {s:#x} from this one, which does not have it"),
                ));
            }
        }
        if !runs.is_empty() {
            sources.push(PageSource {
                dir: at.clone(),
                pages_id,
                runs,
            });
        }
        if next.is_empty() {
            return Ok(sources);
        }
        wanted = Ranges::new(next).as_slice().to_vec();
    }
    Err(broken(
        dir,
        format!("pid {pid}: the chain of parent dumps is longer than {MAX_DEPTH} (a loop?)"),
    ))
}

/// Every run of every source (addresses only: offsets are per source).
pub fn all_runs(sources: &[PageSource]) -> Vec<PageRun> {
    let mut out: Vec<PageRun> = sources
        .iter()
        .flat_map(|s| s.runs.iter().copied())
        .collect();
    out.sort_by_key(|r| r.vaddr);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use criu_proto::ImageWriter;

    fn write_pagemap(dir: &Path, pages_id: u32, entries: &[(u64, u64, bool)]) {
        let mut w = ImageWriter::create(dir, &ImageKind::PAGEMAP, Some(1)).unwrap();
        w.write(&PagemapHead { pages_id }).unwrap();
        for &(vaddr, pages, parent) in entries {
            w.write(&PagemapEntry {
                vaddr,
                compat_nr_pages: 0,
                in_parent: None,
                flags: Some(if parent { PE_PARENT } else { PE_PRESENT }),
                nr_pages: Some(pages),
            })
            .unwrap();
        }
        w.finish().unwrap();
        // The pages image the entries need (zeros will do).
        let present: u64 = entries.iter().filter(|e| !e.2).map(|e| e.1).sum();
        let pages = dir.join(ImageKind::PAGES.file_name(Some(u64::from(pages_id))));
        let file = std::fs::File::create(pages).unwrap();
        file.set_len(present.saturating_mul(PAGE_SIZE).min(1 << 30))
            .unwrap();
    }

    #[test]
    fn a_run_outside_the_address_space_or_past_the_pages_image_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = |entries: &[(u64, u64, bool)]| {
            write_pagemap(dir.path(), 1, entries);
            read_chain(dir.path(), 1).unwrap_err().to_string()
        };
        for hostile in [
            (0x10000, u64::MAX, false),
            (u64::MAX - PAGE_SIZE + 1, 2, true),
            (0x10001, 1, false),
            (USER_END, 1, false),
        ] {
            let e = err(&[hostile]);
            assert!(
                e.contains("pagemap-1.img") && e.contains("not in the user address space"),
                "{hostile:?}: {e}"
            );
        }
        write_pagemap(dir.path(), 1, &[(0x10000, 4, false)]);
        let pages = dir.path().join(ImageKind::PAGES.file_name(Some(1)));
        std::fs::File::options()
            .write(true)
            .open(&pages)
            .unwrap()
            .set_len(3 * PAGE_SIZE)
            .unwrap();
        let e = read_chain(dir.path(), 1).unwrap_err().to_string();
        assert!(e.contains("16384 bytes") && e.contains("12288"), "{e}");
    }

    #[test]
    fn pages_are_found_up_the_chain_with_their_offsets() {
        let root = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            root.path().join("1"),
            root.path().join("2"),
            root.path().join("3"),
        );
        for d in [&a, &b, &c] {
            std::fs::create_dir(d).unwrap();
        }
        std::os::unix::fs::symlink("../1", b.join(PARENT_LINK)).unwrap();
        std::os::unix::fs::symlink("../2", c.join(PARENT_LINK)).unwrap();
        let p = PAGE_SIZE;
        // 1 has 8 pages at 0x10000; 2 rewrote pages 2-3; 3 rewrote page 5.
        write_pagemap(&a, 1, &[(0x10000, 8, false)]);
        write_pagemap(
            &b,
            1,
            &[
                (0x10000, 2, true),
                (0x10000 + 2 * p, 2, false),
                (0x10000 + 4 * p, 4, true),
            ],
        );
        write_pagemap(
            &c,
            1,
            &[
                (0x10000, 5, true),
                (0x10000 + 5 * p, 1, false),
                (0x10000 + 6 * p, 2, true),
            ],
        );
        let got = read_chain(&c, 1).unwrap();
        let run = |vaddr: u64, pages, offset| PageRun {
            vaddr,
            pages,
            offset,
        };
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].runs, vec![run(0x10000 + 5 * p, 1, 0)]);
        assert_eq!(got[1].runs, vec![run(0x10000 + 2 * p, 2, 0)]);
        assert_eq!(
            got[2].runs,
            vec![
                run(0x10000, 2, 0),
                run(0x10000 + 4 * p, 1, 4 * p),
                run(0x10000 + 6 * p, 2, 6 * p)
            ]
        );
        let pages: u64 = all_runs(&got).iter().map(|r| r.pages).sum();
        assert_eq!(pages, 8);
    }

    #[test]
    fn a_page_the_parent_lacks_or_a_missing_parent_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("1"), root.path().join("2"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        write_pagemap(&b, 1, &[(0x10000, 4, true)]);
        let e = read_chain(&b, 1).unwrap_err().to_string();
        assert!(e.contains("no parent directory"), "{e}");
        std::os::unix::fs::symlink("../1", b.join(PARENT_LINK)).unwrap();
        write_pagemap(&a, 1, &[(0x10000, 3, false)]);
        let e = read_chain(&b, 1).unwrap_err().to_string();
        assert!(
            e.contains("0x10000") && e.contains("does not have it"),
            "{e}"
        );
    }
}
