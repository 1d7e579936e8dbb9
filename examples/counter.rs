//! The demo's sample process: `counter FILE` appends 0, 1, 2, ... to FILE, one number every
//! 100 ms, keeping the count in memory, so a restored copy continues where the dump stopped.

use std::io::Write;

fn main() {
    let path = std::env::args().nth(1).expect("usage: counter FILE");
    // A checkpointed tree must be its own session, and should hold no fds it inherited from
    // whoever started it (they could be pipes to a terminal that will be gone).
    let _ = nix::unistd::setsid();
    let inherited: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).filter(|fd| *fd > 2).collect())
        .unwrap_or_default();
    for fd in inherited {
        let _ = nix::unistd::close(fd);
    }
    let mut n: u64 = 0;
    loop {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
            let _ = writeln!(f, "{n}");
        }
        n += 1;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
