//! The demo's sample process: `counter FILE` appends 0, 1, 2, ... to FILE, one number every
//! 100 ms, keeping the count in memory, so a restored copy continues where the dump stopped.

#[path = "common/detach.rs"]
mod detach;

use std::io::Write;

fn main() {
    let path = std::env::args().nth(1).expect("usage: counter FILE");
    detach::detach();
    let mut n: u64 = 0;
    loop {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            let _ = writeln!(f, "{n}");
        }
        n += 1;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
