//! Private memory of a stopped task into `pagemap-N.img` + `pages-ID.img`: the pagemap says
//! which pages are present (zero-page mappings and untouched file pages are left out, as in
//! CRIU); their content is read through `/proc/PID/mem` (works on PROT_NONE and read-only
//! areas) by a few threads at once, each writing its share at its final offset.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use criu_proto::images::{PagemapEntry, PagemapHead};
use criu_proto::{ImageKind, ImageWriter};

use crate::dump_vmas::DumpVma;
use crate::vma::{
    PAGE_SIZE, PE_PARENT, PE_PRESENT, VMA_AREA_AIORING, VMA_AREA_REGULAR, VMA_AREA_VDSO,
    VMA_FILE_PRIVATE,
};
use criu_sys::pagemap_scan::{self, Query};

#[derive(Debug, thiserror::Error)]
pub enum PagesDumpError {
    #[error("pid {pid}: cannot read {path} at {addr:#x}: {source}")]
    Read {
        pid: i32,
        path: String,
        addr: u64,
        source: std::io::Error,
    },
    #[error("pid {pid}: cannot write {path}: {source}")]
    Write {
        pid: i32,
        path: String,
        source: std::io::Error,
    },
    #[error("pid {pid}: {source}")]
    Image { pid: i32, source: criu_proto::Error },
    #[error("pid {pid}: {source}")]
    Server {
        pid: i32,
        source: crate::page_server::PageServerError,
    },
}

/// Where a dump's pages go: files in the images dir, or a page server (one connection that
/// the tasks of a dump take in turn).
#[derive(Clone, Copy)]
pub enum PagesTo<'a> {
    Dir(&'a Path),
    Server(&'a Mutex<crate::page_server::Client>),
}

const PME_PRESENT: u64 = 1 << 63;
const PME_SWAP: u64 = 1 << 62;
const PME_FILE: u64 = 1 << 61;
/// mmap's MAP_DROPPABLE, as `vma_entry.flags` keeps it.
const MAP_DROPPABLE: u32 = 0x08;
const PME_GUARD_REGION: u64 = 1 << 58;
const PME_PFRAME_MASK: u64 = (1 << 55) - 1;

/// Counts for the stats image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageCounts {
    pub scanned: u64,
    pub written: u64,
    /// Pages left to the parent dump.
    pub skipped_parent: u64,
    /// Microseconds spent reading the pagemap and the memory, and writing it.
    pub scan_us: u64,
    pub write_us: u64,
    /// XXH3-128 of the pages image, taken while it was written (for the images' manifest).
    pub hash: Option<u128>,
}

/// One run of pages to copy: address, page count, and byte offset in the pages image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub vaddr: u64,
    pub pages: u64,
    pub offset: u64,
}

/// The PFN of the shared zero page, found by read-faulting a fresh anonymous page of our own.
/// `None` if it cannot be told (then zero pages are copied like any other).
pub fn zero_page_pfn() -> Option<u64> {
    // A fresh large calloc comes from mmap and is not written: reading faults in the zero page.
    let buf = vec![0u8; 4 << 20];
    let addr = buf.as_ptr() as u64;
    let page = (addr + 2 * PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
    let idx = (page - addr) as usize;
    let _ = std::hint::black_box(std::hint::black_box(&buf)[idx]);
    let pm = File::open("/proc/self/pagemap").ok()?;
    let mut word = [0u8; 8];
    pm.read_exact_at(&mut word, page / PAGE_SIZE * 8).ok()?;
    let pme = u64::from_le_bytes(word);
    drop(buf);
    (pme & PME_PRESENT != 0 && pme & PME_PFRAME_MASK != 0).then_some(pme & PME_PFRAME_MASK)
}

fn wants_page(pme: u64, vma: &DumpVma, zero_pfn: Option<u64>) -> bool {
    if pme & PME_GUARD_REGION != 0 {
        return false;
    }
    if vma.entry.status & VMA_FILE_PRIVATE != 0 && pme & PME_FILE != 0 {
        return false; // not COW-ed yet: the file has it
    }
    let present = pme & (PME_PRESENT | PME_SWAP) != 0;
    let zero = pme & PME_PRESENT != 0 && zero_pfn == Some(pme & PME_PFRAME_MASK);
    present && !zero
}

/// A dump with a parent: pages its tracker saw unwritten since the parent are the parent's,
/// where the parent has them.
pub struct Incremental {
    pub delta: crate::track::Delta,
    /// What the parent's pagemap covers (its own pages and its parents').
    pub parent: crate::track::Ranges,
}

/// What one pass over the task's pagemap finds.
#[derive(Debug, Clone, Default)]
pub struct Scanned {
    /// Runs of pages to dump, in the private VMAs; a run never crosses a VMA.
    pub runs: Vec<Run>,
    /// Runs of pages the parent dump has (vaddr, pages).
    pub parent_runs: Vec<(u64, u64)>,
    /// Pages of the private VMAs looked at.
    pub scanned: u64,
    /// Ranges made guards with MADV_GUARD_INSTALL, in any area.
    pub guards: Vec<(u64, u64)>,
}

/// Reads the pagemap of every area once: the pages to dump and the guard ranges.
pub fn scan(
    pid: i32,
    vmas: &[DumpVma],
    zero_pfn: Option<u64>,
    inc: Option<&Incremental>,
) -> Result<Scanned, PagesDumpError> {
    let path = format!("/proc/{pid}/pagemap");
    let pm = File::open(&path).map_err(|source| PagesDumpError::Read {
        pid,
        path: path.clone(),
        addr: 0,
        source,
    })?;
    let mut out = Scanned::default();
    let mut walker = PagemapWalker {
        pm: &pm,
        path: &path,
        pid,
        zero_pfn,
        buf: Vec::new(),
        offset: 0,
    };
    for vma in vmas
        .iter()
        .filter(|v| v.entry.status & VMA_AREA_REGULAR != 0)
    {
        let e = &vma.entry;
        // MAP_DROPPABLE memory may be dropped by the kernel at any time: its pages are not
        // kept, as CRIU does.
        let kept = vma.is_private() && e.flags & MAP_DROPPABLE == 0;
        if kept {
            out.scanned += (e.end - e.start) / PAGE_SIZE;
        }
        // An AIO ring's pages are written by the kernel, not faulted in by the task: pagemap
        // may show none of them.
        let whole = e.status & (VMA_AREA_VDSO | VMA_AREA_AIORING) != 0;
        // Parts the tracker saw unwritten since the parent: the parent's, where it has them,
        // else still empty; their pagemap is not read, only their guard pages are asked for
        // (a guard installed on an empty page is no write). Where the kernel cannot tell
        // guards that way, the part is read as any other.
        let unchanged = match inc {
            Some(i) if kept => i.delta.tracked.minus(&i.delta.written, e.start, e.end),
            _ => Vec::new(),
        };
        let guards = Query {
            flags: 0,
            all: pagemap_scan::PAGE_IS_GUARD,
            any: 0,
        };
        let mut found = Vec::with_capacity(unchanged.len());
        for &(s, t) in &unchanged {
            match pagemap_scan::scan(&pm, s, t, guards) {
                Ok(g) => found.push((s, t, g)),
                Err(e) => tracing::debug!("pid {pid}: guard pages of {s:#x}-{t:#x}: {e}"),
            }
        }
        let unchanged = found;
        let mut at = e.start;
        for (s, t, g) in unchanged
            .into_iter()
            .chain(std::iter::once((e.end, e.end, Vec::new())))
        {
            if at < s {
                let walk = Walk {
                    vma,
                    start: at,
                    end: s,
                    kept,
                    whole,
                };
                walk_pagemap(&mut walker, walk, &mut out)?;
            }
            for r in g {
                match out.guards.last_mut() {
                    Some((_, end)) if *end == r.start => *end = r.end,
                    _ => out.guards.push((r.start, r.end)),
                }
            }
            if let Some(i) = inc.filter(|_| s < t) {
                for (ps, pe) in i.parent.clip(s, t) {
                    let pages = (pe - ps) / PAGE_SIZE;
                    match out.parent_runs.last_mut() {
                        Some((v, n)) if *v + *n * PAGE_SIZE == ps => *n += pages,
                        _ => out.parent_runs.push((ps, pages)),
                    }
                }
            }
            at = t;
        }
    }
    Ok(out)
}

/// One stretch of a VMA whose pagemap is read.
struct Walk<'a> {
    vma: &'a DumpVma,
    start: u64,
    end: u64,
    kept: bool,
    whole: bool,
}

/// The task's pagemap file, and the scan's state as it goes.
struct PagemapWalker<'a> {
    pm: &'a File,
    path: &'a str,
    pid: i32,
    zero_pfn: Option<u64>,
    buf: Vec<u8>,
    /// Where the next dumped page goes in the pages image.
    offset: u64,
}

fn walk_pagemap(
    walker: &mut PagemapWalker,
    w: Walk,
    out: &mut Scanned,
) -> Result<(), PagesDumpError> {
    let PagemapWalker {
        pm,
        path,
        pid,
        zero_pfn,
        buf,
        offset,
    } = walker;
    let (pid, zero_pfn) = (*pid, *zero_pfn);
    const CHUNK: u64 = 1 << 16; // pages per pagemap read
    let e = &w.vma.entry;
    let npages = (w.end - w.start) / PAGE_SIZE;
    let mut first = 0;
    while first < npages {
        let n = CHUNK.min(npages - first);
        buf.resize(n as usize * 8, 0);
        let at = (w.start / PAGE_SIZE + first) * 8;
        pm.read_exact_at(buf, at)
            .map_err(|source| PagesDumpError::Read {
                pid,
                path: path.to_string(),
                addr: w.start + first * PAGE_SIZE,
                source,
            })?;
        for (i, word) in buf.chunks_exact(8).enumerate() {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word);
            let pme = u64::from_le_bytes(bytes);
            let vaddr = w.start + (first + i as u64) * PAGE_SIZE;
            if pme & PME_GUARD_REGION != 0 {
                match out.guards.last_mut() {
                    Some((_, end)) if *end == vaddr => *end += PAGE_SIZE,
                    _ => out.guards.push((vaddr, vaddr + PAGE_SIZE)),
                }
            }
            if !w.kept || !(w.whole || wants_page(pme, w.vma, zero_pfn)) {
                continue;
            }
            match out.runs.last_mut() {
                Some(Run {
                    vaddr: v, pages, ..
                }) if *v + *pages * PAGE_SIZE == vaddr && vaddr != e.start => *pages += 1,
                _ => out.runs.push(Run {
                    vaddr,
                    pages: 1,
                    offset: *offset,
                }),
            }
            *offset += PAGE_SIZE;
        }
        first += n;
    }
    Ok(())
}

/// A piece of work for one copying thread: up to `PIECE` bytes of the pages image from
/// `offset`, made of the task's memory at `segments` (address, length) in order.
struct Piece {
    offset: u64,
    len: u64,
    segments: Vec<(u64, u64)>,
}

const PIECE: u64 = 4 << 20;
/// Segments per piece: scattered pages are read with one process_vm_readv each (IOV_MAX).
const SEGMENTS: usize = 1024;

/// The runs cut into pieces; `grouped`: consecutive runs share a piece (their bytes follow
/// each other in the image), else each piece is part of one run.
fn pieces(runs: &[Run], grouped: bool) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    for r in runs {
        let mut done = 0;
        let total = r.pages * PAGE_SIZE;
        while done < total {
            let (vaddr, offset) = (r.vaddr + done, r.offset + done);
            match out.last_mut() {
                Some(p)
                    if grouped
                        && p.offset + p.len == offset
                        && p.len < PIECE
                        && p.segments.len() < SEGMENTS =>
                {
                    let len = (PIECE - p.len).min(total - done);
                    p.segments.push((vaddr, len));
                    p.len += len;
                    done += len;
                }
                _ => {
                    let len = PIECE.min(total - done);
                    out.push(Piece {
                        offset,
                        len,
                        segments: vec![(vaddr, len)],
                    });
                    done += len;
                }
            }
        }
    }
    out
}

/// The pages image's XXH3-128, fed in file order while the copying threads finish their
/// pieces out of order: each waits for its turn, a small part of its copy time, so the
/// manifest never reads the image again.
struct OrderedHash {
    state: Mutex<(usize, xxhash_rust::xxh3::Xxh3)>,
    turn: Condvar,
}

struct AbandonOnPanic<'a>(&'a OrderedHash);

impl Drop for AbandonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.abandon();
        }
    }
}

/// The turn after a failed copy: nobody waits any more.
const ABANDONED: usize = usize::MAX;

impl OrderedHash {
    fn new() -> OrderedHash {
        OrderedHash {
            state: Mutex::new((0, xxhash_rust::xxh3::Xxh3::new())),
            turn: Condvar::new(),
        }
    }

    fn add(&self, i: usize, bytes: &[u8]) {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while g.0 != i && g.0 != ABANDONED {
            g = self.turn.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        if g.0 == i {
            g.1.update(bytes);
            g.0 += 1;
        }
        self.turn.notify_all();
    }

    fn abandon(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0 = ABANDONED;
        self.turn.notify_all();
    }

    fn digest(self) -> Option<u128> {
        let (at, h) = self.state.into_inner().unwrap_or_else(|e| e.into_inner());
        (at != ABANDONED).then(|| h.digest128())
    }
}

/// A task's memory as the dump reads it: through `/proc/PID/mem`, which also reads PROT_NONE
/// and read-only areas. A running task (pre-dump) may exit or unmap areas meanwhile: what
/// cannot be read then reads as zeros (its tracker saw the change; no later dump takes those
/// pages from this one).
struct TaskMemory {
    pid: i32,
    path: String,
    file: Option<File>,
    running: bool,
}

impl TaskMemory {
    fn open(pid: i32, running: bool) -> Result<TaskMemory, PagesDumpError> {
        let path = format!("/proc/{pid}/mem");
        let file = match File::open(&path) {
            Ok(f) => Some(f),
            Err(e) if running => {
                tracing::debug!("pid {pid}: {path}: {e}: gone since the freeze");
                None
            }
            Err(source) => {
                return Err(PagesDumpError::Read {
                    pid,
                    path,
                    addr: 0,
                    source,
                })
            }
        };
        Ok(TaskMemory {
            pid,
            path,
            file,
            running,
        })
    }

    /// Reads a piece's segments into `buf`, one after the other: scattered pages in one
    /// process_vm_readv; through `/proc/PID/mem` where that does not read everything (areas
    /// it refuses, like PROT_NONE ones).
    fn read_piece(&self, buf: &mut [u8], p: &Piece) -> Result<(), PagesDumpError> {
        if p.segments.len() > 1 {
            use nix::sys::uio::{process_vm_readv, RemoteIoVec};
            let remote: Vec<RemoteIoVec> = p
                .segments
                .iter()
                .map(|&(base, len)| RemoteIoVec {
                    base: base as usize,
                    len: len as usize,
                })
                .collect();
            let pid = nix::unistd::Pid::from_raw(self.pid);
            let mut local = [std::io::IoSliceMut::new(buf)];
            if process_vm_readv(pid, &mut local, &remote).is_ok_and(|n| n as u64 == p.len) {
                return Ok(());
            }
        }
        let mut at = 0usize;
        for &(vaddr, len) in &p.segments {
            self.read(&mut buf[at..at + len as usize], vaddr)?;
            at += len as usize;
        }
        Ok(())
    }

    fn read(&self, buf: &mut [u8], vaddr: u64) -> Result<(), PagesDumpError> {
        let read = match &self.file {
            Some(f) => f.read_exact_at(buf, vaddr),
            None => Err(std::io::ErrorKind::NotFound.into()),
        };
        match read {
            Ok(()) => Ok(()),
            Err(e) if self.running => {
                tracing::debug!("pid {}: {vaddr:#x}: {e}: gone since the freeze", self.pid);
                buf.fill(0);
                Ok(())
            }
            Err(source) => Err(PagesDumpError::Read {
                pid: self.pid,
                path: self.path.clone(),
                addr: vaddr,
                source,
            }),
        }
    }
}

/// Copies the runs from the task's memory into `pages` with `threads` threads; returns the
/// image's hash.
fn copy_runs(
    pid: i32,
    runs: &[Run],
    pages: &File,
    pages_path: &str,
    threads: usize,
    running: bool,
) -> Result<Option<u128>, PagesDumpError> {
    let mem = TaskMemory::open(pid, running)?;
    let work = pieces(runs, true);
    let next = AtomicUsize::new(0);
    let hash = OrderedHash::new();
    let copy = |b: &mut [u8], p: &Piece| -> Result<(), PagesDumpError> {
        mem.read_piece(b, p)?;
        pages
            .write_all_at(b, p.offset)
            .map_err(|source| PagesDumpError::Write {
                pid,
                path: pages_path.to_string(),
                source,
            })
    };
    let worker = || -> Result<(), PagesDumpError> {
        // A worker that panics must not leave the others waiting for its turn.
        let _guard = AbandonOnPanic(&hash);
        let mut buf = vec![0u8; PIECE as usize];
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(p) = work.get(i) else { return Ok(()) };
            let b = &mut buf[..p.len as usize];
            if let Err(e) = copy(b, p) {
                hash.abandon();
                return Err(e);
            }
            hash.add(i, b);
            tracing::info!(target: "progress", done = p.len);
        }
    };
    let threads = threads.clamp(1, work.len().max(1));
    let copied = std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads).map(|_| s.spawn(worker)).collect();
        let mut result = worker();
        for h in handles {
            let r = h.join().unwrap_or(Ok(()));
            if result.is_ok() {
                result = r;
            }
        }
        result
    });
    copied.map(|()| hash.digest())
}

/// A pagemap's entries (vaddr, pages, flags) in address order: the runs dumped here, and the
/// parent's with `parent_flag`.
fn pagemap_entries(
    runs: &[Run],
    parent_runs: &[(u64, u64)],
    parent_flag: u32,
) -> Vec<(u64, u64, u32)> {
    let mut entries: Vec<(u64, u64, u32)> = runs
        .iter()
        .map(|r| (r.vaddr, r.pages, PE_PRESENT))
        .chain(parent_runs.iter().map(|&(v, n)| (v, n, parent_flag)))
        .collect();
    entries.sort_unstable_by_key(|e| e.0);
    entries
}

/// Writes `pagemap-PID.img`: head with `pages_id`, then one entry per run, in address
/// order, those of the parent dump flagged PE_PARENT.
fn write_pagemap(
    dir: &Path,
    pid: i32,
    pages_id: u32,
    runs: &[Run],
    parent_runs: &[(u64, u64)],
) -> Result<(), PagesDumpError> {
    let img = |source| PagesDumpError::Image { pid, source };
    let entries = pagemap_entries(runs, parent_runs, PE_PARENT);
    let mut w = ImageWriter::create(dir, &ImageKind::PAGEMAP, Some(pid as u64)).map_err(img)?;
    w.write(&PagemapHead { pages_id }).map_err(img)?;
    for (vaddr, pages, flags) in entries {
        w.write(&PagemapEntry {
            vaddr,
            compat_nr_pages: 0,
            in_parent: None,
            flags: Some(flags),
            nr_pages: Some(pages),
        })
        .map_err(img)?;
    }
    w.finish().map_err(img)?;
    Ok(())
}

/// The pages of a stopped task to dump, found (and the tracker's delta applied) while it is
/// stopped; copied by [`write_pages`] then or, for a pre-dump, once it runs again.
#[derive(Debug, Clone)]
pub struct PagesPlan {
    pub scanned: Scanned,
    pub scan_us: u64,
}

pub fn plan_pages(
    pid: i32,
    vmas: &[DumpVma],
    zero_pfn: Option<u64>,
    inc: Option<&Incremental>,
) -> Result<PagesPlan, PagesDumpError> {
    let t0 = std::time::Instant::now();
    let scanned = scan(pid, vmas, zero_pfn, inc)?;
    Ok(PagesPlan {
        scanned,
        scan_us: t0.elapsed().as_micros() as u64,
    })
}

/// Copies the planned pages into pages-PAGES_ID.img and writes pagemap-NAME.img (NAME: the
/// pid the task sees, which differs from `pid` in a pid namespace). `running`: the task runs
/// again (pre-dump), so pages it unmapped meanwhile read as zeros (its tracker saw the
/// change, and no later dump takes them from this one).
pub fn write_pages(
    to: PagesTo<'_>,
    (pid, name): (i32, i32),
    pages_id: u32,
    plan: &PagesPlan,
    threads: usize,
    running: bool,
) -> Result<PageCounts, PagesDumpError> {
    let dir = match to {
        PagesTo::Dir(dir) => dir,
        PagesTo::Server(client) => {
            let mut client = client.lock().unwrap_or_else(|e| e.into_inner());
            return send_pages(&mut client, (pid, name), plan, running);
        }
    };
    let runs = &plan.scanned.runs;
    let t1 = std::time::Instant::now();
    let pages_path = dir.join(ImageKind::PAGES.file_name(Some(u64::from(pages_id))));
    let shown = pages_path.display().to_string();
    let pages =
        criu_proto::create_image_file(&pages_path).map_err(|source| PagesDumpError::Write {
            pid,
            path: shown.clone(),
            source,
        })?;
    let written: u64 = runs.iter().map(|r| r.pages).sum();
    tracing::info!(target: "progress", total = written * PAGE_SIZE);
    pages
        .set_len(written * PAGE_SIZE)
        .map_err(|source| PagesDumpError::Write {
            pid,
            path: shown.clone(),
            source,
        })?;
    let hash = copy_runs(pid, runs, &pages, &shown, threads, running)?;
    write_pagemap(dir, name, pages_id, runs, &plan.scanned.parent_runs)?;
    Ok(PageCounts {
        scanned: plan.scanned.scanned,
        written,
        skipped_parent: plan.scanned.parent_runs.iter().map(|r| r.1).sum(),
        scan_us: plan.scan_us,
        write_us: t1.elapsed().as_micros() as u64,
        hash,
    })
}

/// Sends the planned pages to a page server, as CRIU's dump does: the pagemap's entries in
/// address order, each present one followed by its pages. A page server whose dir has no
/// parent for this task gets the pages the parent would have given.
fn send_pages(
    client: &mut crate::page_server::Client,
    (pid, name): (i32, i32),
    plan: &PagesPlan,
    running: bool,
) -> Result<PageCounts, PagesDumpError> {
    use crate::page_server::Target;
    let t1 = std::time::Instant::now();
    let server = |source| PagesDumpError::Server { pid, source };
    let target = Target::Task(name as u64);
    let has_parent = client.open(target).map_err(server)?;
    let parent_pages: u64 = plan.scanned.parent_runs.iter().map(|r| r.1).sum();
    if parent_pages > 0 && !has_parent {
        tracing::warn!(
            "pid {pid}: page server {} has no parent for {}: its {parent_pages} unchanged page(s) are sent too",
            client.address(),
            target.file_name()
        );
    }
    // What the page server writes into the pagemap.
    let parent_flag = if has_parent { PE_PARENT } else { PE_PRESENT };
    let entries = pagemap_entries(&plan.scanned.runs, &plan.scanned.parent_runs, parent_flag);
    let written: u64 = entries
        .iter()
        .filter(|e| e.2 == PE_PRESENT)
        .map(|e| e.1)
        .sum();
    tracing::info!(target: "progress", total = written * PAGE_SIZE);
    let mem = TaskMemory::open(pid, running)?;
    let present: Vec<Run> = entries
        .iter()
        .filter(|e| e.2 == PE_PRESENT)
        .map(|&(vaddr, pages, _)| Run {
            vaddr,
            pages,
            offset: 0,
        })
        .collect();
    let work = pieces(&present, false);
    // One thread reads the task's memory while this one sends what it read.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<u8>, PagesDumpError>>(2);
    let (ret_tx, ret_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| -> Result<(), PagesDumpError> {
        let (work, mem) = (&work, &mem);
        let reader = s.spawn(move || {
            for p in work {
                let mut b = ret_rx
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(PIECE as usize));
                b.resize(p.len as usize, 0);
                let item = mem.read_piece(&mut b, p).map(|()| b);
                let failed = item.is_err();
                if tx.send(item).is_err() || failed {
                    return;
                }
            }
        });
        let mut pieces_rx = rx.iter();
        let mut result = Ok(());
        for &(vaddr, pages, flags) in &entries {
            if let Err(e) = client.add(target, vaddr, pages, flags) {
                result = Err(server(e));
                break;
            }
            if flags != PE_PRESENT {
                continue;
            }
            let mut left = pages * PAGE_SIZE;
            while left > 0 {
                let b = match pieces_rx.next() {
                    Some(Ok(b)) => b,
                    Some(Err(e)) => {
                        result = Err(e);
                        break;
                    }
                    None => {
                        result = Err(PagesDumpError::Read {
                            pid,
                            path: mem.path.clone(),
                            addr: vaddr,
                            source: std::io::ErrorKind::UnexpectedEof.into(),
                        });
                        break;
                    }
                };
                if let Err(e) = client.pages(&b) {
                    result = Err(server(e));
                    break;
                }
                tracing::info!(target: "progress", done = b.len() as u64);
                left -= b.len() as u64;
                let _ = ret_tx.send(b);
            }
            if result.is_err() {
                break;
            }
        }
        // The reader stops at its next send once nobody receives.
        drop(rx);
        let _ = reader.join();
        result
    })?;
    Ok(PageCounts {
        scanned: plan.scanned.scanned,
        written,
        skipped_parent: if has_parent { parent_pages } else { 0 },
        scan_us: plan.scan_us,
        write_us: t1.elapsed().as_micros() as u64,
        hash: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_split_runs_at_the_piece_size() {
        let runs = [
            Run {
                vaddr: 0x1000,
                pages: 2048,
                offset: 0,
            },
            Run {
                vaddr: 0x10_0000_0000,
                pages: 1,
                offset: 2048 * 4096,
            },
        ];
        let p = pieces(&runs, false);
        assert_eq!(p.len(), 3);
        assert_eq!(
            (p[1].segments.clone(), p[1].offset, p[1].len),
            (vec![(0x1000 + PIECE, PIECE)], PIECE, PIECE)
        );
        assert_eq!(p[2].offset, 2048 * 4096);
        // Grouped too: the single page starts a piece of its own, the one before is full.
        let g = pieces(&runs, true);
        assert_eq!(g.len(), 3);
        let scattered: Vec<Run> = (0..3000)
            .map(|i| Run {
                vaddr: 0x10_0000 + i * 2 * PAGE_SIZE,
                pages: 1,
                offset: i * PAGE_SIZE,
            })
            .collect();
        let g = pieces(&scattered, true);
        assert_eq!(g.len(), 3, "1,024 segments at most per piece");
        assert_eq!(g[0].segments.len(), SEGMENTS);
        assert_eq!(g[1].offset, SEGMENTS as u64 * PAGE_SIZE);
    }

    #[test]
    fn zero_page_pfn_is_found_for_root() {
        // Only root sees PFNs; others get None and copy zero pages.
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root: only root sees PFNs (run the tests as root, see README)"
        );
        assert!(zero_page_pfn().is_some());
    }
}
