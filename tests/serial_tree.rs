//! Process trees and threads through `criu dump` and `criu restore`, both ours: a ~1000-process
//! tree (tests/workloads/src/bin/tr_tree.rs) with deep and wide parts, sessions and groups
//! whose leaders are gone, an orphan handed to the child-subreaper root and a stopped task, must
//! come back with the same pids, parents, sessions, groups and states; a 50-thread process
//! (tr_threads.rs) with the same thread ids, per-thread masks, creds, signal stacks and TLS, its
//! threads going on from their futex and read(2) waits. The workloads check themselves from
//! inside after the restore too. Runs in the nextest `serial` group: restores claim exact pids.

#[path = "workloads/src/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use harness::{bin, descendants, kill_tree, require_root, threads, wait_until};

fn criu(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .arg("--no-default-config")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run criu")
}

/// (ppid, sid, pgid, state) of a process, from /proc/PID/stat.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ids {
    ppid: i32,
    sid: i32,
    pgid: i32,
    state: char,
}

fn ids(pid: i32) -> Option<Ids> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Ids {
        state: f[0].chars().next()?,
        ppid: f[1].parse().ok()?,
        pgid: f[2].parse().ok()?,
        sid: f[3].parse().ok()?,
    })
}

/// The tree under `root`; the root's parent is left out (the test before, criu after).
fn tree_of(root: i32) -> BTreeMap<i32, Ids> {
    let mut tree: BTreeMap<i32, Ids> = descendants(root)
        .into_iter()
        .filter_map(|p| Some((p, ids(p)?)))
        .collect();
    if let Some(r) = tree.get_mut(&root) {
        r.ppid = 0;
    }
    tree
}

/// The workload, its tree killed when dropped.
struct Tree {
    child: Option<Child>,
    pid: i32,
    result: std::path::PathBuf,
}

impl Tree {
    fn start(name: &str, dir: &Path, arg: &str) -> Tree {
        let result = dir.join("result");
        let child = Command::new(bin(name))
            .arg(&result)
            .arg(arg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let pid = child.id() as i32;
        let tree = Tree {
            child: Some(child),
            pid,
            result,
        };
        assert!(
            wait_until(Duration::from_secs(120), || tree
                .result()
                .starts_with("READY")),
            "{name} never got ready: {}",
            tree.result()
        );
        tree
    }

    fn result(&self) -> String {
        std::fs::read_to_string(&self.result).unwrap_or_default()
    }

    /// Reaps the original root after the dump killed the tree and waits until every pid of
    /// the tree is free again.
    fn wait_gone(&mut self, pids: &[i32]) {
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        let gone = wait_until(Duration::from_secs(60), || {
            pids.iter()
                .all(|p| !Path::new(&format!("/proc/{p}")).exists())
        });
        assert!(gone, "the dumped tree did not go away");
    }

    /// Asks the restored root to check itself; its verdict.
    fn verdict(&self) -> String {
        let _ = std::fs::remove_file(&self.result);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .unwrap();
        wait_until(Duration::from_secs(60), || {
            let r = self.result();
            r.starts_with("PASS") || r.starts_with("FAIL")
        });
        self.result()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        kill_tree(self.pid);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn dump(pid: i32, dir: &Path) {
    let pid = pid.to_string();
    let out = criu(
        &["dump", "-t", &pid, "-D", "images", "-o", "dump.log", "-v4"],
        dir,
        &[],
    );
    let log = std::fs::read_to_string(dir.join("images/dump.log")).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "dump failed: {out:?}\n{log}");
}

/// Restores the images in `dir`. Only the loss of a pid to another program of the machine is
/// returned as an error (a busy machine can do that to a restore in criu's pid namespace);
/// any other failure fails the test.
fn restore(dir: &Path, env: &[(&str, &str)]) -> Result<(), String> {
    let out = criu(
        &["restore", "-D", "images", "-o", "restore.log", "-v4", "-d"],
        dir,
        env,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let pid_taken = stderr.contains(" is in use by ")
        || stderr.contains("errno 17")
        || stderr.contains("EEXIST");
    if out.status.code() != Some(0) && pid_taken {
        return Err(stderr.into_owned());
    }
    let log = std::fs::read_to_string(dir.join("images/restore.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    assert_eq!(
        out.status.code(),
        Some(0),
        "restore failed: {out:?}\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    Ok(())
}

/// Runs a round trip again (up to five times in all) when another program took a pid: this
/// machine forks a lot, and with ns_last_pid every fork of another program while criu holds
/// the counter back lands in the tree's pids.
fn with_retries(what: impl Fn() -> Result<(), String>) {
    let mut lost = Vec::new();
    for _ in 0..5 {
        match what() {
            Ok(()) => return,
            Err(e) => lost.push(e),
        }
    }
    panic!("other programs took the tree's pids five times: {lost:#?}");
}

/// The `key=value` numbers of the READY line.
fn ready_values(line: &str) -> BTreeMap<String, i32> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

/// Dumps and restores a tr_tree of about `scale` processes; everything must come back.
fn tree_round_trip(scale: usize, env: &[(&str, &str)]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    let mut tree = Tree::start("tr_tree", dir.path(), &scale.to_string());
    let ready = ready_values(&tree.result());
    let before = tree_of(tree.pid);
    assert!(
        before.len() + 20 >= scale,
        "only {} processes for scale {scale}",
        before.len()
    );
    // The tree has what the test is about.
    let (b, t, s, g, l) = (ready["b"], ready["t"], ready["s"], ready["g"], ready["l"]);
    assert_eq!(
        before[&b].ppid, tree.pid,
        "the orphan went to the subreaper root"
    );
    assert_eq!(before[&t].state, 'T');
    assert_eq!(before[&ready["t2"]].state, 'T');
    for gone in [s, g, l] {
        assert!(!before.contains_key(&gone), "{gone} should have exited");
    }
    assert!(before.values().filter(|i| i.sid == s).count() >= 3);
    assert!(before.values().any(|i| i.pgid == g));
    assert!(before.values().any(|i| i.pgid == l));
    let born_before_setsid = before.iter().any(|(pid, i)| {
        let parent = &before.get(&i.ppid);
        parent.is_some_and(|p| p.sid == i.ppid && i.sid != i.ppid && i.sid != *pid) && i.sid != s
    });
    assert!(
        born_before_setsid,
        "no child forked before its parent's setsid"
    );
    let pids: Vec<i32> = before.keys().copied().collect();
    dump(tree.pid, dir.path());
    tree.wait_gone(&pids);
    restore(dir.path(), env)?;
    // Just released tasks may still be on their way back to sleep.
    wait_until(Duration::from_secs(20), || tree_of(tree.pid) == before);
    let after = tree_of(tree.pid);
    let differ: Vec<String> = before
        .iter()
        .filter(|(p, i)| after.get(p) != Some(i))
        .take(10)
        .map(|(p, i)| format!("{p}: {i:?} -> {:?}", after.get(p)))
        .collect();
    assert!(differ.is_empty(), "restored tree differs: {differ:#?}");
    assert_eq!(before.len(), after.len(), "extra processes after restore");
    assert_eq!(tree.verdict(), "PASS\n");
    Ok(())
}

#[test]
fn thousand_process_tree_comes_back_exactly() {
    require_root();
    with_retries(|| tree_round_trip(1000, &[]));
}

#[test]
fn tree_comes_back_exactly_with_pids_from_ns_last_pid() {
    require_root();
    with_retries(|| tree_round_trip(40, &[(criu_sys::clone::NS_LAST_PID_ENV, "1")]));
}

/// Per-thread lines of /proc/PID/task/TID/status that a restore keeps, and the syscall each
/// thread waits in.
fn thread_states(pid: i32) -> BTreeMap<i32, String> {
    threads(pid)
        .into_iter()
        .map(|tid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
            let mut keep: Vec<&str> = status
                .lines()
                .filter(|l| {
                    ["State:", "Uid:", "Gid:", "CapEff:", "SigBlk:"]
                        .iter()
                        .any(|k| l.starts_with(k))
                })
                // The main thread waits in sigtimedwait, which unblocks what it waits for.
                .filter(|l| tid != pid || !l.starts_with("SigBlk:"))
                .collect();
            let syscall =
                std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).unwrap();
            let nr = syscall.split_whitespace().next().unwrap_or("").to_string();
            keep.push(&nr);
            (tid, keep.join(" | "))
        })
        .collect()
}

fn threads_round_trip(n: usize, env: &[(&str, &str)]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    let mut task = Tree::start("tr_threads", dir.path(), &n.to_string());
    let before = thread_states(task.pid);
    assert_eq!(before.len(), n);
    let uids: Vec<&String> = before
        .values()
        .filter(|s| s.contains("Uid:\t1000"))
        .collect();
    assert_eq!(uids.len(), 1, "one thread has its own uids: {before:#?}");
    dump(task.pid, dir.path());
    task.wait_gone(&[task.pid]);
    restore(dir.path(), env)?;
    assert!(
        wait_until(Duration::from_secs(10), || thread_states(task.pid)
            == before),
        "threads differ after restore:\n{before:#?}\n{:#?}",
        thread_states(task.pid)
    );
    assert_eq!(task.verdict(), "PASS\n");
    Ok(())
}

#[test]
fn fifty_threads_keep_their_ids_and_state() {
    require_root();
    with_retries(|| threads_round_trip(50, &[]));
}

#[test]
fn threads_get_their_ids_from_ns_last_pid() {
    require_root();
    with_retries(|| threads_round_trip(12, &[(criu_sys::clone::NS_LAST_PID_ENV, "1")]));
}
