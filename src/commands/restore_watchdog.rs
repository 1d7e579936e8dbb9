//! `criu __restore-watchdog`: the other half of `criu_actors::restore::watchdog`. Reads pids
//! on stdin and holds a pidfd of each; on "done" it exits, on end of input (criu is gone
//! before the tree was complete) it kills every task it was told about and their
//! descendants. It ignores the signals a terminal sends, so that a Ctrl-C meant for criu
//! does not take the switch away with it.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::os::fd::OwnedFd;

use criu_actors::restore::watchdog::DONE;
use nix::sys::signal::Signal;

pub fn main() -> i32 {
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGPIPE,
    ] {
        let _ = criu_sys::signals::ignore(sig);
    }
    // Nothing of criu's (an RPC socket, inherited fds) stays open through the watchdog.
    let _ = criu_sys::fd::close_from(3);
    let mut watched: Vec<(i32, OwnedFd)> = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line == DONE {
            return 0;
        }
        if let Ok(pid) = line.trim().parse::<i32>() {
            match criu_sys::pidfd::open(pid, 0) {
                Ok(fd) => watched.push((pid, fd)),
                Err(e) => eprintln!("criu watchdog: pid {pid}: {e}"),
            }
        }
    }
    // criu is gone half-way: the tree goes with it. Descendants first found, then killed
    // through pidfds, so that a pid reused meanwhile is never hit.
    let roots: BTreeSet<i32> = watched.iter().map(|(p, _)| *p).collect();
    let mut extra = Vec::new();
    for pid in descendants(&roots) {
        if let Ok(fd) = criu_sys::pidfd::open(pid, 0) {
            extra.push((pid, fd));
        }
    }
    for (pid, fd) in watched.iter().chain(&extra) {
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
