//! Iterative dumps (`pre-dump`, `--prev-images-dir`, `--track-mem`): what a dump builds on and
//! what it leaves for the next one. The memory tracker itself is `criu_memory::track`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use criu_memory::dump_pages::Incremental;
use criu_memory::dump_vmas::DumpVma;
use criu_memory::track::{self, Record, TrackError, Tracker};
use criu_tracee::remote::Remote;
use criu_tracee::{Injector, SeizedProcess};

/// What the command asked.
#[derive(Debug, Clone, Default)]
pub struct Iterative {
    /// `pre-dump`: memory only, copied once the tree runs again.
    pub pre_dump: bool,
    /// `--prev-images-dir`, as given: relative to the images dir (CRIU's `parent` link).
    pub parent: Option<PathBuf>,
    /// Leave a tracker in each task for the next dump (a pre-dump always does).
    pub track_mem: bool,
    /// The RPC's pidfd store: which tasks are the processes the parent dump saw.
    pub pidfd_store: Option<std::sync::Arc<criu_process::pidfd_store::PidfdStore>>,
}

/// What the tasks of one dump share about it.
#[derive(Debug, Default)]
pub struct Chain {
    pub asked: Iterative,
    /// The parent dump, when `--prev-images-dir` names one that exists.
    pub parent_dir: Option<PathBuf>,
    /// The trackers the parent left, by the pid the images name.
    pub prev: BTreeMap<i32, Record>,
    /// The trackers this dump leaves, for `mem-track.img`.
    pub left: Mutex<Vec<Record>>,
    /// The trackers this dump made, (pid, fd): closed again if it fails.
    pub made: Mutex<Vec<(i32, i32)>>,
}

impl Chain {
    /// Links `dir/parent` to the parent dump as CRIU does, and reads what the parent left. A
    /// parent that does not exist fails the dump, as CRIU's.
    pub fn prepare(dir: &Path, asked: Iterative) -> Result<Chain, String> {
        let mut chain = Chain {
            asked,
            ..Default::default()
        };
        let Some(parent) = chain.asked.parent.clone() else {
            return Ok(chain);
        };
        if chain
            .asked
            .pidfd_store
            .as_ref()
            .is_some_and(|s| s.is_empty())
        {
            // As CRIU: every task would be dumped whole, which a series is not for.
            return Err(
                "no pidfds found in the pidfd store: the same socket as in the \
                        previous dump of the series should be passed"
                    .into(),
            );
        }
        let link = criu_memory::chain::link_parent(dir, &parent)?;
        chain.prev = track::read_records(&link)
            .map_err(|e| format!("{}: {e}", link.display()))?
            .into_iter()
            .map(|r| (r.pid, r))
            .collect();
        chain.parent_dir = Some(link);
        Ok(chain)
    }

    /// Whether `pid` is the process the parent dump saw, as far as the pidfd store tells
    /// (without one, the tracker left in the task tells).
    fn same_process(&self, pid: i32) -> bool {
        let same = self
            .asked
            .pidfd_store
            .as_ref()
            .is_none_or(|s| s.same_process(pid));
        if !same {
            tracing::warn!(
                "pid {pid}: pid reuse detected (pidfd store): its memory is dumped whole"
            );
        }
        same
    }

    /// In a chain of dumps, a tracker in a task is criu's (a plain dump refuses a
    /// userfaultfd as any other unsupported file).
    pub fn active(&self) -> bool {
        self.keeps() || !self.prev.is_empty()
    }

    /// Whether the dump leaves trackers behind, and takes pages from the parent (CRIU takes
    /// them only with --track-mem too).
    fn keeps(&self) -> bool {
        self.asked.pre_dump || self.asked.track_mem
    }

    /// Keeps what task `name`'s pagemap covers in its record, for a next dump that cannot
    /// read that pagemap (its pages went to a page server).
    pub fn set_covered(&self, name: i32, scanned: &criu_memory::dump_pages::Scanned) {
        let mut left = self.left.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = left.iter_mut().find(|r| r.pid == name) {
            let ranges = scanned
                .runs
                .iter()
                .map(|r| (r.vaddr, r.vaddr + r.pages * criu_memory::vma::PAGE_SIZE))
                .chain(
                    scanned
                        .parent_runs
                        .iter()
                        .map(|&(v, n)| (v, v + n * criu_memory::vma::PAGE_SIZE)),
                )
                .collect();
            r.covered = Some(track::Ranges::new(ranges));
        }
    }

    pub fn write_records(&self, dir: &Path) -> Result<(), TrackError> {
        let left = self.left.lock().unwrap_or_else(|e| e.into_inner());
        if left.is_empty() {
            return Ok(());
        }
        track::write_records(dir, &left)
    }
}

/// One task's tracker during its dump, and what the pages may take from the parent.
pub struct Tracking {
    pub inc: Option<Incremental>,
    /// Held until the pages are read: the last copy closing would end the tracking.
    _tracker: Tracker,
}

/// Takes over the tracker the parent left in the stopped task `pid` (NAME in the images), or
/// makes one if this dump keeps them; runs its round. `None`: no tracking asked or left.
pub fn start(
    chain: &Chain,
    (pid, name): (i32, i32),
    process: &mut SeizedProcess,
    vmas: &[DumpVma],
) -> Result<Option<Tracking>, TrackError> {
    let prev = chain.prev.get(&name).filter(|_| chain.same_process(pid));
    if prev.is_none() && !chain.keeps() {
        return Ok(None);
    }
    let terr = |source| TrackError::Tracee { pid, source };
    let leader = process.thread_mut(pid).ok_or(TrackError::Tracee {
        pid,
        source: criu_tracee::TraceeError::Unexpected {
            tid: pid,
            what: "no leader thread".into(),
        },
    })?;
    let mut inj = Injector::new(leader, 64).map_err(terr)?;
    let mut r = Remote::new(&mut inj);
    let Some((tracker, continued)) = Tracker::open(pid, &mut r, prev, chain.keeps())? else {
        inj.finish().map_err(terr)?;
        return Ok(None);
    };
    let t0 = std::time::Instant::now();
    let (delta, record) = tracker.round(name, vmas, prev.filter(|_| continued))?;
    tracing::info!(
        "pid {pid}: memory tracker at fd {}: {} range(s) tracked since the parent, {} written; {} range(s) protected, in {} us",
        tracker.fd,
        delta.tracked.as_slice().len(),
        delta.written.as_slice().len(),
        record.ranges.as_slice().len(),
        t0.elapsed().as_micros()
    );
    let fd = tracker.fd;
    if !continued {
        chain
            .made
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((pid, fd));
    }
    if chain.keeps() {
        chain
            .left
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    } else {
        // Our copy keeps it alive for this dump; the task is rid of it.
        r.close(fd as u64).map_err(terr)?;
    }
    inj.finish().map_err(terr)?;
    // The parent's pagemap, or, when its pages went to a page server, what its record says
    // the pagemap covers.
    let parent = match (&chain.parent_dir, continued && chain.keeps()) {
        (Some(dir), true) => criu_memory::chain::covered(dir, name as u64)
            .map_err(|e| TrackError::Parent(e.to_string()))?
            .or_else(|| prev.and_then(|p| p.covered.clone())),
        _ => None,
    };
    Ok(Some(Tracking {
        inc: parent.map(|parent| Incremental { delta, parent }),
        _tracker: tracker,
    }))
}
