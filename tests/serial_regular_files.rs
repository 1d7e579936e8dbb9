//! Regular files through dump and restore, checked from inside a self-checking workload
//! (tests/workloads/src/bin/rf_files.rs): unlinked files carried as ghost files (contents,
//! offset, holes), a deleted mapped file and a removed cwd, the ghost limit, --link-remap, fd
//! flags and offsets shared with a child, and a file changed between dump and restore.
//! Runs in the nextest `serial` group: restores claim exact pids.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::path::Path;

use harness::require_root;
use state_task::StateTask;

/// `rf_files MODE RESULT_FILE WORK_DIR`, started in `dir`.
fn start(mode: &str, dir: &Path) -> StateTask {
    StateTask::start_workload("rf_files", &[mode], dir)
}

fn fd_targets(pid: i32) -> Vec<(String, String)> {
    let mut fds: Vec<(String, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            (
                e.file_name().to_string_lossy().into_owned(),
                target.display().to_string(),
            )
        })
        .collect();
    fds.sort();
    fds
}

#[test]
fn unlinked_files_a_deleted_mapping_and_a_removed_cwd_come_back() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = start("ghost", dir.path());
    let before = fd_targets(task.pid);
    task.dump(&[]);
    let images = dir.path().join("images");
    assert!(images.join("remap-fpath.img").exists());
    // Five ghosts: the unlinked file, the sparse one, the two mapped ones, the cwd.
    let ghosts = (1..=6)
        .filter(|i| images.join(format!("ghost-file-{i:x}.img")).exists())
        .count();
    assert_eq!(ghosts, 5);
    // Holes are not written out: the 4 MiB sparse file takes a few pages in the images.
    let total: u64 = std::fs::read_dir(&images)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("ghost-file-"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(total < 1 << 20, "ghost images take {total} bytes");
    task.restore_ok(&[]);
    assert_eq!(fd_targets(task.pid), before);
    assert_eq!(task.verdict(), "PASS\n");
}

/// Dumps and restores rf_special in `mode`: its fds point where they did, and it passes its
/// own checks.
fn special_round_trip(mode: &str) {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = StateTask::start_workload("rf_special", &[mode], dir.path());
    let before = fd_targets(task.pid);
    task.dump(&[]);
    task.restore_ok(&[]);
    assert_eq!(fd_targets(task.pid), before);
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn symlinks_held_with_o_path_come_back_also_unlinked() {
    special_round_trip("symlink");
}

#[test]
fn a_cwd_and_an_fd_in_the_proc_dir_of_a_dead_child_come_back() {
    special_round_trip("deadproc");
}

#[test]
fn a_console_and_a_virtual_terminal_are_opened_again_by_path() {
    special_round_trip("console");
}

#[test]
fn a_ghost_over_the_limit_fails_the_dump_and_the_task_runs_on() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = start("big", dir.path());
    let out = task.try_dump(&[]);
    assert_ne!(out.status.code(), Some(0));
    let said = task.said(&out, "dump.log");
    let big = task.work.join("big").display().to_string();
    assert!(
        said.contains("--ghost-limit") && said.contains(&big),
        "{said}"
    );
    assert!(task.alive(), "the task did not survive the failed dump");
    assert!(!dir.path().join("images/inventory.img").exists());
    // With a limit above its size (suffixes as CRIU takes them) the file travels.
    task.dump(&["--ghost-limit", "3M"]);
    task.restore_ok(&[]);
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn a_file_unlinked_from_one_name_is_linked_back_with_link_remap() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = start("link", dir.path());
    let out = task.try_dump(&[]);
    assert_ne!(out.status.code(), Some(0));
    let said = task.said(&out, "dump.log");
    assert!(said.contains("--link-remap"), "{said}");
    assert!(task.alive());
    task.dump(&["--link-remap"]);
    // The link the dump made stays for the restore.
    let links: Vec<String> = std::fs::read_dir(&task.work)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("link_remap."))
        .collect();
    assert_eq!(links.len(), 1, "{links:?}");
    task.restore_ok(&[]);
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn fd_flags_cloexec_and_offsets_shared_with_a_child_come_back() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = start("flags", dir.path());
    let before = fd_targets(task.pid);
    let tree = harness::descendants(task.pid);
    assert_eq!(tree.len(), 2, "{tree:?}");
    let child = tree[1];
    // The dump waits for the child too: its pid must be free before the restore.
    task.dump(&[]);
    task.restore_ok(&[]);
    assert_eq!(fd_targets(task.pid), before);
    assert_eq!(fd_targets(child), before);
    assert_eq!(harness::descendants(task.pid), tree);
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn a_file_whose_size_changed_fails_the_restore_clearly() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = start("size", dir.path());
    task.dump(&[]);
    let sized = task.work.join("sized");
    std::fs::write(&sized, vec![b't'; 150]).unwrap();
    let out = task.restore(&[]);
    assert_eq!(out.status.code(), Some(1));
    let said = task.said(&out, "restore.log");
    assert!(
        said.contains(&sized.display().to_string()) && said.contains("size is 150"),
        "{said}"
    );
    assert!(!task.alive(), "a failed restore left the task behind");
    // Back to its dumped size, the file is accepted again.
    std::fs::write(&sized, vec![b's'; 100]).unwrap();
    task.restore_ok(&[]);
    assert_eq!(task.verdict(), "PASS\n");
}
