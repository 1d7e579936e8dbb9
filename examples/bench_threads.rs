//! Multi-threaded workload for the thread benchmark (`scripts/bench-tree.sh`):
//! `bench_threads hold N READY_FILE` starts N threads, each of which writes STACK_KIB KiB of its
//! own stack, writes READY_FILE once all of them are up, then everyone waits;
//! `bench_threads spawn N` prints how many seconds starting the same N threads takes until all
//! are up (the floor).

#[path = "common/detach.rs"]
mod detach;
#[path = "common/ready.rs"]
mod ready;

use std::sync::{Arc, Barrier};
use std::time::Instant;

/// Stack each thread dirties: a deep-ish call chain's worth.
const STACK_KIB: usize = 64;

#[inline(never)]
fn use_stack(seed: usize) {
    let mut buf = [0u8; STACK_KIB * 1024];
    for (i, page) in buf.chunks_mut(4096).enumerate() {
        page[0] = ((i + seed) % 251) as u8 + 1;
    }
    std::hint::black_box(&buf);
}

/// Starts `threads` threads; returns once every one has dirtied its stack. With `park` the
/// threads then wait forever.
fn start(threads: usize, park: bool) {
    let up = Arc::new(Barrier::new(threads + 1));
    for n in 0..threads {
        let up = up.clone();
        std::thread::Builder::new()
            .name(format!("bench-{n}"))
            .spawn(move || {
                use_stack(n);
                up.wait();
                if park {
                    ready::wait_forever();
                }
            })
            .expect("spawn thread");
    }
    up.wait();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: Option<usize> = args.get(2).and_then(|s| s.parse().ok());
    match (args.get(1).map(String::as_str), threads) {
        (Some("hold"), Some(threads)) if args.len() > 3 => {
            detach::detach();
            start(threads, true);
            ready::signal(&args[3]);
            ready::wait_forever();
        }
        (Some("spawn"), Some(threads)) => {
            let t = Instant::now();
            start(threads, true);
            println!("{:.6}", t.elapsed().as_secs_f64());
        }
        _ => {
            eprintln!("usage: bench_threads hold N READY_FILE | bench_threads spawn N");
            std::process::exit(2);
        }
    }
}
