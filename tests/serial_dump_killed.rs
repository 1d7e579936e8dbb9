//! SIGKILL to `criu dump -R --tcp-established` at random moments of a dump of kd_tree (two
//! processes, six threads, a pipe, a socket pair and a loopback TCP connection in use, 64 MiB
//! of memory): criu can clean nothing up, yet afterwards every task runs on untraced and not
//! stopped, with the same memory map, no network lock is left, and each checks itself (memory,
//! registers of every thread, the exchange between the processes).
//! The number of tries is `KILL_TRIES` (default 30; the note's figures come from
//! `KILL_TRIES=1000`). Delays are spread over the time one whole dump takes here.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{
    descendants, free_running, lock_rules, maps, require_root, threads, wait_until, LONG,
};
use state_task::{Argv, StateTask};

fn start_tree(dir: &Path) -> StateTask {
    let task = StateTask::workload("kd_tree")
        .argv(Argv::ArgsResult)
        .start(dir);
    std::fs::create_dir(dir.join("images")).unwrap();
    assert!(
        wait_until(LONG, || descendants(task.pid).len() == 2
            && threads(task.pid).len() >= 4),
        "kd_tree did not start its child and threads"
    );
    task
}

fn dump(dir: &Path, pid: i32) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .args(["--no-default-config", "dump", "-R", "-t", &pid.to_string()])
        .args(["-D", "images", "-o", "dump.log", "-v4", "--tcp-established"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A small xorshift generator seeded from the clock: the moments differ from run to run.
struct Moments(u64);

impl Moments {
    fn next_below(&mut self, limit: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_micros(self.0 % limit.as_micros().max(1) as u64)
    }
}

#[test]
fn a_dump_killed_at_any_moment_leaves_the_tree_running_unharmed() {
    require_root();
    let tries: u32 = std::env::var("KILL_TRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);

    // One whole dump first: how long the kills must be spread over.
    let dir = tempfile::tempdir().unwrap();
    let task = start_tree(dir.path());
    let t = Instant::now();
    assert!(dump(dir.path(), task.pid).wait().unwrap().success());
    let whole = t.elapsed();
    assert_eq!(task.verdict(), "PASS\n", "after a whole dump");
    drop(task);

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut moments = Moments(seed | 1);
    let (mut finished, mut midway) = (0, 0);
    for i in 0..tries {
        let dir = tempfile::tempdir().unwrap();
        let task = start_tree(dir.path());
        let pids = descendants(task.pid);
        let maps_before: Vec<String> = pids.iter().map(|&p| maps(p)).collect();
        let mut criu = dump(dir.path(), task.pid);
        std::thread::sleep(moments.next_below(whole));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(criu.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let status = criu.wait().unwrap();
        let log = std::fs::read_to_string(dir.path().join("images/dump.log")).unwrap_or_default();
        if status.success() {
            finished += 1;
        } else {
            midway += 1;
        }
        let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join("\n");
        for (&pid, before) in pids.iter().zip(&maps_before) {
            assert!(
                wait_until(LONG, || free_running(pid)),
                "try {i}: pid {pid} still traced or stopped; log ends:\n{tail}"
            );
            // An injected call in flight ends before its task lands back.
            if !wait_until(LONG, || maps(pid) == *before) {
                let after = maps(pid);
                let gone: Vec<&str> = before.lines().filter(|l| !after.contains(l)).collect();
                let new: Vec<&str> = after.lines().filter(|l| !before.contains(l)).collect();
                panic!("try {i}: pid {pid}: memory map changed: {gone:?} -> {new:?}; log ends:\n{tail}");
            }
        }
        assert!(
            wait_until(LONG, || lock_rules(None).is_empty()),
            "try {i}: lock rules left: {:?}; log ends:\n{tail}",
            lock_rules(None)
        );
        assert_eq!(task.verdict(), "PASS\n", "try {i}; log ends:\n{tail}");
    }
    eprintln!(
        "{tries} SIGKILLs over {whole:?}: {finished} dumps finished first, {midway} killed mid-way"
    );
    assert!(
        midway > 0,
        "no SIGKILL came during a dump: the test proves nothing"
    );
}
