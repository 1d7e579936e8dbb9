//! File owners and signals on sockets, epoll and inotify; locks held through a memfd and a
//! FIFO; `--inherit-fd` for a container's stdio socket. Dumped and restored by our own criu;
//! the workloads check themselves after restore (tests/workloads/src/bin/fo_*.rs). Runs in
//! the nextest `serial` group: restores claim exact pids.

#[path = "workloads/src/harness.rs"]
mod harness;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
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
    result: PathBuf,
}

impl Task {
    fn start(name: &str, dir: &Path, args: &[&str], stdin: Stdio, stdout: Stdio) -> Task {
        let result = dir.join("result");
        let child = Command::new(bin(name))
            .arg(&result)
            .args(args)
            .stdin(stdin)
            .stdout(stdout)
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

    fn try_dump(&self, dir: &Path, extra: &[&str]) -> Output {
        std::fs::create_dir_all(dir.join("images")).unwrap();
        let pid = self.pid.to_string();
        let mut args = vec!["dump", "-t", &pid, "-D", "images", "-o", "dump.log", "-v4"];
        args.extend_from_slice(extra);
        criu(&args, dir, Stdio::null(), Stdio::null())
    }

    fn dump(&mut self, dir: &Path, extra: &[&str]) {
        let tree = harness::descendants(self.pid);
        let out = self.try_dump(dir, extra);
        assert_eq!(
            out.status.code(),
            Some(0),
            "dump failed: {out:?}\n{}",
            log(dir, "dump.log")
        );
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
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

fn assert_restored(dir: &Path, out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "restore failed: {out:?}\n{}",
        log(dir, "restore.log")
    );
}

#[test]
fn owners_and_signals_of_a_socket_an_epoll_and_an_inotify_come_back() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let mut task = Task::start(
        "fo_owner",
        dir.path(),
        &[work.to_str().unwrap()],
        Stdio::null(),
        Stdio::null(),
    );
    task.dump(dir.path(), &[]);
    let out = restore(dir.path(), &[], Stdio::null(), Stdio::null());
    assert_restored(dir.path(), &out);
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn locks_through_a_memfd_and_a_fifo_need_file_locks_and_come_back() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let mut task = Task::start(
        "fo_locks",
        dir.path(),
        &[work.to_str().unwrap()],
        Stdio::null(),
        Stdio::null(),
    );
    let out = task.try_dump(dir.path(), &[]);
    assert_ne!(out.status.code(), Some(0), "dump without -l succeeded");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        log(dir.path(), "dump.log")
    );
    assert!(said.contains("--file-locks"), "{said}");
    assert!(Path::new(&format!("/proc/{}", task.pid)).exists());
    std::fs::remove_dir_all(dir.path().join("images")).unwrap();

    task.dump(dir.path(), &["-l"]);
    let out = restore(dir.path(), &["-l"], Stdio::null(), Stdio::null());
    assert_restored(dir.path(), &out);
    assert_eq!(task.verdict(), "PASS\n");
}

/// The inode of `pid`'s socket at `fd`, from its /proc link "socket:[INO]".
fn socket_ino(pid: i32, fd: i32) -> String {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
    let s = link.display().to_string();
    s.strip_prefix("socket:[")
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or_else(|| panic!("fd {fd} is {s}"))
        .to_string()
}

#[test]
fn inherit_fd_stands_for_a_stdio_socket_and_one_end_of_a_pair() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // As a runtime: the task's stdio is one end of a pair, the other end stays here.
    let (_runtime, stdio) = UnixStream::pair().unwrap();
    let stdio = OwnedFd::from(stdio);
    let mut task = Task::start(
        "fo_stdio",
        dir.path(),
        &[],
        Stdio::from(stdio.try_clone().unwrap()),
        Stdio::from(stdio),
    );
    let stdio_ino = socket_ino(task.pid, 0);
    let pair_ino = socket_ino(task.pid, 3);
    // The stdio socket's peer is outside the tree: named as external, as a runtime does.
    let external = format!("unix[{stdio_ino}]");
    task.dump(dir.path(), &["--external", &external]);

    // Without the socket given back, its connection cannot be made again.
    let out = restore(dir.path(), &[], Stdio::null(), Stdio::null());
    assert_ne!(
        out.status.code(),
        Some(0),
        "restore without --inherit-fd: {out:?}"
    );
    assert!(!Path::new(&format!("/proc/{}", task.pid)).exists());

    let (runtime, stdio) = UnixStream::pair().unwrap();
    let (mut feeder, for_pair) = UnixStream::pair().unwrap();
    let out = restore(
        dir.path(),
        &[
            "--inherit-fd",
            &format!("fd[0]:socket:[{stdio_ino}]"),
            "--inherit-fd",
            &format!("fd[1]:socket:[{pair_ino}]"),
        ],
        Stdio::from(OwnedFd::from(stdio)),
        Stdio::from(OwnedFd::from(for_pair)),
    );
    assert_restored(dir.path(), &out);
    (&runtime).write_all(b"hello\n").unwrap();
    feeder.write_all(b"to fd 3\n").unwrap();
    assert_eq!(task.verdict(), "PASS\n");
    runtime
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut echo = String::new();
    BufReader::new(&runtime).read_line(&mut echo).unwrap();
    assert_eq!(echo, "echo: hello\n");
}
