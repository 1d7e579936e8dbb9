//! Unix sockets through `criu dump` and `criu restore`: a self-checking workload
//! (tests/workloads/src/bin/uk_state.rs) sets up sockets, is dumped and restored, then checks
//! from inside that every socket holds what it held. Runs in the nextest `serial` group.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::path::Path;
use std::time::Duration;

use harness::require_root;
use state_task::{Argv, StateTask};

/// uk_state in `mode`, working in `dir` (its second argument).
fn start_in(mode: &str, dir: &tempfile::TempDir) -> StateTask {
    let work = dir.path().display().to_string();
    StateTask::workload("uk_state")
        .argv(Argv::ResultArgs)
        .args(&[&work, mode])
        .start(dir.path())
}

fn round_trip(mode: &str) {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = start_in(mode, &dir);
    task.dump(&[]);
    task.restore_ok(&[]);
    // The echo client and server finish by themselves.
    let verdict = if mode == "echo" {
        task.wait_verdict()
    } else {
        task.verdict()
    };
    assert_eq!(verdict, "PASS\n", "{}", task.log("restore.log"));
}

#[test]
fn socketpairs_keep_queues_boundaries_and_shutdowns() {
    round_trip("pairs");
}

#[test]
fn named_sockets_and_pending_connections_come_back() {
    round_trip("names");
}

#[test]
fn a_pair_shared_with_a_child_keeps_both_queues() {
    round_trip("tree");
}

#[test]
fn fds_in_flight_are_sent_again() {
    round_trip("rights");
}

#[test]
fn an_echo_client_and_server_finish_after_restore() {
    round_trip("echo");
}

#[test]
fn an_outside_peer_needs_ext_unix_sk() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let ext_path = dir.path().join("ext.sock");
    let ext = std::os::unix::net::UnixDatagram::bind(&ext_path).unwrap();
    ext.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut task = start_in("external", &dir);

    // Without the option the dump fails, naming the reason, and the task runs on.
    let out = task.try_dump(&[]);
    assert_ne!(out.status.code(), Some(0));
    let said = task.said(&out, "dump.log");
    assert!(said.contains("ext-unix-sk"), "{said}");
    assert!(Path::new(&format!("/proc/{}", task.pid)).exists());

    task.dump(&["--ext-unix-sk"]);
    task.restore_ok(&["--ext-unix-sk"]);
    assert_eq!(task.verdict(), "PASS\n");
    let mut buf = [0u8; 16];
    let n = ext.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
}
