//! Private memory a forked child still shares copy-on-write with its parent is shared again
//! after restore: the restored tree uses no more memory than the original, and each task still
//! sees its own writes only (tests/workloads/src/bin/rs_cow.rs checks itself).

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

/// Proportional set size of the tree under `pid`, in KiB.
fn tree_pss_kib(pid: i32) -> u64 {
    descendants(pid)
        .iter()
        .map(|p| {
            let rollup = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).unwrap();
            let line = rollup.lines().find(|l| l.starts_with("Pss:")).unwrap();
            line.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn pages_shared_after_fork_stay_shared_after_restore() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    let results = dir.path().join("results");
    std::fs::create_dir(&results).unwrap();
    let mut original = Command::new(bin("rs_cow"))
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
        "rs_cow never got ready"
    );
    let tree = descendants(pid);
    assert_eq!(tree.len(), 2);
    let before = tree_pss_kib(pid);

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
    assert_eq!(
        out.status.code(),
        Some(0),
        "dump: {out:?}\n{}",
        read(&dir.path().join("images/dump.log"))
    );
    let _ = original.wait();
    // The killed child may be reparented to this process (a subreaper under some runners).
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
    let out = criu(
        &["restore", "-D", "images", "-o", "restore.log", "-v4", "-d"],
        dir.path(),
    );
    let log = read(&dir.path().join("images/restore.log"));
    assert_eq!(out.status.code(), Some(0), "restore: {out:?}\n{log}");
    let restored = descendants(pid);
    let after = tree_pss_kib(pid);
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
    assert_eq!(verdicts, ("PASS\n".to_string(), "PASS\n".to_string()));
    // 32 MiB area: 8 MiB rewritten by each task, 16 MiB shared. Unshared, the tree would use
    // 16 MiB more than before.
    eprintln!("tree Pss before dump {before} KiB, after restore {after} KiB");
    assert!(
        after < before + 4096,
        "restored tree uses {after} KiB, the original {before} KiB\n{log}"
    );
}
