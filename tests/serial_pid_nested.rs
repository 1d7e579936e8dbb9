//! Pid namespaces nested inside a dumped tree (CRIU refuses them), made with Debian's
//! `unshare --pid --fork`: every task keeps its pid at every level below criu's, the nested
//! init is still its namespace's init for the children it forks after the restore, and the
//! `unshare` process still sends its children into the namespace it made. Needs root; runs
//! in the nextest `serial` group.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::{descendants, in_session, kill_tree, read_trimmed as read, require_root, wait_until};

/// The nested namespace's init: a loop that counts and writes the parent pid a new child of
/// it sees (1 if it is still its namespace's init), beside a long sleeper (pid 2) and a
/// process of threads that checks their ids from inside (tr_threads, pid 3).
const INNER: &str =
    "sleep 1000 & $TR threads.result 4 & i=0; while :; do sh -c 'echo $PPID' > ppid.new; \
                     mv ppid.new ppid; i=$((i+1)); echo $i > count.new; mv count.new count; \
                     sleep 0.05; done";

/// The launched tree, killed when the test ends however it ends.
struct Tree {
    launcher: Child,
    /// The restored root, once there is one.
    restored: i32,
}

impl Drop for Tree {
    fn drop(&mut self) {
        kill_tree(self.launcher.id() as i32);
        let _ = self.launcher.wait();
        if self.restored > 0 {
            kill_tree(self.restored);
        }
    }
}

fn start(dir: &Path, program: &[&str]) -> Tree {
    let tr = harness::bin("tr_threads").display().to_string();
    std::fs::write(dir.join("inner.sh"), INNER.replace("$TR", &tr)).unwrap();
    let launcher = Command::new(program[0])
        .args(&program[1..])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the tree");
    Tree {
        launcher,
        restored: 0,
    }
}

fn cmdline(pid: i32) -> String {
    read(Path::new(&format!("/proc/{pid}/cmdline"))).replace('\0', " ")
}

/// NSpid of `pid` without its first `skip` levels.
fn ns_pids(pid: i32, skip: usize) -> Vec<String> {
    let status = read(Path::new(&format!("/proc/{pid}/status")));
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"));
    line.unwrap_or("")
        .split_whitespace()
        .skip(skip)
        .map(str::to_string)
        .collect()
}

fn ns_link(pid: i32, name: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{name}"))
        .map(|l| l.display().to_string())
        .unwrap_or_default()
}

/// The lasting tasks under `root` (not the loop's short-lived children) by command line,
/// each with its pids below the first `skip` levels.
fn lasting(root: i32, skip: usize) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for pid in descendants(root) {
        let cmd = cmdline(pid);
        let parent = read(Path::new(&format!("/proc/{pid}/stat")))
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<i32>().ok())
            .unwrap_or(0);
        let short_lived =
            cmd.contains("PPID") || cmd.contains("sleep 0.05") || cmd.starts_with("mv ");
        if pid != root && (short_lived || cmdline(parent) == cmd) {
            continue;
        }
        out.insert(cmd, ns_pids(pid, skip));
    }
    out
}

/// The count went on past where it was, new children of the nested init see it as pid 1, and
/// the threads under `root` find their ids as they were.
fn went_on(dir: &Path, root: i32) {
    let threads = descendants(root)
        .into_iter()
        .find(|&p| cmdline(p).contains("tr_threads"));
    let threads = threads.expect("tr_threads is gone");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(threads),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let result = dir.join("threads.result");
    wait_until(Duration::from_secs(10), || {
        harness::is_verdict(&read(&result))
    });
    assert_eq!(read(&result), "PASS", "tr_threads");
    let count = || read(&dir.join("count")).parse::<u64>().unwrap_or(0);
    let before = count();
    std::fs::remove_file(dir.join("ppid")).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || count() > before + 3
            && !read(&dir.join("ppid")).is_empty()),
        "the loop stopped at {before}"
    );
    assert_eq!(
        read(&dir.join("ppid")),
        "1",
        "a new child's parent is not the init"
    );
}

/// Dumps the tree under `root` (which dies), reaps its launcher, restores it; returns the
/// restored root.
fn dump_and_restore(dir: &Path, root: i32, tree: &mut Tree) -> i32 {
    state_task::dump_tree(dir, root, &[]);
    assert!(dir.join("images/pid-levels.img").exists());
    let _ = tree.launcher.wait();
    // The root's pid stays taken while a task of its session lives: the nested init, orphaned
    // by the dump's kill, waits for this machine's init to reap it.
    let session_gone = wait_until(Duration::from_secs(30), || in_session(root).is_empty());
    assert!(
        session_gone,
        "the old tree's session lingers: {:?}",
        in_session(root)
    );
    tree.restored = state_task::restore_tree(dir, &[]);
    tree.restored
}

/// Waits until the tree under `root` has `n` lasting tasks and the loop counts.
fn settled(dir: &Path, root: i32, skip: usize, n: usize) -> BTreeMap<String, Vec<String>> {
    let ok = wait_until(Duration::from_secs(10), || {
        lasting(root, skip).len() == n
            && !read(&dir.join("count")).is_empty()
            && read(&dir.join("threads.result")) == "READY"
    });
    let tasks = lasting(root, skip);
    assert!(ok, "the tree did not settle: {tasks:?}");
    tasks
}

#[test]
fn an_unshare_process_and_the_pid_namespace_it_made_keep_every_pid() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let program = ["setsid", "unshare", "--pid", "--fork", "sh", "inner.sh"];
    let mut tree = start(dir.path(), &program);
    let root = tree.launcher.id() as i32;
    // unshare (criu's namespace), sh (init: 1), its sleeper (2) and tr_threads (3).
    let before = settled(dir.path(), root, 0, 4);
    assert!(
        before
            .values()
            .any(|p| p.last().map(String::as_str) == Some("1")),
        "{before:?}"
    );
    let restored = dump_and_restore(dir.path(), root, &mut tree);
    assert_eq!(restored, root);
    assert_eq!(lasting(restored, 0), before);
    let init = descendants(restored).get(1).copied().unwrap_or(0);
    let links = (ns_link(restored, "pid_for_children"), ns_link(init, "pid"));
    assert_eq!(
        links.0, links.1,
        "unshare's children are no longer born in its namespace"
    );
    went_on(dir.path(), restored);
}

#[test]
fn a_pid_namespace_nested_in_a_containers_keeps_every_pid_below_criu() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let outer = "unshare --pid --fork sh inner.sh & while :; do sleep 0.05; done";
    let program = ["unshare", "--pid", "--fork", "setsid", "sh", "-c", outer];
    let mut tree = start(dir.path(), &program);
    let launcher = tree.launcher.id() as i32;
    let found = wait_until(Duration::from_secs(10), || descendants(launcher).len() > 1);
    assert!(found, "unshare never forked its init");
    let init = descendants(launcher)[1];
    // The outer init (1), the inner unshare (2), its init (1 inside), the sleeper and
    // tr_threads (2 and 3 inside).
    let before = settled(dir.path(), init, 1, 5);
    assert!(
        before.values().any(|p| p.len() == 2),
        "no nested task: {before:?}"
    );
    let restored = dump_and_restore(dir.path(), init, &mut tree);
    assert_eq!(lasting(restored, 1), before);
    went_on(dir.path(), restored);
}
