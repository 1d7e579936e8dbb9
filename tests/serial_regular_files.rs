//! Regular files through dump and restore, checked from inside a self-checking workload
//! (tests/workloads/src/bin/rf_files.rs): unlinked files carried as ghost files (contents,
//! offset, holes), a deleted mapped file and a removed cwd, the ghost limit, --link-remap, fd
//! flags and offsets shared with a child, and a file changed between dump and restore.
//! Runs in the nextest `serial` group: restores claim exact pids.

#[path = "workloads/src/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use harness::{bin, is_root, kill_tree, wait_until};

fn criu(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .arg("--no-default-config")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run criu")
}

/// `rf_files MODE`, killed with its children when dropped.
struct Task {
    child: Option<Child>,
    pid: i32,
    result: PathBuf,
    work: PathBuf,
    dir: PathBuf,
}

impl Task {
    fn start(mode: &str, dir: &Path) -> Task {
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::create_dir_all(dir.join("images")).unwrap();
        let result = dir.join("result");
        let child = Command::new(bin("rf_files"))
            .arg(mode)
            .arg(&result)
            .arg(&work)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rf_files");
        let task = Task {
            pid: child.id() as i32,
            child: Some(child),
            result,
            work,
            dir: dir.to_path_buf(),
        };
        assert!(
            wait_until(Duration::from_secs(10), || task.result_text() == "READY\n"),
            "rf_files {mode} never got ready: {}",
            task.result_text()
        );
        task
    }

    fn result_text(&self) -> String {
        std::fs::read_to_string(&self.result).unwrap_or_default()
    }

    fn alive(&self) -> bool {
        harness::state(self.pid, self.pid).is_some_and(|s| s != 'Z' && s != 'X')
    }

    fn dump(&self, extra: &[&str]) -> Output {
        let pid = self.pid.to_string();
        let mut args = vec!["dump", "-t", &pid, "-D", "images", "-o", "dump.log", "-v4"];
        args.extend_from_slice(extra);
        criu(&args, &self.dir)
    }

    fn dump_ok(&mut self, extra: &[&str]) {
        let out = self.dump(extra);
        assert_eq!(
            out.status.code(),
            Some(0),
            "dump failed: {}",
            self.log("dump.log")
        );
        // The original is gone: reap it so that its pid is free for the restore.
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    fn restore(&self) -> Output {
        criu(
            &["restore", "-D", "images", "-o", "restore.log", "-v4", "-d"],
            &self.dir,
        )
    }

    fn restore_ok(&self) {
        let out = self.restore();
        assert_eq!(
            out.status.code(),
            Some(0),
            "restore failed: {}",
            self.log("restore.log")
        );
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join("images").join(name)).unwrap_or_default()
    }

    /// Tells the task to check itself; returns its verdict.
    fn verdict(&self) -> String {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .unwrap();
        wait_until(Duration::from_secs(10), || {
            harness::is_verdict(&self.result_text())
        });
        self.result_text()
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        kill_tree(self.pid);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
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
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut task = Task::start("ghost", dir.path());
    let before = fd_targets(task.pid);
    task.dump_ok(&[]);
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
    task.restore_ok();
    assert_eq!(fd_targets(task.pid), before);
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn a_ghost_over_the_limit_fails_the_dump_and_the_task_runs_on() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut task = Task::start("big", dir.path());
    let out = task.dump(&[]);
    assert_ne!(out.status.code(), Some(0));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        task.log("dump.log")
    );
    let big = task.work.join("big").display().to_string();
    assert!(
        said.contains("--ghost-limit") && said.contains(&big),
        "{said}"
    );
    assert!(task.alive(), "the task did not survive the failed dump");
    assert!(!dir.path().join("images/inventory.img").exists());
    // With a limit above its size (suffixes as CRIU takes them) the file travels.
    task.dump_ok(&["--ghost-limit", "3M"]);
    task.restore_ok();
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn a_file_unlinked_from_one_name_is_linked_back_with_link_remap() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut task = Task::start("link", dir.path());
    let out = task.dump(&[]);
    assert_ne!(out.status.code(), Some(0));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        task.log("dump.log")
    );
    assert!(said.contains("--link-remap"), "{said}");
    assert!(task.alive());
    task.dump_ok(&["--link-remap"]);
    // The link the dump made stays for the restore.
    let links: Vec<String> = std::fs::read_dir(&task.work)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("link_remap."))
        .collect();
    assert_eq!(links.len(), 1, "{links:?}");
    task.restore_ok();
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn fd_flags_cloexec_and_offsets_shared_with_a_child_come_back() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut task = Task::start("flags", dir.path());
    let before = fd_targets(task.pid);
    let tree = harness::descendants(task.pid);
    assert_eq!(tree.len(), 2, "{tree:?}");
    let child = tree[1];
    task.dump_ok(&[]);
    // The child was killed too; its pid must be free before the restore.
    let gone = || !Path::new(&format!("/proc/{child}")).exists();
    assert!(wait_until(Duration::from_secs(5), gone));
    task.restore_ok();
    assert_eq!(fd_targets(task.pid), before);
    assert_eq!(fd_targets(child), before);
    assert_eq!(harness::descendants(task.pid), tree);
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn a_file_whose_size_changed_fails_the_restore_clearly() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut task = Task::start("size", dir.path());
    task.dump_ok(&[]);
    let sized = task.work.join("sized");
    std::fs::write(&sized, vec![b't'; 150]).unwrap();
    let out = task.restore();
    assert_eq!(out.status.code(), Some(1));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        task.log("restore.log")
    );
    assert!(
        said.contains(&sized.display().to_string()) && said.contains("size is 150"),
        "{said}"
    );
    assert!(!task.alive(), "a failed restore left the task behind");
    // Back to its dumped size, the file is accepted again.
    std::fs::write(&sized, vec![b's'; 100]).unwrap();
    task.restore_ok();
    assert_eq!(task.verdict(), "PASS\n");
}
