//! PAGEMAP_SCAN on `/proc/PID/pagemap`: the pages of a range that fall in asked categories,
//! as regions, optionally write-protecting them in the same walk (userfaultfd WP_ASYNC).

use std::fs::File;
use std::os::fd::AsRawFd;

use nix::errno::Errno;

// _IOWR('f', 16, struct pm_scan_arg) (96 bytes).
const PAGEMAP_SCAN: libc::c_ulong = 0xc060_6610;
/// Write-protect the pages that match (needs a userfaultfd WP_ASYNC registration).
pub const PM_SCAN_WP_MATCHING: u64 = 1 << 0;

pub const PAGE_IS_WRITTEN: u64 = 1 << 1;
pub const PAGE_IS_PRESENT: u64 = 1 << 3;
pub const PAGE_IS_SWAPPED: u64 = 1 << 4;
/// A guard page (MADV_GUARD_INSTALL); kernels before 6.15 refuse the bit (EINVAL).
pub const PAGE_IS_GUARD: u64 = 1 << 8;

/// One region of consecutive pages with the same categories.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageRegion {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}

#[repr(C)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// What to look for: pages with every category of `all` and at least one of `any` (0: no
/// such condition).
#[derive(Debug, Clone, Copy)]
pub struct Query {
    pub flags: u64,
    pub all: u64,
    pub any: u64,
}

/// The regions of `[start, end)` that match `q`, merged where they touch. The walk goes on
/// until `end` however many regions it finds.
pub fn scan(pagemap: &File, start: u64, end: u64, q: Query) -> Result<Vec<PageRegion>, Errno> {
    let mut out: Vec<PageRegion> = Vec::new();
    let mut buf = vec![PageRegion::default(); 1024];
    let mut at = start;
    while at < end {
        let mut arg = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            flags: q.flags,
            start: at,
            end,
            walk_end: 0,
            vec: buf.as_mut_ptr() as u64,
            vec_len: buf.len() as u64,
            max_pages: 0,
            category_inverted: 0,
            category_mask: q.all,
            category_anyof_mask: q.any,
            return_mask: q.all | q.any,
        };
        // SAFETY: `arg` is a live pm_scan_arg of the size it declares; `vec` points at `buf`,
        // `vec_len` regions long, which the kernel fills and nothing else touches meanwhile.
        let n = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN, &mut arg) };
        if n < 0 {
            return Err(Errno::last());
        }
        let found = &buf[..n as usize];
        for r in found {
            match out.last_mut() {
                Some(last) if last.end == r.start => last.end = r.end,
                _ => out.push(*r),
            }
        }
        // A full vector stops the walk early: go on from where it stopped (never backwards).
        let last = found.last().map_or(0, |r| r.end);
        let next = arg.walk_end.max(last);
        if next <= at {
            break;
        }
        at = next;
    }
    Ok(out)
}
