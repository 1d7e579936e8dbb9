//! `criu restore` of real processes, dumped by our own `criu dump`. A self-checking workload
//! (tests/workloads/src/bin/rs_state.rs) sets up state, is dumped and restored, then checks
//! itself; the harness compares pid, /proc/PID/maps, fds and creds before and after. Runs in
//! the nextest `serial` group (see .config/nextest.toml): restores claim exact pids.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use harness::{require_root, wait_until};
use state_task::StateTask;

fn criu(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .arg("--no-default-config")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run criu")
}

/// Dumps the task into `dir/images` with `extra` options; the dump must succeed.
fn dump(task: &StateTask, dir: &Path, extra: &[&str]) {
    let pid = task.pid.to_string();
    let mut args = vec!["dump", "-t", &pid, "-D", "images", "-o", "dump.log", "-v4"];
    args.extend_from_slice(extra);
    let out = criu(&args, dir);
    let log = std::fs::read_to_string(dir.join("images/dump.log")).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "dump failed: {out:?}\n{log}");
}

/// What the harness compares before and after.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    maps: String,
    fds: Vec<(String, String)>,
    ids: Vec<String>,
}

/// /proc/PID/maps, with the inode of shared anonymous memory blanked: a restore makes a new
/// shmem object, as CRIU does.
fn maps_of(pid: i32) -> String {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    maps.lines()
        .map(|l| {
            if l.ends_with("/dev/zero (deleted)") {
                let f: Vec<&str> = l.split_whitespace().collect();
                format!("{} {} {} {} - /dev/zero (deleted)", f[0], f[1], f[2], f[3])
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn snapshot(pid: i32) -> Snapshot {
    let maps = maps_of(pid);
    let mut fds: Vec<(String, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_link(e.path()).unwrap().display().to_string(),
            )
        })
        .collect();
    fds.sort();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ids = status
        .lines()
        .filter(|l| {
            [
                "Uid:",
                "Gid:",
                "Groups:",
                "CapInh:",
                "CapPrm:",
                "CapEff:",
                "CapBnd:",
                "CapAmb:",
                "NoNewPrivs:",
                "Umask:",
                // Tasks are pinned to their tracer's CPU while restored, not after.
                "Cpus_allowed_list:",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(str::to_string)
        .collect();
    Snapshot { maps, fds, ids }
}

#[test]
fn restored_process_has_its_state_back() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let mut task = StateTask::start(dir.path());
    let before = snapshot(task.pid);
    dump(&task, dir.path(), &[]);
    task.reap();
    let pidfile = dir.path().join("restored.pid");
    let out = criu(
        &[
            "restore",
            "-D",
            "images",
            "-o",
            "restore.log",
            "-v4",
            "-d",
            "--pidfile",
            pidfile.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "restore failed: {}",
        std::fs::read_to_string(images.join("restore.log")).unwrap_or_default()
    );
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap(),
        task.pid.to_string()
    );
    let after = snapshot(task.pid);
    assert_eq!(before.maps, after.maps);
    assert_eq!(before.fds, after.fds);
    assert_eq!(before.ids, after.ids);
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn dump_leave_running_then_restore_the_copy() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    let mut task = StateTask::start(dir.path());
    dump(&task, dir.path(), &["-R"]);
    // The original runs on; it is retired, and the copy takes its place.
    assert!(Path::new(&format!("/proc/{}", task.pid)).exists());
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(task.pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    task.reap();
    let out = criu(
        &["restore", "-D", "images", "-o", "restore.log", "-d"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn restore_over_a_pid_in_use_fails_and_leaves_nothing() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    let task = StateTask::start(dir.path());
    dump(&task, dir.path(), &["-R"]);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", task.pid)).unwrap();
    let out = criu(
        &[
            "restore",
            "-D",
            "images",
            "-o",
            "restore.log",
            "-d",
            "--pidfile",
            "p",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{out:?}"
    );
    assert!(!dir.path().join("images/p").exists());
    // The running original is untouched.
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{}/maps", task.pid)).unwrap(),
        maps
    );
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn restore_from_an_empty_dir_fails_and_leaves_no_pidfile() {
    let dir = tempfile::tempdir().unwrap();
    let out = criu(
        &[
            "restore",
            "-D",
            ".",
            "-o",
            "restore.log",
            "--pidfile",
            "pid",
            "-d",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(dir.path().join("restore.log").exists());
    assert!(!dir.path().join("pid").exists());
}

#[test]
fn truncated_image_fails_before_any_process_is_made() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    let mut task = StateTask::start(dir.path());
    let pid = task.pid;
    dump(&task, dir.path(), &[]);
    task.reap();
    let core = dir.path().join(format!("images/mm-{pid}.img"));
    let bytes = std::fs::read(&core).unwrap();
    std::fs::write(&core, &bytes[..bytes.len() / 2]).unwrap();
    let out = criu(
        &["restore", "-D", "images", "-o", "restore.log", "-d"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("mm-{pid}.img")),
        "{out:?}"
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "a half-restored task is left"
    );
}

#[test]
fn restore_without_detach_waits_and_exits_with_the_root_status() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    let mut task = StateTask::start(dir.path());
    dump(&task, dir.path(), &[]);
    task.reap();
    let pidfile = dir.path().join("restored.pid");
    let mut restore = Command::new(env!("CARGO_BIN_EXE_criu"))
        .args([
            "--no-default-config",
            "restore",
            "-D",
            "images",
            "-o",
            "restore.log",
            "--pidfile",
        ])
        .arg(&pidfile)
        .current_dir(dir.path())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || pidfile.exists()),
        "no pidfile"
    );
    // criu is still there, waiting for its restored child.
    assert!(restore.try_wait().unwrap().is_none());
    assert_eq!(task.verdict(), "PASS\n");
    let status = restore.wait().unwrap();
    assert_eq!(status.code(), Some(0), "criu exits with the root's status");
}

#[test]
fn stopped_task_is_restored_stopped() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    let mut task = StateTask::start(dir.path());
    let pid = nix::unistd::Pid::from_raw(task.pid);
    let state = |p: i32| {
        std::fs::read_to_string(format!("/proc/{p}/stat"))
            .ok()
            .and_then(|s| s.rsplit(") ").next().and_then(|r| r.chars().next()))
    };
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    assert!(wait_until(Duration::from_secs(5), || state(task.pid) == Some('T')));
    dump(&task, dir.path(), &[]);
    task.reap();
    let out = criu(
        &["restore", "-D", "images", "-o", "restore.log", "-d"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        wait_until(Duration::from_secs(5), || state(task.pid) == Some('T')),
        "not stopped: {:?}",
        state(task.pid)
    );
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert_eq!(task.verdict(), "PASS\n");
}
