//! A multi-threaded process: N threads each count in a loop. On a "check" line on stdin it
//! prints how many threads moved on during 50 ms ("ALIVE n"); EOF ends it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(4);
    let counters: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    for i in 0..n {
        let c = counters.clone();
        std::thread::spawn(move || loop {
            c[i].fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_micros(200));
        });
    }
    criu_test_workloads::say(&format!("READY {}", std::process::id()));
    while let Some(line) = criu_test_workloads::read_stdin_line() {
        if line == "check" {
            let before: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
            std::thread::sleep(Duration::from_millis(50));
            let alive = counters
                .iter()
                .zip(&before)
                .filter(|(c, b)| c.load(Ordering::Relaxed) > **b)
                .count();
            criu_test_workloads::say(&format!("ALIVE {alive}"));
        }
    }
}
