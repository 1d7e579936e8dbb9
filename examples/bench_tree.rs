//! Process-tree workload for the tree benchmarks (`scripts/bench-tree.sh`):
//! `bench_tree hold N MIB dirty|shared READY_FILE`: this process, the root, dirties MIB MiB of
//! private anonymous memory and forks N-1 children. With `dirty` every child then rewrites its
//! copy, so each task owns MIB MiB of pages; with `shared` the children leave it alone and the
//! pages stay shared copy-on-write with the root. Writes READY_FILE once every child is ready,
//! then everyone waits.
//! `bench_tree build N MIB dirty|shared`: builds the same tree, prints how many seconds that
//! took (the restore floor), then kills it.
//! `bench_tree forkexit N`: forks N children that exit at once, reaps them and prints the
//! seconds (the per-task floor of a tree with little memory).

#[path = "common/detach.rs"]
mod detach;
#[path = "common/fork.rs"]
mod fork;
#[path = "common/ready.rs"]
mod ready;

use std::time::Instant;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

/// Writes every page of `mem` so that this task owns its own copy.
fn dirty(mem: &mut [u8], seed: usize) {
    for (i, page) in mem.chunks_mut(4096).enumerate() {
        page[0] = ((i + seed) % 251) as u8 + 1;
        if let Some(last) = page.last_mut() {
            *last = ((i + seed) % 13) as u8 + 1;
        }
    }
}

/// Builds the tree; returns the children's pids (in the root) or never returns (children).
/// Children wait forever; with `die_with_root` they are killed when the root exits.
fn build(tasks: usize, mib: usize, dirty_children: bool, die_with_root: bool) -> Vec<i32> {
    let mut mem = vec![0u8; mib << 20];
    dirty(&mut mem, 0);
    let mut pipe = fork::ReadyPipe::new();
    let mut children = Vec::with_capacity(tasks.saturating_sub(1));
    for n in 1..tasks {
        let pid = fork::fork();
        if pid == 0 {
            pipe.child_started();
            if die_with_root {
                let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            }
            if dirty_children {
                dirty(&mut mem, n);
            }
            pipe.child_ready();
            std::hint::black_box(&mem);
            ready::wait_forever();
        }
        children.push(pid);
    }
    pipe.wait_all();
    std::hint::black_box(&mem);
    std::mem::forget(mem);
    children
}

fn usage() -> ! {
    eprintln!(
        "usage: bench_tree hold N MIB dirty|shared READY_FILE | bench_tree build N MIB dirty|shared | bench_tree forkexit N"
    );
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let number = |i: usize| -> usize {
        args.get(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| usage())
    };
    let dirty_children = || match args.get(4).map(String::as_str) {
        Some("dirty") => true,
        Some("shared") => false,
        _ => usage(),
    };
    match args.get(1).map(String::as_str) {
        Some("hold") => {
            let (tasks, mib, dirty_children) = (number(2), number(3), dirty_children());
            let ready_file = args.get(5).unwrap_or_else(|| usage());
            detach::detach();
            build(tasks, mib, dirty_children, false);
            ready::signal(ready_file);
            ready::wait_forever();
        }
        Some("build") => {
            let (tasks, mib, dirty_children) = (number(2), number(3), dirty_children());
            let t = Instant::now();
            let children = build(tasks, mib, dirty_children, true);
            let secs = t.elapsed().as_secs_f64();
            for pid in &children {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
            for pid in &children {
                let _ = waitpid(Pid::from_raw(*pid), None);
            }
            println!("{secs:.6}");
        }
        Some("forkexit") => {
            let tasks = number(2);
            let t = Instant::now();
            let mut children = Vec::with_capacity(tasks);
            for _ in 0..tasks {
                let pid = fork::fork();
                if pid == 0 {
                    std::process::exit(0);
                }
                children.push(pid);
            }
            for pid in &children {
                let _ = waitpid(Pid::from_raw(*pid), None);
            }
            println!("{:.6}", t.elapsed().as_secs_f64());
        }
        _ => usage(),
    }
}
