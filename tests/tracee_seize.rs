//! Seizing and releasing real processes: a multi-threaded one, a tree that keeps forking and
//! starting threads while it is seized, and trees stopped through a freezer cgroup.
//!
//! Missing kernel features: a test never passes without doing its work. The freezer tests need
//! a cgroup v1 hierarchy with the freezer controller (`*_v1_freezer`), or cgroup v2 with
//! `cgroup.freeze` (Linux 5.2+, `*_v2_freezer`), found in /proc/self/mountinfo wherever they
//! are mounted. Where the machine lacks one, its test fails, naming the missing feature. To
//! run the rest on such a machine, leave the test out by name, e.g.
//! `cargo nextest run -E 'not test(v1_freezer)'`: nextest counts a test left out as skipped,
//! so the summary shows it.

#[path = "workloads/src/harness.rs"]
mod harness;

use criu_tracee::{SeizeOptions, SeizedTree};
use harness::*;
use std::path::{Path, PathBuf};
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
    require_root();
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
    require_root();
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
    assert_eq!(
        w.wait_exit(Duration::ZERO),
        Exit::TimedOut,
        "the root must still run"
    );
}

#[test]
fn a_thread_id_is_not_a_tree_root() {
    require_root();
    let w = Workload::start("tw_spin", &["2"]);
    w.expect("READY", LONG);
    let tid = threads(w.pid).into_iter().find(|&t| t != w.pid).unwrap();
    let err = SeizedTree::seize(tid, &SeizeOptions::default())
        .err()
        .expect("seizing a thread id must fail");
    assert!(err.to_string().contains("not a process"), "{err}");
    assert_eq!(tracer(w.pid, w.pid), 0);
}

/// Where this machine mounts a cgroup hierarchy: a v1 one with `controller`, or (None) v2.
fn cgroup_mount(controller: Option<&str>) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mount_point = left.split_whitespace().nth(4)?;
        let mut r = right.split_whitespace();
        let fstype = r.next()?;
        let opts = r.nth(1)?;
        let hit = match controller {
            Some(c) => fstype == "cgroup" && opts.split(',').any(|o| o == c),
            None => fstype == "cgroup2",
        };
        hit.then(|| PathBuf::from(mount_point))
    })
}

/// A fresh cgroup directory under `base` holding process `pid`, removed on drop.
struct TestCgroup {
    dir: PathBuf,
}

impl TestCgroup {
    fn create(base: &Path, pid: i32, tag: &str) -> TestCgroup {
        let dir = base.join(format!("criu-tracee-test-{}-{tag}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let cg = TestCgroup { dir };
        cg.add(pid);
        cg
    }

    /// Moves `pid` (with all its threads) into the cgroup.
    fn add(&self, pid: i32) {
        let procs = self.dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .unwrap_or_else(|e| panic!("write {pid} to {}: {e}", procs.display()));
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("freezer.state"), "THAWED");
        let _ = std::fs::write(self.dir.join("cgroup.freeze"), "0");
        let procs = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
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

fn seize_through_freezer(base: &Path, tag: &str) {
    let mut w = Workload::start("tw_spin", &["4"]);
    w.expect("READY", LONG);
    let cg = TestCgroup::create(base, w.pid, tag);
    for tid in threads(w.pid) {
        let cgroup = std::fs::read_to_string(format!("/proc/{}/task/{tid}/cgroup", w.pid))
            .unwrap_or_default();
        let name = cg.dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            cgroup.contains(&name),
            "thread {tid} not in {name}: {cgroup}"
        );
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

/// Panics naming a kernel feature this machine lacks, and how to leave the test out.
fn missing_feature(feature: &str, filter: &str) -> ! {
    panic!(
        "this machine lacks {feature}: the test cannot run here. To run the rest, leave it \
         out: cargo nextest run -E 'not test({filter})' (nextest counts it as skipped)"
    )
}

#[test]
fn tree_is_seized_through_a_v1_freezer() {
    require_root();
    let Some(base) = cgroup_mount(Some("freezer")) else {
        missing_feature(
            "a cgroup v1 hierarchy with the freezer controller",
            "v1_freezer",
        )
    };
    seize_through_freezer(&base, "v1");
}

#[test]
fn tree_is_seized_through_a_v2_freezer() {
    require_root();
    let Some(base) = cgroup_mount(None) else {
        missing_feature("a cgroup v2 hierarchy", "v2_freezer")
    };
    // cgroup.freeze exists in every non-root v2 cgroup from Linux 5.2 on.
    let probe = base.join(format!("criu-tracee-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).unwrap_or_else(|e| panic!("mkdir {}: {e}", probe.display()));
    let has_freeze = probe.join("cgroup.freeze").exists();
    std::fs::remove_dir(&probe).unwrap();
    if !has_freeze {
        missing_feature(
            "the cgroup v2 freezer (cgroup.freeze, Linux 5.2+)",
            "v2_freezer",
        );
    }
    seize_through_freezer(&base, "v2");
}
