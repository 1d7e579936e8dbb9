//! Test-side handle on an mp_writer tree (tests/workloads/src/bin/mp_writer.rs), and the
//! criu helpers its tests share. Included with `#[path]` by serial_predump.rs and
//! serial_page_server.rs next to `harness.rs` and `state_task.rs`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{bin, descendants, is_verdict, state, tracer, wait_until};
pub use crate::state_task::criu;

pub const MIB: u64 = 1 << 20;

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The last 200 lines of a log file, for an assertion's message.
pub fn log_tail(path: &Path) -> String {
    let text = read(path);
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(200);
    format!(
        "--- {} (last lines) ---\n{}",
        path.display(),
        lines[from..].join("\n")
    )
}

/// Runs criu and asserts it succeeded, showing `logs` (relative to `dir`) when it did not.
pub fn criu_ok(args: &[&str], dir: &Path, logs: &[&str]) {
    let out = criu(args, dir);
    let shown: Vec<String> = logs.iter().map(|l| log_tail(&dir.join(l))).collect();
    assert_eq!(
        out.status.code(),
        Some(0),
        "criu {}: {out:?}\n{}",
        args.join(" "),
        shown.join("\n")
    );
}

/// Reaps whatever exited among our children (orphans of the tree come to us, a subreaper).
pub fn reap() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(st) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if st == WaitStatus::StillAlive {
            break;
        }
    }
}

/// No process, not even a zombie, holds `pid` (the restore needs it free).
pub fn gone(pid: i32) -> bool {
    reap();
    !Path::new(&format!("/proc/{pid}")).exists()
}

pub fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
        .unwrap_or_else(|e| panic!("{sig} to {pid}: {e}"));
}

/// Asserts that `pid` runs: there, neither stopped nor a zombie, and traced by nobody.
pub fn assert_runs(pid: i32, when: &str) {
    let st = state(pid, pid);
    assert!(
        matches!(st, Some(c) if !matches!(c, 'T' | 't' | 'Z' | 'X')),
        "{when}: pid {pid} is in state {st:?}"
    );
    assert_eq!(tracer(pid, pid), 0, "{when}: pid {pid} is still traced");
}

/// Files of `dir` whose name starts with `prefix` and ends with `.img`, with their sizes.
pub fn images(dir: &Path, prefix: &str) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name.starts_with(prefix) && name.ends_with(".img"))
                .then(|| (name, e.metadata().unwrap().len()))
        })
        .collect();
    v.sort();
    v
}

/// Sum of the sizes of `dir`'s pages-*.img files.
pub fn pages_bytes(dir: &Path) -> u64 {
    images(dir, "pages-").iter().map(|(_, n)| n).sum()
}

/// Bytes of disk `dir`'s pages-*.img files take (holes punched by dedup take none).
pub fn pages_allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    images(dir, "pages-")
        .iter()
        .filter_map(|(name, _)| std::fs::metadata(dir.join(name)).ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

/// A started mp_writer tree: its results dir and the pid of each role. Dropping it kills every
/// pid it knows (also those of a restored tree: the pids are the same) and reaps them.
pub struct Tree {
    original: Child,
    results: PathBuf,
    roles: Vec<(String, i32)>,
}

impl Tree {
    pub fn start(dir: &Path, mib: u64) -> Tree {
        // Orphans (the restored root once criu is gone, children of a killed parent) come to
        // this test, which reaps them: a zombie keeps its pid taken.
        nix::sys::prctl::set_child_subreaper(true).unwrap();
        let results = dir.join("results");
        std::fs::create_dir(&results).unwrap();
        // mp_writer calls setsid itself: the root of the dumped tree leads its session.
        let original = Command::new(bin("mp_writer"))
            .arg(&results)
            .arg(mib.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut tree = Tree {
            original,
            results,
            roles: Vec::new(),
        };
        tree.wait_ready("parent");
        tree
    }

    pub fn root(&self) -> i32 {
        self.roles[0].1
    }

    /// Waits for RESULTS/<role> to say READY and records the role's pid.
    fn wait_ready(&mut self, role: &str) {
        let ready = wait_until(Duration::from_secs(60), || {
            read(&self.results.join(role)) == "READY\n"
        });
        assert!(ready, "mp_writer's {role} never got ready");
        let pid = read(&self.results.join(format!("{role}.pid")))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{role}.pid: {e}"));
        self.roles.push((role.to_string(), pid));
    }

    /// SIGUSR2 to the parent: a new mapping and a new child, `n`th of them.
    pub fn grow(&mut self, n: usize) {
        signal(self.root(), nix::sys::signal::Signal::SIGUSR2);
        let ack = self.results.join("parent.ack");
        let want = format!("MAPPED {n}\n");
        assert!(
            wait_until(Duration::from_secs(30), || read(&ack) == want),
            "mp_writer never acknowledged SIGUSR2 #{n}: {:?}",
            read(&ack)
        );
        self.wait_ready(&format!("child{n}"));
    }

    pub fn assert_all_run(&self, when: &str) {
        for (role, pid) in &self.roles {
            assert_runs(*pid, &format!("{when} ({role})"));
        }
    }

    /// SIGUSR1 to every role, then each one's verdict.
    pub fn verdicts(&self) -> Vec<(String, String)> {
        for (_, pid) in &self.roles {
            signal(*pid, nix::sys::signal::Signal::SIGUSR1);
        }
        let result = |role: &str| read(&self.results.join(format!("{role}.result")));
        wait_until(Duration::from_secs(60), || {
            self.roles.iter().all(|(role, _)| is_verdict(&result(role)))
        });
        self.roles
            .iter()
            .map(|(role, _)| (role.clone(), result(role)))
            .collect()
    }

    /// Waits until the tree the dump killed is gone to the last zombie.
    pub fn wait_gone(&mut self) {
        let _ = self.original.wait();
        assert!(
            wait_until(Duration::from_secs(10), || self
                .roles
                .iter()
                .all(|&(_, p)| gone(p))),
            "dumped tree still there: {:?}",
            self.roles
        );
    }

    /// The root and its descendants, sorted.
    pub fn pids(&self) -> Vec<i32> {
        let mut v = descendants(self.root());
        v.sort_unstable();
        v
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        for (_, pid) in self.roles.iter().rev() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.original.kill();
        let _ = self.original.wait();
        wait_until(Duration::from_secs(5), || {
            self.roles.iter().all(|&(_, p)| gone(p))
        });
    }
}

/// Restores the tree from `dir` (relative to `d`) and checks it has the pids `before`, runs,
/// and every task's memory passes its check.
pub fn restore_and_check(d: &Path, dir: &str, tree: &Tree, before: &[i32]) {
    restore_and_check_with(d, dir, tree, before, &[])
}

/// [`restore_and_check`] with `extra` options for the restore.
pub fn restore_and_check_with(d: &Path, dir: &str, tree: &Tree, before: &[i32], extra: &[&str]) {
    let log = format!("{dir}/restore.log");
    let mut args = vec!["restore", "-D", dir, "-d", "-o", "restore.log", "-v4"];
    args.extend(extra);
    criu_ok(&args, d, &[&log]);
    assert_eq!(tree.pids(), before, "pids after restore");
    tree.assert_all_run("after restore");
    let verdicts = tree.verdicts();
    let bad: Vec<_> = verdicts.iter().filter(|(_, v)| v != "PASS\n").collect();
    assert!(
        bad.is_empty(),
        "memory after restore: {bad:?}\n{}",
        log_tail(&d.join(&log))
    );
}
