//! Dump and restore of eventfd, signalfd, timerfd and memfd fds, with our own `criu`. The
//! workload (tests/workloads/src/bin/af_anon.rs) sets them up, is dumped and restored, then
//! checks from inside that they behave as before: counters, semaphore mode, signals still
//! delivered, timers still firing, memfd contents, seals, and fd and mappings one object.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use harness::require_root;
use state_task::{Argv, StateTask};

/// `af_anon KIND RESULT_FILE`, started in `dir`.
fn start(kind: &str, dir: &std::path::Path) -> StateTask {
    StateTask::workload("af_anon")
        .args(&[kind])
        .argv(Argv::ArgsResult)
        .start(dir)
}

/// Dumps and restores the `kind` workload; returns its verdict.
fn round_trip(kind: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut task = start(kind, dir.path());
    task.dump(&[]);
    task.restore_ok(&[]);
    task.verdict()
}

#[test]
fn eventfd_counter_and_semaphore_survive() {
    require_root();
    assert_eq!(round_trip("eventfd"), "PASS\n");
}

#[test]
fn signalfd_still_takes_its_signals() {
    require_root();
    assert_eq!(round_trip("signalfd"), "PASS\n");
}

#[test]
fn timerfd_keeps_its_time_and_keeps_firing() {
    require_root();
    assert_eq!(round_trip("timerfd"), "PASS\n");
}

#[test]
fn memfd_fd_and_mappings_are_one_object_again() {
    require_root();
    assert_eq!(round_trip("memfd"), "PASS\n");
}

#[test]
fn memfd_images_are_in_criu_form() {
    require_root();
    use criu_proto::images::{FdTypes, FileEntry, MemfdInodeEntry};
    use criu_proto::{ImageKind, ImageReader};
    let dir = tempfile::tempdir().unwrap();
    let task = start("memfd", dir.path());
    let out = task.try_dump(&["-R"]);
    task.assert_ok(&out, "dump");
    let images = dir.path().join("images");
    let inodes = ImageReader::open(&images, &ImageKind::MEMFD_INODE, None)
        .unwrap()
        .read_all::<MemfdInodeEntry>()
        .unwrap();
    let mut names: Vec<&str> = inodes.iter().map(|i| i.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["af-future", "af-memfd", "af-sealed"]);
    let files = ImageReader::open(&images, &ImageKind::FILES, None)
        .unwrap()
        .read_all::<FileEntry>()
        .unwrap();
    let memfds = files
        .iter()
        .filter(|f| f.r#type == FdTypes::Memfd as i32)
        .count();
    // fd 3, the mappings' entry, the sealed memfd and its read-only reopen, the memfd sealed
    // against future writes and its mapping's entry.
    assert_eq!(memfds, 6);
    for i in &inodes {
        let pagemap = images.join(ImageKind::SHMEM_PAGEMAP.file_name(Some(u64::from(i.shmid))));
        assert!(pagemap.exists(), "{} missing", pagemap.display());
    }
    assert_eq!(task.result_text(), "READY\n");
}
