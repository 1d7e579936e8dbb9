//! FIFOs, pipe sizes, file owners and `--inherit-fd`, dumped and restored by our own criu. The
//! workloads check themselves after restore (tests/workloads/src/bin/ff_*.rs). Runs in the
//! nextest `serial` group: restores claim exact pids.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;

use harness::require_root;
use state_task::{Argv, StateTask};

#[test]
fn fifos_pipe_sizes_and_owners_come_back() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // ff_fifo RESULT_FILE WORK_DIR
    let mut task = StateTask::workload("ff_fifo").start(dir.path());
    task.dump(&[]);
    let images = dir.path().join("images");
    for name in ["fifo-data.img", "pipes-data.img", "files.img"] {
        assert!(images.join(name).exists(), "{name} missing");
    }
    let out = task.restore_with(&[], Stdio::null(), Stdio::null());
    task.assert_ok(&out, "restore");
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
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let old_log = dir.path().join("old.log");
    let (r0, w0): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
    let mut task = StateTask::workload("ff_inherit")
        .argv(Argv::ResultArgs)
        .args(&[old_log.to_str().unwrap()])
        .stdin(Stdio::from(r0))
        .start(dir.path());
    let pipe_key = stdin_pipe_of(task.pid);
    assert!(pipe_key.starts_with("pipe:["), "{pipe_key}");
    task.dump(&[]);
    drop(w0);
    // CRIU's name of a regular file is its path without the leading '/'.
    let file_key = old_log
        .to_str()
        .unwrap()
        .trim_start_matches('/')
        .to_string();

    // An fd criu does not have is refused before anything is made.
    let out = task.restore_with(
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
    let out = task.restore_with(
        &[
            "--inherit-fd",
            &format!("fd[0]:{pipe_key}"),
            "--inherit-fd",
            &format!("fd[1]:{file_key}"),
        ],
        Stdio::from(r1),
        Stdio::from(log_fd),
    );
    task.assert_ok(&out, "restore");
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
