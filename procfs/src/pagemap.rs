//! `/proc/PID/pagemap`: one little u64 per virtual page saying whether and where it is.

use crate::error::{ParseError, ProcError, Result};
use crate::read::pid_path;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// x86_64 base page size.
pub const PAGE_SIZE: u64 = 4096;

/// Entries read per pread: 64 Ki entries (512 KiB of pagemap, 256 MiB of address space).
const CHUNK_PAGES: u64 = 64 * 1024;

/// One pagemap entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PagemapEntry(pub u64);

impl PagemapEntry {
    const PRESENT: u64 = 1 << 63;
    const SWAPPED: u64 = 1 << 62;
    const FILE_SHARED: u64 = 1 << 61;
    const UFFD_WP: u64 = 1 << 57;
    const EXCLUSIVE: u64 = 1 << 56;
    const SOFT_DIRTY: u64 = 1 << 55;
    const PFN_MASK: u64 = (1 << 55) - 1;

    pub fn present(self) -> bool {
        self.0 & Self::PRESENT != 0
    }

    pub fn swapped(self) -> bool {
        self.0 & Self::SWAPPED != 0
    }

    /// The page is file-backed or shared anonymous memory (not private anonymous).
    pub fn file_or_shared(self) -> bool {
        self.0 & Self::FILE_SHARED != 0
    }

    /// Mapped only by this process (kernel 4.2 and later).
    pub fn exclusive(self) -> bool {
        self.0 & Self::EXCLUSIVE != 0
    }

    pub fn soft_dirty(self) -> bool {
        self.0 & Self::SOFT_DIRTY != 0
    }

    /// Write-protected by userfaultfd.
    pub fn uffd_wp(self) -> bool {
        self.0 & Self::UFFD_WP != 0
    }

    /// The page frame number of a present page (0 when the reader lacks CAP_SYS_ADMIN).
    pub fn pfn(self) -> Option<u64> {
        self.present().then_some(self.0 & Self::PFN_MASK)
    }

    /// (swap type, swap offset) of a swapped-out page.
    pub fn swap_entry(self) -> Option<(u64, u64)> {
        self.swapped()
            .then_some((self.0 & 0x1f, (self.0 & Self::PFN_MASK) >> 5))
    }
}

/// Decode raw pagemap bytes.
pub fn parse_pagemap(bytes: &[u8]) -> Result<Vec<PagemapEntry>, ParseError> {
    if !bytes.len().is_multiple_of(8) {
        return Err(ParseError::whole(format!(
            "length {} is not a multiple of 8",
            bytes.len()
        )));
    }
    Ok(bytes.chunks_exact(8).map(decode).collect())
}

fn decode(b: &[u8]) -> PagemapEntry {
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    PagemapEntry(u64::from_le_bytes(w))
}

/// Consecutive pages that share a property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRun {
    /// Address of the first page.
    pub start: u64,
    pub pages: u64,
}

impl PageRun {
    pub fn end(&self) -> u64 {
        self.start + self.pages * PAGE_SIZE
    }
}

/// Group the entries of pages starting at `start` into runs where `pred` holds. Appends to
/// `out`, joining with its last run when they touch.
pub fn collect_runs(
    start: u64,
    entries: &[PagemapEntry],
    mut pred: impl FnMut(PagemapEntry) -> bool,
    out: &mut Vec<PageRun>,
) {
    for (i, e) in entries.iter().enumerate() {
        if !pred(*e) {
            continue;
        }
        let addr = start + i as u64 * PAGE_SIZE;
        match out.last_mut() {
            Some(run) if run.end() == addr => run.pages += 1,
            _ => out.push(PageRun {
                start: addr,
                pages: 1,
            }),
        }
    }
}

/// An open pagemap of one process.
pub struct Pagemap {
    file: File,
    path: PathBuf,
}

impl Pagemap {
    pub fn open(pid: i32) -> Result<Pagemap> {
        let path = pid_path(pid, "pagemap");
        let file = File::open(&path).map_err(|e| ProcError::read(&path, e))?;
        Ok(Pagemap { file, path })
    }

    fn check_range(&self, start: u64, end: u64) -> Result<()> {
        if !start.is_multiple_of(PAGE_SIZE) || !end.is_multiple_of(PAGE_SIZE) || start > end {
            let msg = format!("bad range {start:#x}-{end:#x}: not page aligned or reversed");
            return Err(ParseError::whole(msg).at(&self.path));
        }
        Ok(())
    }

    /// Call `each(first_page_address, entries)` for the range, one large read at a time.
    pub fn for_each_chunk(
        &self,
        start: u64,
        end: u64,
        mut each: impl FnMut(u64, &[PagemapEntry]),
    ) -> Result<()> {
        self.check_range(start, end)?;
        let mut buf = vec![0u8; (CHUNK_PAGES.min((end - start) / PAGE_SIZE) * 8) as usize];
        let mut addr = start;
        let mut entries = Vec::with_capacity(buf.len() / 8);
        while addr < end {
            let pages = CHUNK_PAGES.min((end - addr) / PAGE_SIZE);
            let want = &mut buf[..(pages * 8) as usize];
            self.read_exact_at(want, addr / PAGE_SIZE * 8)?;
            entries.clear();
            entries.extend(want.chunks_exact(8).map(decode));
            each(addr, &entries);
            addr += pages * PAGE_SIZE;
        }
        Ok(())
    }

    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> Result<()> {
        while !buf.is_empty() {
            match self.file.read_at(buf, offset) {
                Ok(0) => {
                    let msg = format!("ends early, at address {:#x}", offset / 8 * PAGE_SIZE);
                    return Err(ParseError::whole(msg).at(&self.path));
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ProcError::read(&self.path, e)),
            }
        }
        Ok(())
    }

    /// All entries of a page-aligned range.
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<PagemapEntry>> {
        let mut out = Vec::new();
        self.for_each_chunk(start, end, |_, e| out.extend_from_slice(e))?;
        Ok(out)
    }

    /// Runs of pages in the range for which `pred` holds.
    pub fn runs_where(
        &self,
        start: u64,
        end: u64,
        mut pred: impl FnMut(PagemapEntry) -> bool,
    ) -> Result<Vec<PageRun>> {
        let mut out = Vec::new();
        self.for_each_chunk(start, end, |addr, e| {
            collect_runs(addr, e, &mut pred, &mut out)
        })?;
        Ok(out)
    }

    /// Runs of pages that are in memory.
    pub fn present_runs(&self, start: u64, end: u64) -> Result<Vec<PageRun>> {
        self.runs_where(start, end, PagemapEntry::present)
    }

    /// Runs of pages that have contents: in memory or swapped out (what a dump must save).
    pub fn populated_runs(&self, start: u64, end: u64) -> Result<Vec<PageRun>> {
        self.runs_where(start, end, |e| e.present() || e.swapped())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_bits() {
        let e = PagemapEntry((1 << 63) | (1 << 56) | (1 << 55) | 0x12345);
        assert!(e.present() && e.exclusive() && e.soft_dirty());
        assert!(!e.swapped() && !e.file_or_shared() && !e.uffd_wp());
        assert_eq!(e.pfn(), Some(0x12345));
        assert_eq!(e.swap_entry(), None);
        let s = PagemapEntry((1 << 62) | (1 << 61) | (1 << 57) | (77 << 5) | 3);
        assert!(s.swapped() && s.file_or_shared() && s.uffd_wp() && !s.present());
        assert_eq!(s.swap_entry(), Some((3, 77)));
        assert_eq!(s.pfn(), None);
        // Bit 55 is soft-dirty, not part of the PFN.
        assert_eq!(PagemapEntry((1 << 63) | (1 << 55) | 1).pfn(), Some(1));
    }

    #[test]
    fn parses_raw_bytes() {
        let raw: Vec<u8> = [0u64, 1 << 63 | 5]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        assert_eq!(
            parse_pagemap(&raw).unwrap(),
            vec![PagemapEntry(0), PagemapEntry(1 << 63 | 5)]
        );
        assert_eq!(
            parse_pagemap(&raw[..7]).unwrap_err().to_string(),
            "length 7 is not a multiple of 8"
        );
    }

    #[test]
    fn runs_join_across_chunks() {
        let p = PagemapEntry(1 << 63);
        let z = PagemapEntry(0);
        let mut out = Vec::new();
        collect_runs(0x1000, &[p, p, z, p], PagemapEntry::present, &mut out);
        // The next chunk starts right after: its first page extends the last run.
        collect_runs(0x5000, &[p, z, z, p], PagemapEntry::present, &mut out);
        assert_eq!(
            out,
            vec![
                PageRun {
                    start: 0x1000,
                    pages: 2
                },
                PageRun {
                    start: 0x4000,
                    pages: 2
                },
                PageRun {
                    start: 0x8000,
                    pages: 1
                },
            ]
        );
        assert_eq!(out[1].end(), 0x6000);
    }
}
