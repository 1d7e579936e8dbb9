//! Memory tracking between dumps (pre-dump, `--track-mem`) without soft-dirty, which this
//! kernel lacks (design.md 5.2). A userfaultfd with asynchronous write-protection is made in
//! the task and stays there between dumps (the fd number goes to `mem-track.img`); criu takes
//! a copy with pidfd_getfd. Each dump registers the task's private areas with it and
//! write-protects their populated pages; a write then just clears a page's protection, and
//! the next dump's PAGEMAP_SCAN lists the pages written since and protects them again in the
//! same walk. Closing the last copy of the fd leaves the task exactly as it was.

use std::fs::File;
use std::path::Path;

use criu_proto::images::MemTrackEntry;
use criu_proto::{ImageKind, ImageReader, ImageWriter};
use criu_sys::pagemap_scan::{self, Query, PAGE_IS_PRESENT, PAGE_IS_SWAPPED, PAGE_IS_WRITTEN};
use criu_sys::uffd::{Userfault, UFFD_FEATURE_WP_ASYNC};
use criu_tracee::remote::Remote;

use crate::dump_vmas::DumpVma;
use crate::vma::{VMA_ANON_PRIVATE, VMA_AREA_AIORING, VMA_AREA_VDSO, VMA_AREA_VSYSCALL};

#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    #[error("pid {pid}: memory tracking: {what}: {source}")]
    Sys {
        pid: i32,
        what: String,
        source: nix::errno::Errno,
    },
    #[error("pid {pid}: memory tracking: {source}")]
    Tracee {
        pid: i32,
        source: criu_tracee::TraceeError,
    },
    #[error("pid {pid}: memory tracking: cannot read {what}: {source}")]
    Proc {
        pid: i32,
        what: &'static str,
        source: criu_procfs::ProcError,
    },
    #[error("memory tracking: {0}")]
    Image(#[from] criu_proto::Error),
    #[error("memory tracking: parent dump: {0}")]
    Parent(String),
}

/// Sorted, disjoint address ranges `[start, end)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    pub fn new(mut v: Vec<(u64, u64)>) -> Ranges {
        v.retain(|(s, e)| s < e);
        v.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for (s, e) in v {
            match out.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => out.push((s, e)),
            }
        }
        Ranges(out)
    }

    pub fn contains(&self, addr: u64) -> bool {
        let i = self.0.partition_point(|&(_, e)| e <= addr);
        self.0.get(i).is_some_and(|&(s, _)| s <= addr)
    }

    /// The parts of `[start, end)` inside these ranges.
    pub fn clip(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0
            .iter()
            .map(move |&(s, e)| (s.max(start), e.min(end)))
            .filter(|(s, e)| s < e)
    }

    /// The parts of these ranges inside `[start, end)` that `other` does not cover.
    pub fn minus(&self, other: &Ranges, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for (s, e) in self.clip(start, end) {
            let mut at = s;
            for (os, oe) in other.clip(s, e) {
                if at < os {
                    out.push((at, os));
                }
                at = oe;
            }
            if at < e {
                out.push((at, e));
            }
        }
        out
    }

    pub fn as_slice(&self) -> &[(u64, u64)] {
        &self.0
    }
}

/// What a dump with a parent may take from it: pages of the `tracked` ranges not `written`
/// since the parent are the parent's (where it has them).
#[derive(Debug, Clone, Default)]
pub struct Delta {
    pub tracked: Ranges,
    pub written: Ranges,
}

/// A task's tracker as a dump leaves it (and the next one finds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The pid as the images name it.
    pub pid: i32,
    /// The userfaultfd's number in the task.
    pub fd: i32,
    pub ranges: Ranges,
    /// What the dump's pagemap covers, when its pages went to a page server.
    pub covered: Option<Ranges>,
}

/// The trackers of a dump directory, by pid (none if the directory has no record).
pub fn read_records(dir: &Path) -> Result<Vec<Record>, TrackError> {
    if !dir.join(ImageKind::MEM_TRACK.file_name(None)).exists() {
        return Ok(Vec::new());
    }
    let mut img = ImageReader::open(dir, &ImageKind::MEM_TRACK, None)?;
    let mut out = Vec::new();
    while let Some(e) = img.read::<MemTrackEntry>()? {
        let pairs = e.ranges.chunks_exact(2).map(|p| (p[0], p[1])).collect();
        let covered = (!e.covered.is_empty())
            .then(|| Ranges::new(e.covered.chunks_exact(2).map(|p| (p[0], p[1])).collect()));
        out.push(Record {
            pid: e.pid as i32,
            fd: e.fd,
            ranges: Ranges::new(pairs),
            covered,
        });
    }
    Ok(out)
}

pub fn write_records(dir: &Path, records: &[Record]) -> Result<(), TrackError> {
    let mut w = ImageWriter::create(dir, &ImageKind::MEM_TRACK, None)?;
    for r in records {
        w.write(&MemTrackEntry {
            pid: r.pid as u32,
            fd: r.fd,
            ranges: r.ranges.0.iter().flat_map(|&(s, e)| [s, e]).collect(),
            covered: r
                .covered
                .iter()
                .flat_map(|c| c.0.iter().flat_map(|&(s, e)| [s, e]))
                .collect(),
        })?;
    }
    w.finish()?;
    Ok(())
}

/// Areas a tracker watches: private anonymous memory the task's own code writes (not the
/// vDSO, the vsyscall page or an AIO ring, which the kernel writes). Not private file
/// mappings: a page not yet copied on write shows the file, which changes without a write
/// to the mapping (zdtm's shmemfd-priv), so their pages are read whole every time.
fn trackable(v: &DumpVma) -> bool {
    v.is_private()
        && v.entry.status & VMA_ANON_PRIVATE != 0
        && v.entry.status & (VMA_AREA_VDSO | VMA_AREA_VSYSCALL | VMA_AREA_AIORING) == 0
}

/// A live tracker of a stopped task.
pub struct Tracker {
    uffd: Userfault,
    pagemap: File,
    pid: i32,
    /// Its number in the task.
    pub fd: i32,
}

/// Whether `pid`'s `fd` is a userfaultfd with asynchronous write-protection: a tracker.
pub fn is_tracker(pid: i32, fd: i32) -> bool {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"));
    if !link.is_ok_and(|l| l.as_os_str() == "anon_inode:[userfaultfd]") {
        return false;
    }
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
    // "API:\t<api>:<features>:<ioctls>", in hex.
    info.lines()
        .find_map(|l| l.strip_prefix("API:"))
        .and_then(|v| v.trim().split(':').nth(1))
        .and_then(|f| u64::from_str_radix(f, 16).ok())
        .is_some_and(|features| features & UFFD_FEATURE_WP_ASYNC != 0)
}

/// The tracker the parent dump left in the task at `fd`, if it is still there (the task may
/// have closed it, or exec'd).
fn adopt(pid: i32, fd: i32) -> Option<Userfault> {
    if !is_tracker(pid, fd) {
        return None;
    }
    criu_sys::pidfd::take_fd(pid, fd).ok().map(Userfault::adopt)
}

/// Makes a tracker in the stopped task (injected `userfaultfd`), moved to a high fd number
/// out of the program's way.
fn make(pid: i32, r: &mut Remote) -> Result<(Userfault, i32), TrackError> {
    let terr = |source| TrackError::Tracee { pid, source };
    const UFFD_USER_MODE_ONLY: u64 = 1;
    let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64;
    let mut fd = r.try_call(libc::SYS_userfaultfd, &[flags]).map_err(terr)?;
    if fd == -(libc::EPERM as i64) {
        // An unprivileged task may watch only its user-mode faults.
        fd = r
            .try_call(libc::SYS_userfaultfd, &[flags | UFFD_USER_MODE_ONLY])
            .map_err(terr)?;
    }
    if fd < 0 {
        return Err(TrackError::Sys {
            pid,
            what: "userfaultfd in the task".into(),
            source: nix::errno::Errno::from_raw(-fd as i32),
        });
    }
    let nofile = criu_procfs::read_limits(pid)
        .map_err(|source| TrackError::Proc {
            pid,
            what: "limits",
            source,
        })?
        .into_iter()
        .find(|l| l.resource == libc::RLIMIT_NOFILE)
        .map_or(1024, |l| l.soft.min(1 << 20));
    let high = r
        .try_call(
            libc::SYS_fcntl,
            &[
                fd as u64,
                libc::F_DUPFD_CLOEXEC as u64,
                nofile.saturating_sub(1),
            ],
        )
        .map_err(terr)?;
    if high >= 0 {
        r.close(fd as u64).map_err(terr)?;
        fd = high;
    }
    let ours = criu_sys::pidfd::take_fd(pid, fd as i32).map_err(|source| TrackError::Sys {
        pid,
        what: format!("pidfd_getfd of fd {fd}"),
        source,
    })?;
    let uffd = Userfault::new_wp_async(ours).map_err(|source| TrackError::Sys {
        pid,
        what: "UFFDIO_API with WP_ASYNC".into(),
        source,
    })?;
    Ok((uffd, fd as i32))
}

impl Tracker {
    /// Takes over the tracker `prev` left in the stopped task (then `true`), or makes one if
    /// `create` (then there is no delta: every page is new to it).
    pub fn open(
        pid: i32,
        r: &mut Remote,
        prev: Option<&Record>,
        create: bool,
    ) -> Result<Option<(Tracker, bool)>, TrackError> {
        let pagemap_path = format!("/proc/{pid}/pagemap");
        let pagemap = File::open(&pagemap_path).map_err(|e| TrackError::Sys {
            pid,
            what: format!("cannot open {pagemap_path}"),
            source: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        if let Some(p) = prev {
            if let Some(uffd) = adopt(pid, p.fd) {
                let t = Tracker {
                    uffd,
                    pagemap,
                    pid,
                    fd: p.fd,
                };
                return Ok(Some((t, true)));
            }
            tracing::info!(
                "pid {pid}: the tracker at fd {} is gone: every page is dumped again",
                p.fd
            );
        }
        if !create {
            return Ok(None);
        }
        let (uffd, fd) = make(pid, r)?;
        let t = Tracker {
            uffd,
            pagemap,
            pid,
            fd,
        };
        Ok(Some((t, false)))
    }

    /// One round, the task stopped: the pages written since `prev` in the areas it tracked
    /// (protected again), then every other trackable area registered and its populated pages
    /// protected. Returns the delta (empty without `prev`) and the record for the next dump.
    pub fn round(
        &self,
        name: i32,
        vmas: &[DumpVma],
        prev: Option<&Record>,
    ) -> Result<(Delta, Record), TrackError> {
        let pid = self.pid;
        let smaps = criu_procfs::read_smaps(pid).map_err(|source| TrackError::Proc {
            pid,
            what: "smaps",
            source,
        })?;
        // Areas registered with a userfaultfd in write-protect mode, by start.
        let registered: std::collections::HashSet<u64> = smaps
            .iter()
            .filter(|s| s.vm_flags.contains(criu_procfs::VmFlags::UFFD_WP))
            .map(|s| s.vma.start)
            .collect();
        let watched = |start: u64| registered.contains(&start);
        let sys = |what: String| move |source| TrackError::Sys { pid, what, source };
        let mut tracked = Vec::new();
        let mut written = Vec::new();
        let mut now = Vec::new();
        for v in vmas.iter().filter(|v| trackable(v)) {
            let (start, end) = (v.entry.start, v.entry.end);
            if watched(start) {
                // Registered by this tracker in an earlier round (an area of another
                // userfaultfd is not ours: no earlier round registered it).
                let Some(p) = prev else { continue };
                let parts: Vec<_> = p.ranges.clip(start, end).collect();
                if parts.is_empty() {
                    continue;
                }
                let q = Query {
                    flags: pagemap_scan::PM_SCAN_WP_MATCHING,
                    all: PAGE_IS_WRITTEN,
                    any: 0,
                };
                for &(s, e) in &parts {
                    let found = pagemap_scan::scan(&self.pagemap, s, e, q)
                        .map_err(sys(format!("PAGEMAP_SCAN of {s:#x}-{e:#x}")))?;
                    written.extend(found.iter().map(|r| (r.start, r.end)));
                    tracked.push((s, e));
                }
                // Parts the area gained since (a stack grown down) are new to the tracker; the
                // rest was protected again by the scan.
                let mut at = start;
                for &(s, e) in &parts {
                    if at < s {
                        self.protect(at, s)?;
                    }
                    at = e;
                }
                if at < end {
                    self.protect(at, end)?;
                }
                now.push((start, end));
            } else {
                match self.uffd.register_wp(start, end - start) {
                    Ok(()) => {
                        self.protect(start, end)?;
                        now.push((start, end));
                    }
                    // Held by another userfaultfd, or a kind the kernel will not watch: its
                    // pages are dumped whole every time.
                    Err(e) => tracing::debug!(
                        "pid {pid}: area {start:#x}-{end:#x} not tracked: register: {e}"
                    ),
                }
            }
        }
        let delta = Delta {
            tracked: Ranges::new(tracked),
            written: Ranges::new(written),
        };
        let record = Record {
            pid: name,
            fd: self.fd,
            ranges: Ranges::new(now),
            covered: None,
        };
        Ok((delta, record))
    }

    /// Write-protects the populated pages of `[start, end)` (protecting empty ones would
    /// fill page tables for nothing).
    fn protect(&self, start: u64, end: u64) -> Result<(), TrackError> {
        let q = Query {
            flags: pagemap_scan::PM_SCAN_WP_MATCHING,
            all: 0,
            any: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
        };
        pagemap_scan::scan(&self.pagemap, start, end, q)
            .map(drop)
            .map_err(|source| TrackError::Sys {
                pid: self.pid,
                what: format!("protecting {start:#x}-{end:#x}"),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_answer_membership() {
        let r = Ranges::new(vec![(0x3000, 0x5000), (0x1000, 0x2000), (0x2000, 0x2800)]);
        assert_eq!(r.as_slice(), &[(0x1000, 0x2800), (0x3000, 0x5000)]);
        assert!(r.contains(0x1000) && r.contains(0x27ff) && r.contains(0x4fff));
        assert!(!r.contains(0x2800) && !r.contains(0x5000) && !r.contains(0xfff));
        let clipped: Vec<_> = r.clip(0x2000, 0x4000).collect();
        assert_eq!(clipped, vec![(0x2000, 0x2800), (0x3000, 0x4000)]);
        let holes = Ranges::new(vec![(0x1800, 0x2000), (0x3800, 0x3900)]);
        assert_eq!(
            r.minus(&holes, 0x1000, 0x4000),
            vec![
                (0x1000, 0x1800),
                (0x2000, 0x2800),
                (0x3000, 0x3800),
                (0x3900, 0x4000)
            ]
        );
    }
}
