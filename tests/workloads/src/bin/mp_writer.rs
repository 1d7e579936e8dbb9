//! A process that keeps rewriting its memory, for iterative (pre-)dumps: `mp_writer RESULT_DIR
//! SIZE_MIB`. It maps SIZE_MIB of private anonymous memory, fills each page with the pattern
//! of generation 1 and keeps a journal (one generation per page, in its own heap) of what each
//! page holds. Then it rewrites about 1% of its pages a second, in small batches every 10 ms,
//! bumping each page's generation. A page being written is named in `IN_PROGRESS` first.
//!
//! It writes its pid to RESULT_DIR/<role>.pid and "READY" to RESULT_DIR/<role> (role "parent").
//! On SIGUSR2 the parent maps 8 MiB more (filled and journaled the same way) and forks a child
//! ("child<N>", N counting the forks) that goes on writing over its copy-on-write copy of
//! everything, with its own copy of the journal; then it writes "MAPPED <N>" to
//! RESULT_DIR/parent.ack. On SIGUSR1 a process stops writing, checks every page against its
//! journal and writes "PASS" or "FAIL <where>" to RESULT_DIR/<role>.result, then sleeps.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

static GOT_USR1: AtomicBool = AtomicBool::new(false);
static GOT_USR2: AtomicBool = AtomicBool::new(false);
/// `region << 32 | page` of the page being written, or NONE.
static IN_PROGRESS: AtomicUsize = AtomicUsize::new(NONE);
const NONE: usize = usize::MAX;

extern "C" fn on_usr1(_: libc::c_int) {
    GOT_USR1.store(true, Ordering::SeqCst);
}

extern "C" fn on_usr2(_: libc::c_int) {
    GOT_USR2.store(true, Ordering::SeqCst);
}

const PAGE: usize = 4096;
const WORDS: usize = PAGE / 8;
const MIB: usize = 1 << 20;
const NEW_MAPPING: usize = 8 * MIB;

/// Word `w` of page `p` of region `r` at generation `g`.
fn word(r: usize, p: usize, g: u32, w: usize) -> u64 {
    ((r as u64) << 58) ^ ((p as u64) << 40) ^ (u64::from(g) << 16) ^ w as u64
}

/// One private anonymous mapping and the generation each of its pages holds.
struct Region {
    base: *mut u64,
    pages: usize,
    journal: Vec<u32>,
}

impl Region {
    /// Maps `bytes` and fills every page with generation 1.
    fn new(index: usize, bytes: usize) -> Region {
        // SAFETY: a fresh private mapping at a kernel-chosen address, checked for failure.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(at, libc::MAP_FAILED, "mmap");
        let mut region = Region {
            base: at.cast(),
            pages: bytes / PAGE,
            journal: vec![0; bytes / PAGE],
        };
        for p in 0..region.pages {
            region.write(index, p);
        }
        region
    }

    fn page(&mut self, p: usize) -> &mut [u64] {
        assert!(p < self.pages);
        // SAFETY: page p lies inside the mapping, which lives as long as the process and is
        // only reached through this region.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(p * WORDS), WORDS) }
    }

    /// Rewrites page `p` (of region `r`) with its next generation, journaled.
    fn write(&mut self, r: usize, p: usize) {
        let g = self.journal[p] + 1;
        // The SeqCst stores keep the compiler from moving the page's writes across them, so
        // that whenever the process is frozen, only the page named in IN_PROGRESS may be torn.
        IN_PROGRESS.store(r << 32 | p, Ordering::SeqCst);
        for (w, slot) in self.page(p).iter_mut().enumerate() {
            *slot = word(r, p, g, w);
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        self.journal[p] = g;
        IN_PROGRESS.store(NONE, Ordering::SeqCst);
    }

    /// The first word of the region that matches neither its journal's generation nor, for
    /// the page in progress, the next one.
    fn check(&mut self, r: usize) -> Result<(), String> {
        let busy = IN_PROGRESS.load(Ordering::SeqCst);
        for p in 0..self.pages {
            let g = self.journal[p];
            let torn = busy == (r << 32 | p);
            for (w, &got) in self.page(p).iter().enumerate() {
                if got != word(r, p, g, w) && !(torn && got == word(r, p, g + 1, w)) {
                    return Err(format!(
                        "region {r} page {p} word {w}: {got:#x}, journal says generation {g} \
                         ({:#x})",
                        word(r, p, g, w)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Writes `text` to RESULT_DIR/name through a temporary file, so a reader never sees it half
/// written.
fn put(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write result file");
    std::fs::rename(&tmp, dir.join(name)).expect("rename result file");
}

fn announce(dir: &Path, role: &str) {
    put(
        dir,
        &format!("{role}.pid"),
        &format!("{}\n", std::process::id()),
    );
    put(dir, role, "READY\n");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: mp_writer RESULT_DIR SIZE_MIB";
    let dir = PathBuf::from(args.next().expect(usage));
    let mib: usize = args.next().expect(usage).parse().expect(usage);
    // A session of its own, as the root of a dumped tree must lead one (or be a shell job).
    nix::unistd::setsid().expect("setsid");
    for (sig, f) in [
        (
            nix::sys::signal::Signal::SIGUSR1,
            on_usr1 as extern "C" fn(libc::c_int),
        ),
        (nix::sys::signal::Signal::SIGUSR2, on_usr2),
    ] {
        // SAFETY: the handlers only store to atomics.
        unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::Handler(f)) }
            .expect("signal");
    }

    let mut regions = vec![Region::new(0, mib * MIB)];
    let mut role = "parent".to_string();
    let mut forks = 0u32;
    let mut lcg: u64 = 0x2545_f491_4f6c_dd1d;
    announce(&dir, &role);

    while !GOT_USR1.load(Ordering::SeqCst) {
        if GOT_USR2.swap(false, Ordering::SeqCst) && role == "parent" {
            regions.push(Region::new(regions.len(), NEW_MAPPING));
            forks += 1;
            // SAFETY: single-threaded; the child goes on with its own copy of everything.
            match unsafe { nix::unistd::fork() }.expect("fork") {
                nix::unistd::ForkResult::Child => {
                    role = format!("child{forks}");
                    // Another sequence of pages, so that parent and child drift apart.
                    lcg ^= u64::from(forks).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    announce(&dir, &role);
                }
                nix::unistd::ForkResult::Parent { .. } => {
                    put(&dir, "parent.ack", &format!("MAPPED {forks}\n"));
                }
            }
        }
        // About 1% of all pages a second: 100 batches of total / 10,000 pages.
        let total: usize = regions.iter().map(|r| r.pages).sum();
        for _ in 0..(total / 10_000).max(1) {
            lcg = lcg
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let mut pick = (lcg >> 33) as usize % total;
            let r = regions
                .iter()
                .position(|reg| {
                    let here = pick < reg.pages;
                    if !here {
                        pick -= reg.pages;
                    }
                    here
                })
                .expect("page index within the regions");
            regions[r].write(r, pick);
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    let verdict = regions
        .iter_mut()
        .enumerate()
        .try_for_each(|(r, reg)| reg.check(r))
        .map_or_else(|why| format!("FAIL {why}\n"), |()| "PASS\n".to_string());
    put(&dir, &format!("{role}.result"), &verdict);
    loop {
        nix::unistd::pause();
    }
}
