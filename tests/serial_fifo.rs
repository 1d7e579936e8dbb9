//! FIFOs, pipe sizes, file owners and `--inherit-fd`, dumped and restored by our own criu. The
//! workloads check themselves after restore (tests/workloads/src/bin/ff_*.rs). Runs in the
//! nextest `serial` group: restores claim exact pids.

#[path = "workloads/src/harness.rs"]
mod harness;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use harness::{bin, is_root, wait_until};

fn criu(args: &[&str], dir: &Path, stdin: Stdio, stdout: Stdio) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .arg("--no-default-config")
        .args(args)
        .current_dir(dir)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("run criu")
}

fn log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join("images").join(name)).unwrap_or_default()
}

/// A workload that reports through a result file; killed by pid when dropped.
struct Task {
    child: Option<Child>,
    pid: i32,
    result: std::path::PathBuf,
}

impl Task {
    fn start(name: &str, dir: &Path, arg: &str, stdin: Stdio) -> Task {
        let result = dir.join("result");
        let child = Command::new(bin(name))
            .arg(&result)
            .arg(arg)
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let task = Task {
            pid: child.id() as i32,
            child: Some(child),
            result,
        };
        assert!(
            wait_until(Duration::from_secs(10), || task.result() == "READY\n"),
            "{name} never got ready: {:?}",
            task.result()
        );
        task
    }

    fn result(&self) -> String {
        std::fs::read_to_string(&self.result).unwrap_or_default()
    }

    fn dump(&mut self, dir: &Path) {
        std::fs::create_dir_all(dir.join("images")).unwrap();
        let tree = harness::descendants(self.pid);
        let pid = self.pid.to_string();
        let out = criu(
            &["dump", "-t", &pid, "-D", "images", "-o", "dump.log", "-v4"],
            dir,
            Stdio::null(),
            Stdio::null(),
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "dump failed: {out:?}\n{}",
            log(dir, "dump.log")
        );
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        // The dump killed the tree; its pids must be free (reaped by init) before a restore.
        let gone = wait_until(Duration::from_secs(10), || {
            tree.iter()
                .all(|p| !Path::new(&format!("/proc/{p}")).exists())
        });
        assert!(gone, "the dumped tree {tree:?} is still there");
    }

    /// Tells the restored task to check itself; its verdict.
    fn verdict(&self) -> String {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .unwrap();
        wait_until(Duration::from_secs(20), || {
            let r = self.result();
            r.starts_with("PASS") || r.starts_with("FAIL")
        });
        self.result()
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        harness::kill_tree(self.pid);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

fn restore(dir: &Path, extra: &[&str], stdin: Stdio, stdout: Stdio) -> Output {
    let mut args = vec!["restore", "-D", "images", "-o", "restore.log", "-v4", "-d"];
    args.extend_from_slice(extra);
    criu(&args, dir, stdin, stdout)
}

#[test]
fn fifos_pipe_sizes_and_owners_come_back() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let mut task = Task::start("ff_fifo", dir.path(), work.to_str().unwrap(), Stdio::null());
    task.dump(dir.path());
    let images = dir.path().join("images");
    for name in ["fifo-data.img", "pipes-data.img", "files.img"] {
        assert!(images.join(name).exists(), "{name} missing");
    }
    let out = restore(dir.path(), &[], Stdio::null(), Stdio::null());
    assert_eq!(
        out.status.code(),
        Some(0),
        "restore failed: {out:?}\n{}",
        log(dir.path(), "restore.log")
    );
    assert_eq!(task.verdict(), "PASS\n");
}

/// "pipe:[N]" of `pid`'s fd 0.
fn stdin_pipe_of(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/fd/0"))
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn inherit_fd_stands_for_a_pipe_and_a_file() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let old_log = dir.path().join("old.log");
    let (r0, w0): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
    let mut task = Task::start(
        "ff_inherit",
        dir.path(),
        old_log.to_str().unwrap(),
        Stdio::from(r0),
    );
    let pipe_key = stdin_pipe_of(task.pid);
    assert!(pipe_key.starts_with("pipe:["), "{pipe_key}");
    task.dump(dir.path());
    drop(w0);
    // CRIU's name of a regular file is its path without the leading '/'.
    let file_key = old_log
        .to_str()
        .unwrap()
        .trim_start_matches('/')
        .to_string();

    // An fd criu does not have is refused before anything is made.
    let out = restore(
        dir.path(),
        &["--inherit-fd", &format!("fd[77]:{pipe_key}")],
        Stdio::null(),
        Stdio::null(),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fd 77 is not open"), "{stderr}");
    assert!(!Path::new(&format!("/proc/{}", task.pid)).exists());

    let new_log = dir.path().join("new.log");
    let log_fd = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&new_log)
        .unwrap();
    let (r1, w1): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
    let out = restore(
        dir.path(),
        &[
            "--inherit-fd",
            &format!("fd[0]:{pipe_key}"),
            "--inherit-fd",
            &format!("fd[1]:{file_key}"),
        ],
        Stdio::from(r1),
        Stdio::from(log_fd),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "restore failed: {out:?}\n{}",
        log(dir.path(), "restore.log")
    );
    std::fs::File::from(w1)
        .write_all(b"after restore\n")
        .unwrap();
    assert_eq!(task.verdict(), "PASS\n");
    assert_eq!(
        std::fs::read_to_string(&new_log).unwrap(),
        "got: after restore\n"
    );
    assert_eq!(std::fs::read_to_string(&old_log).unwrap(), "started\n");
}
