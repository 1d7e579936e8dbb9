//! Memory workload for the dump/restore benchmark:
//! `bench_mem hold MIB READY_FILE` dirties MIB MiB of private anonymous memory, writes
//! READY_FILE, then waits;
//! `bench_mem touch MIB` prints how long first-touching MIB MiB of fresh memory takes (the
//! floor a restore is compared with).

#[path = "common/detach.rs"]
mod detach;

use std::time::Instant;

fn dirty(mib: usize) -> Vec<u8> {
    let mut v = vec![0u8; mib << 20];
    for (i, chunk) in v.chunks_mut(4096).enumerate() {
        chunk[0] = (i % 251) as u8 + 1;
        chunk[4095] = (i % 13) as u8 + 1;
    }
    v
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1024);
    match args.get(1).map(String::as_str) {
        Some("hold") => {
            detach::detach();
            let mem = dirty(mib);
            if let Some(ready) = args.get(3) {
                let _ = std::fs::write(ready, "ready");
            }
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                std::hint::black_box(&mem);
            }
        }
        Some("touch") => {
            let t = Instant::now();
            let mem = dirty(mib);
            let secs = t.elapsed().as_secs_f64();
            std::hint::black_box(&mem);
            println!("{secs:.3}");
        }
        _ => {
            eprintln!("usage: bench_mem hold MIB READY_FILE | bench_mem touch MIB");
            std::process::exit(2);
        }
    }
}
