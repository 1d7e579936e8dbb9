//! `criu restore` of real processes. Runs in the nextest `serial` group (see
//! .config/nextest.toml): restores claim exact pids.

use std::process::{Command, Output};

fn criu(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .arg("--no-default-config")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run criu")
}

#[test]
fn restore_from_an_empty_dir_fails_and_leaves_no_pidfile() {
    let dir = tempfile::tempdir().unwrap();
    let out = criu(&["restore", "-D", ".", "-o", "restore.log", "--pidfile", "pid", "-d"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(dir.path().join("restore.log").exists());
    assert!(!dir.path().join("pid").exists());
}
