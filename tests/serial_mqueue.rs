//! POSIX message queues held by a task (tests/workloads/src/bin/mq_queue.rs), dumped and
//! restored by our own criu, in criu's IPC namespace and in one of the tree's own. The
//! workload checks itself after restore: attributes, flags, both descriptions of one queue,
//! an unlinked queue, a queue no fd holds, every message in order. Runs in the nextest
//! `serial` group: restores claim exact pids.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::os::fd::AsFd;

use criu_sys::mqueue;
use harness::require_root;
use state_task::StateTask;

/// Removes the workload's queues of criu's namespace, whatever the test did.
struct HostQueues(String);

impl Drop for HostQueues {
    fn drop(&mut self) {
        for suffix in ["", "-gone", "-free"] {
            let _ = mqueue::unlink(&format!("{}{suffix}", self.0));
        }
    }
}

/// The messages of host queue `name`, read as the dump reads them (they stay).
fn host_queue(name: &str) -> Vec<(u32, Vec<u8>)> {
    let fd = mqueue::open(name, libc::O_RDWR | libc::O_NONBLOCK, 0, None).unwrap();
    let q = criu_ns::mqueue::read(&fd, name).unwrap();
    q.msgs.into_iter().map(|m| (m.prio, m.data)).collect()
}

fn held_before_dump() -> Vec<(u32, Vec<u8>)> {
    [(5, &b"a"[..]), (2, b"b1"), (2, b"b2"), (0, b"")]
        .iter()
        .map(|(p, m)| (*p, m.to_vec()))
        .collect()
}

#[test]
fn queues_of_criu_namespace_come_back_kept_or_made() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("criu-rs-mq-{}", std::process::id());
    let _clean = HostQueues(name.clone());
    let mut task = StateTask::workload("mq_queue")
        .args(&[&name])
        .start(dir.path());
    task.dump(&[]);
    assert!(dir.path().join("images/posix-mq-files.img").exists());
    // The dump left the queue as it was.
    assert_eq!(host_queue(&name), held_before_dump());

    // The host's queue is still there: the restored task opens it as it is.
    task.restore_ok(&[]);
    assert_eq!(task.verdict(), "PASS\n");
    assert_eq!(host_queue(&name), vec![]);

    // Gone from the host: the restore makes it again from the images, messages and all.
    drop(task);
    let dir2 = tempfile::tempdir().unwrap();
    let _ = mqueue::unlink(&name);
    let _ = mqueue::unlink(&format!("{name}-free"));
    let mut task = StateTask::workload("mq_queue")
        .args(&[&name])
        .start(dir2.path());
    task.dump(&[]);
    mqueue::unlink(&name).unwrap();
    // A queue no fd holds is the host's, not the tree's: it is not kept.
    let free = format!("{name}-free");
    let kept = mqueue::open(&free, libc::O_RDONLY, 0, None).unwrap();
    assert_eq!(mqueue::getattr(kept.as_fd()).unwrap().curmsgs, 2);
    task.restore_ok(&[]);
    let made = mqueue::open(&name, libc::O_RDONLY, 0, None).unwrap();
    let a = mqueue::getattr(made.as_fd()).unwrap();
    assert_eq!((a.maxmsg, a.msgsize, a.curmsgs), (8, 64, 4));
    let meta = std::fs::File::from(made).metadata().unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o640
    );
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn queues_of_the_tree_ipc_namespace_come_back_with_it() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // Named as in criu's namespace, to show the tree's queues are its own.
    let name = format!("criu-rs-mq-ns-{}", std::process::id());
    let _clean = HostQueues(name.clone());
    let mut task = StateTask::workload("mq_queue")
        .launcher(&["unshare", "--ipc"])
        .args(&[&name])
        .start(dir.path());
    task.dump(&[]);
    let images = dir.path().join("images");
    let ns_image = std::fs::read_dir(&images)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("ipcns-posix-mq-")
        });
    assert!(ns_image, "no ipcns-posix-mq image");
    assert_eq!(
        mqueue::open(&name, libc::O_RDONLY, 0, None).unwrap_err(),
        nix::errno::Errno::ENOENT,
        "the tree's queue leaked into criu's namespace"
    );
    task.restore_ok(&[]);
    let ours = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    let theirs = std::fs::read_link(format!("/proc/{}/ns/ipc", task.pid)).unwrap();
    assert_ne!(ours, theirs);
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn a_registered_notification_fails_the_dump_by_name() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("criu-rs-mq-notify-{}", std::process::id());
    let _clean = HostQueues(name.clone());
    let task = StateTask::workload("mq_queue")
        .args(&[&name, "notify"])
        .start(dir.path());
    let out = task.try_dump(&[]);
    assert_ne!(out.status.code(), Some(0));
    let said = task.said(&out, "dump.log");
    assert!(said.contains("mq_notify") && said.contains(&name), "{said}");
    // The tree runs on, its queue untouched.
    assert!(task.alive());
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn a_queue_of_another_ipc_namespace_fails_the_dump_by_name() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("criu-rs-mq-foreign-{}", std::process::id());
    let _clean = HostQueues(name.clone());
    let task = StateTask::workload("mq_queue")
        .args(&[&name, "foreign"])
        .start(dir.path());
    let out = task.try_dump(&[]);
    assert_ne!(out.status.code(), Some(0));
    let said = task.said(&out, "dump.log");
    assert!(
        said.contains("another IPC namespace") && said.contains(&name),
        "{said}"
    );
    assert!(task.alive());
    // Its queues were not touched.
    assert_eq!(host_queue(&name), held_before_dump());
}

#[test]
fn a_queue_made_by_a_restore_that_fails_is_removed_again() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("criu-rs-mq-undo-{}", std::process::id());
    let _clean = HostQueues(name.clone());
    let mut task = StateTask::workload("mq_queue")
        .args(&[&name])
        .start(dir.path());
    task.dump(&[]);
    mqueue::unlink(&name).unwrap();
    // The post-restore script fails: the tasks and the queue exist by then.
    let script = dir.path().join("action.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$CRTOOLS_SCRIPT_ACTION\" = post-restore ] && exit 1\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = task.restore(&["--action-script", script.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0), "{}", task.log("restore.log"));
    let said = task.said(&out, "restore.log");
    assert!(said.contains("post-restore"), "{said}");
    assert_eq!(
        mqueue::open(&name, libc::O_RDONLY, 0, None).unwrap_err(),
        nix::errno::Errno::ENOENT,
        "the queue the failed restore made is still there"
    );
    // The host's queue no fd holds was never the restore's to remove.
    assert!(mqueue::open(&format!("{name}-free"), libc::O_RDONLY, 0, None).is_ok());
}

#[test]
fn queues_of_a_tree_in_its_own_user_and_ipc_namespaces_come_back() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("criu-rs-mq-uns-{}", std::process::id());
    let mut task = StateTask::workload("mq_queue")
        .launcher(&["unshare", "--user", "--map-root-user", "--ipc"])
        .args(&[&name])
        .start(dir.path());
    let owner = std::fs::read_to_string(format!("/proc/{}/uid_map", task.pid)).unwrap();
    task.dump(&[]);
    task.restore_ok(&[]);
    let theirs = std::fs::read_to_string(format!("/proc/{}/uid_map", task.pid)).unwrap();
    assert_eq!(theirs, owner);
    assert_eq!(task.verdict(), "PASS\n");
}
