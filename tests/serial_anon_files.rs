//! Dump and restore of eventfd, signalfd, timerfd and memfd fds, with our own `criu`. The
//! workload (tests/workloads/src/bin/af_anon.rs) sets them up, is dumped and restored, then
//! checks from inside that they behave as before: counters, semaphore mode, signals still
//! delivered, timers still firing, memfd contents, seals, and fd and mappings one object.

#[path = "workloads/src/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use harness::{bin, is_root, wait_until};

fn criu(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .arg("--no-default-config")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run criu")
}

/// The workload; killed (by pid, once restored) and reaped when dropped.
struct Task {
    child: Option<Child>,
    pid: i32,
    result: PathBuf,
}

impl Task {
    fn start(kind: &str, dir: &Path) -> Task {
        let result = dir.join("result");
        let child = Command::new(bin("af_anon"))
            .arg(kind)
            .arg(&result)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start af_anon");
        let task = Task {
            pid: child.id() as i32,
            child: Some(child),
            result,
        };
        assert!(
            wait_until(Duration::from_secs(10), || task.text() != ""),
            "af_anon {kind} never got ready"
        );
        assert_eq!(task.text(), "READY\n");
        task
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.result).unwrap_or_default()
    }

    fn reap(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    fn verdict(&self) -> String {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .unwrap();
        wait_until(Duration::from_secs(10), || {
            harness::is_verdict(&self.text())
        });
        self.text()
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        self.reap();
    }
}

/// Dumps and restores the `kind` workload; returns its verdict.
fn round_trip(kind: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let mut task = Task::start(kind, dir.path());
    let pid = task.pid.to_string();
    let out = criu(
        &["dump", "-t", &pid, "-D", "images", "-o", "dump.log", "-v4"],
        dir.path(),
    );
    let log = std::fs::read_to_string(images.join("dump.log")).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "dump failed: {out:?}\n{log}");
    task.reap();
    let out = criu(
        &["restore", "-D", "images", "-o", "restore.log", "-v4", "-d"],
        dir.path(),
    );
    let log = std::fs::read_to_string(images.join("restore.log")).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "restore failed: {out:?}\n{log}");
    task.verdict()
}

#[test]
fn eventfd_counter_and_semaphore_survive() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    assert_eq!(round_trip("eventfd"), "PASS\n");
}

#[test]
fn signalfd_still_takes_its_signals() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    assert_eq!(round_trip("signalfd"), "PASS\n");
}

#[test]
fn timerfd_keeps_its_time_and_keeps_firing() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    assert_eq!(round_trip("timerfd"), "PASS\n");
}

#[test]
fn memfd_fd_and_mappings_are_one_object_again() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    assert_eq!(round_trip("memfd"), "PASS\n");
}

#[test]
fn memfd_images_are_in_criu_form() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    use criu_proto::images::{FdTypes, FileEntry, MemfdInodeEntry};
    use criu_proto::{ImageKind, ImageReader};
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let task = Task::start("memfd", dir.path());
    let pid = task.pid.to_string();
    let out = criu(&["dump", "-R", "-t", &pid, "-D", "images"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
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
    assert_eq!(task.text(), "READY\n");
}
