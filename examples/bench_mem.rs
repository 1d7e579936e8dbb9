//! Memory workload and floors for the dump/restore benchmark (`scripts/bench-memory.sh`):
//! `bench_mem hold MIB READY_FILE` dirties MIB MiB of private anonymous memory, writes
//! READY_FILE, then waits. Whenever READY_FILE.check appears (after a restore), it checks every
//! page of that memory and writes "PASS" or "FAIL: ..." to READY_FILE.verdict.
//! `bench_mem writing MIB PERCENT READY_FILE` is `hold` that keeps writing PERCENT % of its
//! pages per second (in batches every 10 ms, each page rewritten with the value it holds, so
//! the check still holds), for the pre-dump benchmark (`scripts/bench-predump.sh`).
//! `bench_mem uffd IMAGE THREADS` prints the seconds it takes to put the bytes of IMAGE (a
//! pages image) into fresh anonymous memory of this process the way criu's restore does:
//! IMAGE mapped read-only, the fresh area watched by a userfaultfd, UFFDIO_COPY split over
//! THREADS threads (the restore floor: the same bytes, mechanism and threads).
//! `bench_mem memcpy IMAGE THREADS` prints the seconds a plain memcpy of IMAGE's bytes into
//! memory that is already there takes, source and destination faulted in beforehand, over
//! THREADS threads (the physical limit).

#[path = "common/detach.rs"]
mod detach;

use std::time::{Duration, Instant};

use criu_sys::mapping::{AnonMapping, FileMapping};
use criu_sys::uffd::Userfault;

const PAGE: usize = 4096;

fn page_value(i: usize) -> (u8, u8) {
    ((i % 251) as u8 + 1, (i % 13) as u8 + 1)
}

fn dirty(mib: usize) -> Vec<u8> {
    let mut v = vec![0u8; mib << 20];
    for (i, chunk) in v.chunks_mut(PAGE).enumerate() {
        let (first, last) = page_value(i);
        chunk[0] = first;
        chunk[PAGE - 1] = last;
    }
    v
}

/// "PASS", or what differs from what `dirty` wrote.
fn verify(mem: &[u8]) -> String {
    for (i, page) in mem.chunks(PAGE).enumerate() {
        let (first, last) = page_value(i);
        let middle_zero = page[1..PAGE - 1].iter().all(|&b| b == 0);
        if page[0] != first || page[PAGE - 1] != last || !middle_zero {
            return format!("FAIL: page {i} of {} differs", mem.len() / PAGE);
        }
    }
    "PASS".into()
}

fn hold(mib: usize, ready: &str, percent: usize) -> ! {
    detach::detach();
    let mut mem = dirty(mib);
    let pages = mem.len() / PAGE;
    // Pages per 10 ms batch, and where the next write goes (a simple LCG).
    let batch = (pages * percent).div_ceil(100 * 100);
    let mut at = 1usize;
    let tmp = format!("{ready}.tmp");
    let _ = std::fs::write(&tmp, "ready");
    let _ = std::fs::rename(&tmp, ready);
    let check = format!("{ready}.check");
    loop {
        if std::fs::remove_file(&check).is_ok() {
            let _ = std::fs::write(&tmp, verify(&mem));
            let _ = std::fs::rename(&tmp, format!("{ready}.verdict"));
        }
        for _ in 0..batch {
            at = at
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let page = (at >> 20) % pages;
            let v = page_value(page).0;
            std::hint::black_box(&mut mem[page * PAGE..])[0] = v;
        }
        std::thread::sleep(Duration::from_millis(if batch > 0 { 10 } else { 20 }));
    }
}

/// `total` bytes cut into `threads` page-aligned (offset, len) parts.
fn parts(total: usize, threads: usize) -> Vec<(usize, usize)> {
    let pages = total.div_ceil(PAGE);
    let per = pages.div_ceil(threads.max(1)) * PAGE;
    (0..total)
        .step_by(per.max(PAGE))
        .map(|off| (off, per.min(total - off)))
        .collect()
}

fn open_image(path: &str) -> FileMapping {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    FileMapping::new(&file).unwrap_or_else(|e| panic!("map {path}: {e}"))
}

/// The restore floor: UFFDIO_COPY from a fresh mapping of the image into fresh memory.
fn uffd_fill(image: &str, threads: usize) -> f64 {
    let t = Instant::now();
    let src = open_image(image);
    let bytes = src.bytes();
    let dst = AnonMapping::new(bytes.len()).expect("map fresh memory");
    let uffd = Userfault::for_this_process().expect("userfaultfd");
    uffd.register(dst.addr(), dst.len() as u64)
        .expect("register fresh memory");
    std::thread::scope(|s| {
        for (off, len) in parts(bytes.len(), threads) {
            let (uffd, dst) = (&uffd, &dst);
            s.spawn(move || {
                uffd.copy(dst.addr() + off as u64, &bytes[off..off + len])
                    .expect("UFFDIO_COPY");
            });
        }
    });
    let secs = t.elapsed().as_secs_f64();
    uffd.unregister(dst.addr(), dst.len() as u64)
        .expect("unregister");
    assert_eq!(dst.bytes(), bytes, "UFFDIO_COPY put other bytes");
    secs
}

/// The physical limit: memcpy between memory that is all there already.
fn plain_copy(image: &str, threads: usize) -> f64 {
    let src = open_image(image);
    let bytes = src.bytes();
    let mut sum = 0u64;
    for page in bytes.chunks(PAGE) {
        sum = sum.wrapping_add(u64::from(page[0]));
    }
    std::hint::black_box(sum);
    let mut dst = AnonMapping::new(bytes.len()).expect("map memory");
    for page in dst.bytes_mut().chunks_mut(PAGE) {
        page[0] = 1;
    }
    let t = Instant::now();
    std::thread::scope(|s| {
        let mut rest = dst.bytes_mut();
        for (off, len) in parts(bytes.len(), threads) {
            let (mine, later) = rest.split_at_mut(len);
            rest = later;
            s.spawn(move || mine.copy_from_slice(&bytes[off..off + len]));
        }
    });
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(dst.bytes(), bytes);
    secs
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let threads = || arg(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    match (arg(1), arg(2)) {
        (Some("hold"), Some(mib)) => {
            let mib = mib.parse().expect("MIB");
            hold(mib, arg(3).expect("READY_FILE"), 0)
        }
        (Some("writing"), Some(mib)) => {
            let mib = mib.parse().expect("MIB");
            let percent = arg(3).and_then(|p| p.parse().ok()).expect("PERCENT");
            hold(mib, arg(4).expect("READY_FILE"), percent)
        }
        (Some("uffd"), Some(image)) => println!("{:.3}", uffd_fill(image, threads())),
        (Some("memcpy"), Some(image)) => println!("{:.3}", plain_copy(image, threads())),
        _ => {
            eprintln!(
                "usage: bench_mem hold MIB READY_FILE | bench_mem writing MIB PERCENT READY_FILE | \
                 bench_mem uffd IMAGE THREADS | bench_mem memcpy IMAGE THREADS"
            );
            std::process::exit(2);
        }
    }
}
