//! `criu dedup` and `--auto-dedup`: pages a dump holds itself are punched out of the pages
//! images of every older dump of its chain (fallocate PUNCH_HOLE, the files keep their size),
//! as CRIU does: a restore reads each page from the newest dump that has it, so the older
//! copies only take space. Each pagemap (a task's or a shared object's) that the parent dump
//! has is walked; at each level up, the pages it holds itself are punched and the rest of the
//! range is looked for further up. The older dumps' manifests are brought up to date.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use criu_proto::ImageKind;

use crate::chain::{read_entries, PARENT_LINK};
use crate::restore::RestoreMemError;
use crate::vma::PAGE_SIZE;

/// What a dedup did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Deduped {
    pub pagemaps: usize,
    pub bytes: u64,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> RestoreMemError {
    RestoreMemError::Chain {
        dir: path.display().to_string(),
        what: e.to_string(),
    }
}

/// Punches the pages `dir` holds itself out of every older dump of its chain.
pub fn dedup(dir: &Path) -> Result<Deduped, RestoreMemError> {
    let parent = dir.join(PARENT_LINK);
    if !parent.is_dir() {
        return Err(io_err(
            dir,
            "no parent dump to deduplicate against (no parent link)",
        ));
    }
    let mut done = Deduped::default();
    let mut changed: BTreeSet<(PathBuf, String)> = BTreeSet::new();
    for (kind, id) in pagemaps(&parent)? {
        if !dir.join(kind.file_name(Some(id))).exists() {
            continue;
        }
        let (_, own) = read_entries(dir, &kind, id)?;
        let ranges: Vec<(u64, u64)> = own
            .iter()
            .filter(|e| e.offset.is_some())
            .map(|e| (e.vaddr, e.vaddr + e.pages * PAGE_SIZE))
            .collect();
        done.pagemaps += 1;
        done.bytes += punch_up(&parent, &kind, id, ranges, &mut changed)?;
    }
    update_manifests(changed)?;
    Ok(done)
}

/// After a restore with `--auto-dedup`: the pages each task read (along its chain) are
/// punched out of the images they came from, as CRIU does while it reads them. Returns the
/// bytes punched.
pub fn punch_restored(dir: &Path) -> Result<u64, RestoreMemError> {
    let pstree = criu_proto::ImageReader::open(dir, &ImageKind::PSTREE, None)?
        .read_all::<criu_proto::images::PstreeEntry>()?;
    let mut punched = 0;
    let mut changed: BTreeSet<(PathBuf, String)> = BTreeSet::new();
    for pid in pstree.iter().map(|p| u64::from(p.pid)) {
        if !dir.join(ImageKind::PAGEMAP.file_name(Some(pid))).exists() {
            continue;
        }
        for source in crate::chain::read_chain(dir, pid)? {
            let pages = ImageKind::PAGES.file_name(Some(u64::from(source.pages_id)));
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(source.dir.join(&pages))
                .map_err(|e| io_err(&source.dir, format!("{pages}: {e}")))?;
            for run in &source.runs {
                let len = run.pages * PAGE_SIZE;
                punch_hole(&file, run.offset, len)
                    .map_err(|err| io_err(&source.dir, format!("{pages}: punch a hole: {err}")))?;
                punched += len;
            }
            changed.insert((source.dir.clone(), pages));
        }
    }
    update_manifests(changed)?;
    Ok(punched)
}

fn update_manifests(changed: BTreeSet<(PathBuf, String)>) -> Result<(), RestoreMemError> {
    let mut by_dir: std::collections::BTreeMap<PathBuf, Vec<String>> = Default::default();
    for (d, name) in changed {
        by_dir.entry(d).or_default().push(name);
    }
    for (d, names) in by_dir {
        criu_proto::manifest::update(&d, &names).map_err(|e| io_err(&d, e))?;
    }
    Ok(())
}

/// The pagemaps of `dir`: (kind, id) of every `pagemap-N.img` and `pagemap-shmem-N.img`.
fn pagemaps(dir: &Path) -> Result<Vec<(ImageKind, u64)>, RestoreMemError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let name = e.map_err(|e| io_err(dir, e))?.file_name();
        let name = name.to_string_lossy();
        let Some(rest) = name
            .strip_prefix("pagemap-")
            .and_then(|r| r.strip_suffix(".img"))
        else {
            continue;
        };
        let (kind, id) = match rest.strip_prefix("shmem-") {
            Some(id) => (ImageKind::SHMEM_PAGEMAP, id),
            None => (ImageKind::PAGEMAP, rest),
        };
        if let Ok(id) = id.parse::<u64>() {
            out.push((kind, id));
        }
    }
    Ok(out)
}

/// At `at` and every dump above it: punches the parts of `ranges` it holds itself, and looks
/// for every part its pagemap names further up. Returns the bytes punched.
fn punch_up(
    at: &Path,
    kind: &ImageKind,
    id: u64,
    mut ranges: Vec<(u64, u64)>,
    changed: &mut BTreeSet<(PathBuf, String)>,
) -> Result<u64, RestoreMemError> {
    let mut at = at.to_path_buf();
    let mut punched = 0;
    for _ in 0..1024 {
        if ranges.is_empty() || !at.join(kind.file_name(Some(id))).exists() {
            break;
        }
        let (pages_id, entries) = read_entries(&at, kind, id)?;
        let pages = ImageKind::PAGES.file_name(Some(u64::from(pages_id)));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(at.join(&pages))
            .map_err(|e| io_err(&at, format!("{pages}: {e}")))?;
        let mut next = Vec::new();
        for e in &entries {
            let (es, ee) = (e.vaddr, e.vaddr + e.pages * PAGE_SIZE);
            for &(s, t) in &ranges {
                let (s, t) = (s.max(es), t.min(ee));
                if s >= t {
                    continue;
                }
                next.push((s, t));
                if let Some(offset) = e.offset {
                    punch_hole(&file, offset + (s - es), t - s)
                        .map_err(|err| io_err(&at, format!("{pages}: punch a hole: {err}")))?;
                    punched += t - s;
                    changed.insert((at.clone(), pages.clone()));
                }
            }
        }
        ranges = next;
        at = at.join(PARENT_LINK);
        if !at.is_dir() {
            break;
        }
    }
    Ok(punched)
}

/// Frees `len` bytes at `offset` of `file`, which keeps its size (reads give zeros).
fn punch_hole(file: &std::fs::File, offset: u64, len: u64) -> nix::Result<()> {
    use nix::fcntl::FallocateFlags as F;
    let mode = F::FALLOC_FL_PUNCH_HOLE | F::FALLOC_FL_KEEP_SIZE;
    nix::fcntl::fallocate(file, mode, offset as i64, len as i64)
}
