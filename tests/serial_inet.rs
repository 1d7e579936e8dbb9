//! Inet sockets and TCP connections through `criu dump` and `criu restore`: a self-checking
//! workload (tests/workloads/src/bin/in_state.rs) holds listeners, connections with bytes
//! queued both ways, a half-closed connection, IPv6 and UDP sockets, or a connection to a peer
//! outside the tree (this test); it is dumped with --tcp-established and restored, then checks
//! from inside that every byte arrives once and in order. Runs in the nextest `serial` group:
//! the network lock adds iptables rules to the host's tables.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use harness::{lock_rules, require_root};
use state_task::{Argv, StateTask};

const TCP: &[&str] = &["--tcp-established"];

/// in_state with `args` after its result file, in `dir`.
fn start(args: &[&str], dir: &tempfile::TempDir) -> StateTask {
    StateTask::workload("in_state")
        .argv(Argv::ResultArgs)
        .args(args)
        .start(dir.path())
}

#[test]
fn connections_listeners_and_datagrams_inside_the_tree_come_back() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = start(&["inside"], &dir);
    task.dump(TCP);
    assert!(
        !lock_rules(None).is_empty(),
        "no connection was locked during the dump"
    );
    task.restore_ok(TCP);
    assert_eq!(
        lock_rules(None),
        Vec::<String>::new(),
        "the restore left lock rules"
    );
    assert_eq!(task.verdict(), "PASS\n", "{}", task.log("restore.log"));
}

#[test]
fn a_peer_outside_the_tree_never_notices() {
    require_root();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut task = start(&["outside", &port], &dir);
    let (mut peer, _) = listener.accept().unwrap();
    let mut hello = [0u8; 7];
    peer.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"to-peer");
    task.dump(TCP);
    // While the tree is gone, the peer's bytes are dropped by the lock, not answered by a
    // reset: the peer's socket stays healthy and the bytes arrive after the restore.
    peer.write_all(b"from-peer").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    peer.set_nonblocking(true).unwrap();
    let mut probe = [0u8; 1];
    match peer.read(&mut probe) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the peer saw {other:?} while the tree was locked"),
    }
    peer.set_nonblocking(false).unwrap();
    task.restore_ok(TCP);
    assert_eq!(task.verdict(), "PASS\n", "{}", task.log("restore.log"));
    peer.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = [0u8; 6];
    peer.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"answer");
    assert_eq!(lock_rules(None), Vec::<String>::new());
}

#[test]
fn a_connection_needs_tcp_established_and_the_tree_runs_on() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let task = start(&["inside"], &dir);
    let out = task.try_dump(&[]);
    assert_ne!(out.status.code(), Some(0));
    let log = task.log("dump.log");
    assert!(
        log.contains("--tcp-established") && log.contains("ESTABLISHED"),
        "{log}"
    );
    assert_eq!(lock_rules(None), Vec::<String>::new());
    // Untouched: it still passes its own checks.
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn a_dump_that_leaves_the_tree_running_unlocks_its_connections() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let task = start(&["inside"], &dir);
    let out = task.try_dump(&["--tcp-established", "-R"]);
    assert_eq!(out.status.code(), Some(0), "{}", task.log("dump.log"));
    assert_eq!(lock_rules(None), Vec::<String>::new());
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn an_option_the_images_cannot_hold_is_refused_and_the_tree_runs_on() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let task = start(&["transparent"], &dir);
    let out = task.try_dump(TCP);
    assert_ne!(out.status.code(), Some(0));
    let log = task.log("dump.log");
    assert!(
        log.contains("IP_TRANSPARENT") && log.contains("LISTEN"),
        "{log}"
    );
    assert_eq!(task.verdict(), "PASS\n");
}
