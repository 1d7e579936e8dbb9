//! Many-descriptor workload for the fd benchmark (`scripts/bench-tree.sh`):
//! `bench_fds hold N DIR READY_FILE` opens N descriptors, half of them regular files
//! DIR/f<i> (read-write, created if missing), half pipe ends (N/4 pipes, both ends kept),
//! writes READY_FILE, then waits;
//! `bench_fds open N DIR` prints how many seconds opening the same descriptors takes in this
//! fresh process (the floor).

#[path = "common/detach.rs"]
mod detach;
#[path = "common/ready.rs"]
mod ready;

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Instant;

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Lets this process hold N descriptors: the soft limit is often 1024.
fn raise_fd_limit() {
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn open_all(fds: usize, dir: &Path) -> (Vec<File>, Vec<(OwnedFd, OwnedFd)>) {
    let files = (0..fds / 2)
        .map(|i| {
            let path = dir.join(format!("f{i}"));
            File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
        })
        .collect();
    let pipes = (0..fds / 4)
        .map(|_| nix::unistd::pipe().unwrap_or_else(|e| panic!("pipe: {e}")))
        .collect();
    (files, pipes)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let fds: Option<usize> = args.get(2).and_then(|s| s.parse().ok());
    match (args.get(1).map(String::as_str), fds, args.get(3)) {
        (Some("hold"), Some(fds), Some(dir)) if args.len() > 4 => {
            detach::detach();
            raise_fd_limit();
            let held = open_all(fds, Path::new(dir));
            ready::signal(&args[4]);
            std::hint::black_box(&held);
            ready::wait_forever();
        }
        (Some("open"), Some(fds), Some(dir)) => {
            raise_fd_limit();
            let t = Instant::now();
            let held = open_all(fds, Path::new(dir));
            let secs = t.elapsed().as_secs_f64();
            std::hint::black_box(&held);
            println!("{secs:.6}");
        }
        _ => {
            eprintln!("usage: bench_fds hold N DIR READY_FILE | bench_fds open N DIR");
            std::process::exit(2);
        }
    }
}
