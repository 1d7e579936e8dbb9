//! File owners and signals on sockets, epoll and inotify; locks held through a memfd and a
//! FIFO; `--inherit-fd` for a container's stdio socket. Dumped and restored by our own criu;
//! the workloads check themselves after restore (tests/workloads/src/bin/fo_*.rs). Runs in
//! the nextest `serial` group: restores claim exact pids.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use harness::require_root;
use state_task::{Argv, StateTask};

#[test]
fn owners_and_signals_of_a_socket_an_epoll_and_an_inotify_come_back() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // fo_owner RESULT_FILE WORK_DIR
    let mut task = StateTask::workload("fo_owner").start(dir.path());
    task.dump(&[]);
    let out = task.restore_with(&[], Stdio::null(), Stdio::null());
    task.assert_ok(&out, "restore");
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn locks_through_a_memfd_and_a_fifo_need_file_locks_and_come_back() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // fo_locks RESULT_FILE WORK_DIR
    let mut task = StateTask::workload("fo_locks").start(dir.path());
    let out = task.try_dump(&[]);
    assert_ne!(out.status.code(), Some(0), "dump without -l succeeded");
    let said = task.said(&out, "dump.log");
    assert!(said.contains("--file-locks"), "{said}");
    assert!(Path::new(&format!("/proc/{}", task.pid)).exists());
    std::fs::remove_dir_all(dir.path().join("images")).unwrap();

    task.dump(&["-l"]);
    let out = task.restore_with(&["-l"], Stdio::null(), Stdio::null());
    task.assert_ok(&out, "restore");
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
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // As a runtime: the task's stdio is one end of a pair, the other end stays here.
    let (_runtime, stdio) = UnixStream::pair().unwrap();
    let stdio = OwnedFd::from(stdio);
    let mut task = StateTask::workload("fo_stdio")
        .argv(Argv::ResultArgs)
        .stdin(Stdio::from(stdio.try_clone().unwrap()))
        .stdout(Stdio::from(stdio))
        .start(dir.path());
    let stdio_ino = socket_ino(task.pid, 0);
    let pair_ino = socket_ino(task.pid, 3);
    // The stdio socket's peer is outside the tree: named as external, as a runtime does.
    let external = format!("unix[{stdio_ino}]");
    task.dump(&["--external", &external]);

    // Without the socket given back, its connection cannot be made again.
    let out = task.restore_with(&[], Stdio::null(), Stdio::null());
    assert_ne!(
        out.status.code(),
        Some(0),
        "restore without --inherit-fd: {out:?}"
    );
    assert!(!Path::new(&format!("/proc/{}", task.pid)).exists());

    let (runtime, stdio) = UnixStream::pair().unwrap();
    let (mut feeder, for_pair) = UnixStream::pair().unwrap();
    let out = task.restore_with(
        &[
            "--inherit-fd",
            &format!("fd[0]:socket:[{stdio_ino}]"),
            "--inherit-fd",
            &format!("fd[1]:socket:[{pair_ino}]"),
        ],
        Stdio::from(OwnedFd::from(stdio)),
        Stdio::from(OwnedFd::from(for_pair)),
    );
    task.assert_ok(&out, "restore");
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
