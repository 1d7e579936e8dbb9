//! A child that shares its parent's fd table (CLONE_FILES), lives in a chroot with its cwd
//! below the new root, and has two adjacent grows-down areas comes back as it was
//! (tests/workloads/src/bin/rs_fs_share.rs checks itself after restore).

#[path = "workloads/src/harness.rs"]
mod harness;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::{bin, descendants, kill_tree, require_root, wait_until};

fn criu(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .arg("--no-default-config")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run criu")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn shared_fd_table_chroot_and_grows_down_areas_survive_restore() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    let results = dir.path().join("results");
    std::fs::create_dir_all(results.join("jail/sub")).unwrap();
    std::fs::write(results.join("jail/sub/marker"), "").unwrap();
    let mut original = Command::new(bin("rs_fs_share"))
        .arg(&results)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = original.id() as i32;
    let ready = |role: &str| read(&results.join(role)) == "READY\n";
    assert!(
        wait_until(Duration::from_secs(10), || ready("parent")
            && ready("child")),
        "rs_fs_share never got ready"
    );
    let tree = descendants(pid);
    assert_eq!(tree.len(), 2);

    let out = criu(
        &[
            "dump",
            "-t",
            &pid.to_string(),
            "-D",
            "images",
            "-o",
            "dump.log",
        ],
        dir.path(),
    );
    let dump_log = read(&dir.path().join("images/dump.log"));
    assert_eq!(out.status.code(), Some(0), "dump: {out:?}\n{dump_log}");
    let _ = original.wait();
    let gone = |p: i32| {
        let _ = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(p),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        !Path::new(&format!("/proc/{p}")).exists()
    };
    assert!(
        wait_until(Duration::from_secs(10), || tree.iter().all(|&p| gone(p))),
        "dumped tree still there"
    );
    // One fd table, dumped once.
    let fdinfos = std::fs::read_dir(dir.path().join("images"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("fdinfo-")
        })
        .count();
    assert_eq!(fdinfos, 1, "fdinfo images of a shared table");

    let out = criu(
        &["restore", "-D", "images", "-o", "restore.log", "-v4", "-d"],
        dir.path(),
    );
    let log = read(&dir.path().join("images/restore.log"));
    assert_eq!(out.status.code(), Some(0), "restore: {out:?}\n{log}");
    let restored = descendants(pid);
    for p in &restored {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*p),
            nix::sys::signal::Signal::SIGUSR1,
        );
    }
    let done = |role: &str| !ready(role) && !read(&results.join(role)).is_empty();
    wait_until(Duration::from_secs(10), || done("parent") && done("child"));
    let verdicts = (read(&results.join("parent")), read(&results.join("child")));
    kill_tree(pid);
    assert_eq!(restored, tree, "pids after restore");
    assert_eq!(
        verdicts,
        ("PASS\n".to_string(), "PASS\n".to_string()),
        "{log}"
    );
}
