//! `criu __restore-watchdog`: the other half of `criu_actors::restore::watchdog`. Reads pids
//! on stdin and holds a pidfd of each; on "done" it exits, on end of input (criu is gone
//! before the tree was complete) it kills every task it was told about and their
//! descendants. It ignores the signals a terminal sends, so that a Ctrl-C meant for criu
//! does not take the switch away with it.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::os::fd::OwnedFd;

use criu_actors::restore::watchdog::DONE;

pub fn main() -> i32 {
    criu_sys::signals::ignore_terminal_signals();
    // Nothing of criu's (an RPC socket, inherited fds) stays open through the watchdog.
    let _ = criu_sys::fd::close_from(3);
    let mut watched: Vec<(i32, OwnedFd)> = Vec::new();
    // Pids told before their task existed (a fork about to happen).
    let mut pending: BTreeSet<i32> = BTreeSet::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line == DONE {
            return 0;
        }
        if let Ok(pid) = line.trim().parse::<i32>() {
            match criu_sys::pidfd::open(pid, 0) {
                Ok(fd) if !watched.iter().any(|(p, _)| *p == pid) => {
                    pending.remove(&pid);
                    watched.push((pid, fd));
                }
                Ok(_) => {}
                Err(_) => {
                    pending.insert(pid);
                }
            }
        }
    }
    // A pending pid counts if a process holds it now that started after this watchdog (the
    // fork happened): an older process with that pid is not ours.
    let me = criu_procfs::read_stat(std::process::id() as i32).map_or(u64::MAX, |s| s.start_time);
    for pid in pending {
        if let Ok(fd) = criu_sys::pidfd::open(pid, 0) {
            if criu_procfs::read_stat(pid).is_ok_and(|s| s.start_time >= me) {
                watched.push((pid, fd));
            }
        }
    }
    // criu is gone half-way: the tree goes with it. Every task is stopped first, and its
    // descendants found again until no new one appears (a parent stopped mid-fork still
    // gets its child, which stays its child); only then is everything killed, through
    // pidfds, so that a pid reused meanwhile is never hit.
    let mut known: BTreeSet<i32> = watched.iter().map(|(p, _)| *p).collect();
    for (_, fd) in &watched {
        let _ = criu_sys::pidfd::send_signal(fd, libc::SIGSTOP);
    }
    for _ in 0..100 {
        let new: Vec<i32> = descendants(&known)
            .into_iter()
            .filter(|p| !known.contains(p))
            .collect();
        if new.is_empty() {
            break;
        }
        for pid in new {
            if let Ok(fd) = criu_sys::pidfd::open(pid, 0) {
                let _ = criu_sys::pidfd::send_signal(&fd, libc::SIGSTOP);
                watched.push((pid, fd));
            }
            known.insert(pid);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    for (pid, fd) in &watched {
        if let Err(e) = criu_sys::pidfd::send_signal(fd, libc::SIGKILL) {
            if e != nix::errno::Errno::ESRCH {
                eprintln!("criu watchdog: cannot kill pid {pid}: {e}");
            }
        }
    }
    0
}

/// Every process below one of `roots`, from /proc's parent links.
fn descendants(roots: &BTreeSet<i32>) -> Vec<i32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if let Ok(stat) = criu_procfs::read_stat(pid) {
                parent_of.push((pid, stat.ppid));
            }
        }
    }
    let mut found: BTreeSet<i32> = roots.clone();
    loop {
        let before = found.len();
        for &(pid, ppid) in &parent_of {
            if found.contains(&ppid) {
                found.insert(pid);
            }
        }
        if found.len() == before {
            break;
        }
    }
    found.difference(roots).copied().collect()
}
