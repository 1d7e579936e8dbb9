//! Dump and restore of epoll, inotify and fanotify fds. Each workload
//! (tests/workloads/src/bin/nt_*.rs) sets its fds up, is dumped and restored by our criu, and
//! then checks from inside that events still arrive as before (registered data, edge and
//! one-shot behaviour, wds and masks). Runs in the nextest `serial` group: restores claim
//! exact pids.

#[path = "workloads/src/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use harness::{bin, require_root, wait_until};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn criu(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .arg("--no-default-config")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run criu")
}

/// A started workload; every process it names is killed when dropped.
struct Task {
    child: Option<Child>,
    pid: i32,
    dir: tempfile::TempDir,
}

impl Task {
    fn start(name: &str, extra: &[&str]) -> Task {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("images")).unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        let child = Command::new(bin(name))
            .arg(dir.path().join("result"))
            .arg(dir.path().join("work"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let pid = child.id() as i32;
        let t = Task {
            child: Some(child),
            pid,
            dir,
        };
        assert!(
            wait_until(Duration::from_secs(10), || t.text("result") == "READY\n"),
            "{name} never got ready: {}",
            t.text("result")
        );
        t
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn text(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    fn pid_in(&self, name: &str) -> Option<i32> {
        self.text(name).trim().parse().ok()
    }

    fn dump(&self) -> (Output, String) {
        let pid = self.pid.to_string();
        let out = criu(
            &["dump", "-t", &pid, "-D", "images", "-o", "dump.log", "-v4"],
            self.dir.path(),
        );
        (out, self.text("images/dump.log"))
    }

    /// Dumps (the tree dies), reaps the original and restores it detached.
    fn dump_and_restore(&mut self) {
        let (out, log) = self.dump();
        assert_eq!(out.status.code(), Some(0), "dump failed: {out:?}\n{log}");
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        // The dumped child is reaped by init, which may take a moment: its pid must be free.
        if let Some(p) = self.pid_in("work/child.pid") {
            let gone = || !Path::new(&format!("/proc/{p}")).exists();
            assert!(
                wait_until(Duration::from_secs(20), gone),
                "pid {p} never freed"
            );
        }
        let out = criu(
            &["restore", "-D", "images", "-o", "restore.log", "-v4", "-d"],
            self.dir.path(),
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "restore failed: {out:?}\n{}",
            self.text("images/restore.log")
        );
    }

    /// Asks `pid` to check itself; returns what it wrote to `result`.
    fn verdict(&self, pid: i32, result: &str) -> String {
        kill(Pid::from_raw(pid), Signal::SIGUSR1).unwrap();
        wait_until(Duration::from_secs(10), || {
            let t = self.text(result);
            !t.is_empty() && t != "READY\n"
        });
        self.text(result)
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        for name in ["work/child.pid", "work/holder.pid"] {
            if let Some(p) = self.pid_in(name) {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
        }
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

#[test]
fn epoll_targets_come_back_in_both_tasks() {
    require_root();
    let mut t = Task::start("nt_epoll", &[]);
    t.dump_and_restore();
    assert_eq!(t.verdict(t.pid, "result"), "PASS\n");
    let child = t.pid_in("work/child.pid").expect("child.pid");
    assert_eq!(t.verdict(child, "result.child"), "PASS\n");
}

#[test]
fn epoll_target_open_only_outside_the_tree_fails_the_dump() {
    require_root();
    let t = Task::start("nt_epoll", &["escaped"]);
    let (out, log) = t.dump();
    assert_ne!(out.status.code(), Some(0), "dump should fail:\n{log}");
    let all = format!("{}{log}", String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("is not open in the task"), "{all}");
    // The tree runs on and still works: its epoll is as it was, events arrive as before. The
    // child checks first: the parent's check leaves a byte in the moved pipe, whose read end
    // only the outside holder has, and the shared epoll would show it to the child.
    assert!(Path::new(&format!("/proc/{}", t.pid)).exists());
    let child = t.pid_in("work/child.pid").expect("child.pid");
    assert_eq!(t.verdict(child, "result.child"), "PASS\n");
    assert_eq!(t.verdict(t.pid, "result"), "PASS\n");
}

#[test]
fn inotify_watches_keep_wds_and_deliver() {
    require_root();
    let mut t = Task::start("nt_inotify", &[]);
    t.dump_and_restore();
    assert_eq!(t.verdict(t.pid, "result"), "PASS\n");
}

#[test]
fn fanotify_marks_come_back() {
    require_root();
    let mut t = Task::start("nt_fanotify", &[]);
    t.dump_and_restore();
    assert_eq!(t.verdict(t.pid, "result"), "PASS\n");
}
