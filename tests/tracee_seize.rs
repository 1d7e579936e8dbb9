//! Seizing and releasing real processes: a multi-threaded one, a tree that keeps forking and
//! starting threads while it is seized, and trees stopped through a freezer cgroup.

#[path = "workloads/src/harness.rs"]
mod harness;

use criu_tracee::{SeizeOptions, SeizedTree};
use harness::*;
use std::path::PathBuf;
use std::time::Duration;

/// Whether `tid` is a thread of this test process (TracerPid names the tracer thread).
fn ours(tid: i32) -> bool {
    threads(std::process::id() as i32).contains(&tid)
}

/// Every thread of every seized process is seized and stopped, and no live thread or child of
/// a seized process was missed.
fn assert_complete(tree: &SeizedTree) {
    for (&pid, p) in &tree.processes {
        for tid in threads(pid) {
            if matches!(state(pid, tid), Some('Z') | Some('X') | None) {
                continue;
            }
            assert!(
                p.threads.contains_key(&tid),
                "pid {pid}: thread {tid} not seized"
            );
        }
        for (&tid, t) in &p.threads {
            assert!(t.is_stopped(), "tid {tid} not stopped");
            assert_eq!(state(pid, tid), Some('t'), "tid {tid} state");
            assert!(
                ours(tracer(pid, tid)),
                "tid {tid} traced by {}",
                tracer(pid, tid)
            );
            let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/children"))
                .unwrap_or_default();
            for kid in kids
                .split_whitespace()
                .filter_map(|w| w.parse::<i32>().ok())
            {
                assert!(
                    tree.processes.contains_key(&kid) || tree.zombies.contains(&kid),
                    "child {kid} of {pid}/{tid} not in the tree"
                );
            }
        }
    }
}

#[test]
fn multithreaded_process_is_seized_and_runs_on_after_release() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut w = Workload::start("tw_spin", &["8"]);
    w.expect("READY", LONG);
    let tree = SeizedTree::seize(w.pid, &SeizeOptions::default()).unwrap();
    assert_eq!(tree.processes.len(), 1);
    assert_eq!(tree.thread_count(), 9, "main thread and 8 counters");
    assert_complete(&tree);
    let tids: Vec<i32> = tree.processes[&w.pid].threads.keys().copied().collect();
    tree.release().unwrap();
    for tid in tids {
        assert_eq!(tracer(w.pid, tid), 0, "tid {tid} still traced");
        assert_ne!(state(w.pid, tid), Some('t'), "tid {tid} still stopped");
    }
    w.send("check\n");
    assert_eq!(w.expect("ALIVE", LONG), vec!["8"]);
}

#[test]
fn busy_tree_is_seized_whole_while_it_forks_and_spawns() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut w = Workload::start("tw_forker", &["2"]);
    w.expect("READY", LONG);
    for round in 0..5 {
        let tree = SeizedTree::seize(w.pid, &SeizeOptions::default()).unwrap();
        // Root, 2 children, 4 grandchildren are long-lived; short-lived ones come and go.
        assert!(
            tree.processes.len() >= 7,
            "round {round}: only {} processes",
            tree.processes.len()
        );
        assert_complete(&tree);
        let seized: Vec<(i32, i32)> = tree
            .processes
            .iter()
            .flat_map(|(&p, proc_)| proc_.threads.keys().map(move |&t| (p, t)))
            .collect();
        tree.release().unwrap();
        for (pid, tid) in seized {
            assert_eq!(
                tracer(pid, tid),
                0,
                "round {round}: {pid}/{tid} still traced"
            );
        }
    }
    // Still forking: new processes keep appearing under the root.
    let before = descendants(w.pid);
    assert!(
        wait_until(LONG, || descendants(w.pid)
            .iter()
            .any(|p| !before.contains(p))),
        "tree stopped forking"
    );
    assert_eq!(w.wait_exit(Duration::from_millis(1)), None, "root died");
}

#[test]
fn a_thread_id_is_not_a_tree_root() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let w = Workload::start("tw_spin", &["2"]);
    w.expect("READY", LONG);
    let tid = threads(w.pid).into_iter().find(|&t| t != w.pid).unwrap();
    let err = SeizedTree::seize(tid, &SeizeOptions::default())
        .err()
        .expect("seizing a thread id must fail");
    assert!(err.to_string().contains("not a process"), "{err}");
    assert_eq!(tracer(w.pid, w.pid), 0);
}

/// A fresh cgroup directory under `base` holding process `pid`, removed on drop.
struct TestCgroup {
    dir: PathBuf,
    procs_file: &'static str,
}

impl TestCgroup {
    fn create(base: &str, procs_file: &'static str, pid: i32, tag: &str) -> Option<TestCgroup> {
        let base = PathBuf::from(base);
        if !base.is_dir() {
            return None;
        }
        let dir = base.join(format!("criu-tracee-test-{}-{tag}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        let cg = TestCgroup { dir, procs_file };
        std::fs::write(cg.dir.join(procs_file), pid.to_string()).ok()?;
        Some(cg)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("freezer.state"), "THAWED");
        let _ = std::fs::write(self.dir.join("cgroup.freeze"), "0");
        let procs = std::fs::read_to_string(self.dir.join(self.procs_file)).unwrap_or_default();
        for p in procs
            .split_whitespace()
            .filter_map(|w| w.parse::<i32>().ok())
        {
            kill_tree(p);
        }
        wait_until(Duration::from_secs(5), || {
            std::fs::remove_dir(&self.dir).is_ok()
        });
    }
}

fn seize_through_freezer(base: &str, procs_file: &str, tag: &str) {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut w = Workload::start("tw_spin", &["4"]);
    w.expect("READY", LONG);
    let procs_file: &'static str = if procs_file == "cgroup.procs" {
        "cgroup.procs"
    } else {
        "tasks"
    };
    let Some(cg) = TestCgroup::create(base, procs_file, w.pid, tag) else {
        eprintln!("skipped: cannot make a cgroup under {base}");
        return;
    };
    // Every thread must be in the cgroup (v1 "tasks" moves one thread; cgroup.procs all).
    for tid in threads(w.pid) {
        let _ = std::fs::write(cg.dir.join(procs_file), tid.to_string());
    }
    let opts = SeizeOptions {
        freeze_cgroup: Some(cg.dir.clone()),
        timeout: Duration::from_secs(10),
    };
    let tree = SeizedTree::seize(w.pid, &opts).unwrap();
    assert_eq!(tree.thread_count(), 5);
    assert_complete(&tree);
    let freezer = criu_cgroups::freezer::Freezer::open(&cg.dir).unwrap();
    assert!(
        !freezer.is_frozen().unwrap(),
        "cgroup left frozen after the seize"
    );
    tree.release().unwrap();
    w.send("check\n");
    assert_eq!(w.expect("ALIVE", LONG), vec!["4"]);
}

#[test]
fn tree_is_seized_through_a_v1_freezer() {
    seize_through_freezer("/sys/fs/cgroup/freezer", "cgroup.procs", "v1");
}

#[test]
fn tree_is_seized_through_a_v2_freezer() {
    seize_through_freezer("/sys/fs/cgroup/unified", "cgroup.procs", "v2");
}
