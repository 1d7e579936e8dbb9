//! The `criu` command line as tools and CRIU's test suite call it.

use std::path::Path;
use std::process::{Command, Output};

fn criu(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .args(args)
        .current_dir(cwd)
        .env_remove("CRIU_CONFIG_FILE")
        .output()
        .expect("run criu")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A command that stopped with exit 1, saying `what` on stderr.
fn assert_refused(out: &std::process::Output, what: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(what), "{}", text(&out.stderr));
}
#[test]
fn no_arguments_prints_usage_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let out = criu(&[], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("Usage:"));
}

#[test]
fn help_and_version_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let out = criu(&["-h"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("cpuinfo check"));
    assert!(text(&out.stdout).contains("--leave-running"));
    let out = criu(&["-V"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("Version: "));
}

#[test]
fn unknown_option_and_command_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = criu(&["--no-such-option", "check"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unrecognized option '--no-such-option'"));
    let out = criu(&["--no-default-config", "frobnicate"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unknown command: frobnicate"));
}

#[test]
fn log_file_exists_after_an_early_failure() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("img");
    std::fs::create_dir(&images).unwrap();
    let out = criu(
        &[
            "dump",
            "--no-default-config",
            "-D",
            "img",
            "-o",
            "dump.log",
            "-t",
            "999999999",
            "-v4",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let log = std::fs::read_to_string(images.join("dump.log")).expect("log file in the images dir");
    assert!(log.contains("Error"), "log: {log}");
    // Level 4 has timestamps.
    assert!(log.starts_with("(00."), "log: {log}");
    // Errors also reach stderr.
    assert!(text(&out.stderr).contains("Error"));
}

#[test]
fn work_dir_holds_the_log() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("img")).unwrap();
    std::fs::create_dir(dir.path().join("work")).unwrap();
    let _ = criu(
        &[
            "restore",
            "--no-default-config",
            "-D",
            "img",
            "-W",
            "work",
            "-o",
            "r.log",
        ],
        dir.path(),
    );
    assert!(dir.path().join("work/r.log").exists());
    assert!(!dir.path().join("img/r.log").exists());
}

#[test]
fn default_level_has_no_timestamps_and_no_info() {
    let dir = tempfile::tempdir().unwrap();
    let _ = criu(
        &[
            "dump",
            "--no-default-config",
            "-o",
            "d.log",
            "-t",
            "999999999",
        ],
        dir.path(),
    );
    let log = std::fs::read_to_string(dir.path().join("d.log")).unwrap();
    assert!(log.starts_with("Error: "), "log: {log}");
    assert!(!log.contains("criu-rs"), "info line at level 2: {log}");
}

#[test]
fn config_file_from_environment_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("env.conf");
    std::fs::write(&conf, "log-file from-env.log\nverbosity=4\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_criu"))
        .args(["dump", "--no-default-config", "-t", "999999999"])
        .current_dir(dir.path())
        .env("CRIU_CONFIG_FILE", &conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(dir.path().join("from-env.log").exists());
}

#[test]
fn single_dash_verbosity_parses_as_level_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = criu(
        &[
            "dump",
            "-verbosity=0",
            "--no-default-config",
            "-o",
            "l.log",
            "-t",
            "999999999",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    // Level 0 logs no errors at all.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("l.log")).unwrap(),
        ""
    );
}

#[test]
fn dump_to_a_page_server_without_its_port_fails_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("img")).unwrap();
    let mut child = Command::new("sleep").arg("100").spawn().unwrap();
    let pid = child.id().to_string();
    let out = criu(
        &[
            "dump",
            "--no-default-config",
            "-D",
            "img",
            "-o",
            "dump.log",
            "-t",
            &pid,
            "--page-server",
            "--address",
            "127.0.0.1",
        ],
        dir.path(),
    );
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--page-server needs --port"), "{stderr}");
    assert!(alive, "the refused dump touched the task");
    let log = std::fs::read_to_string(dir.path().join("img/dump.log")).unwrap();
    assert!(log.contains("--page-server"), "log: {log}");
    let files: Vec<_> = std::fs::read_dir(dir.path().join("img"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files, vec!["dump.log"]);
}

#[test]
fn restore_refuses_external_resources() {
    let dir = tempfile::tempdir().unwrap();
    let out = criu(
        &[
            "restore",
            "--no-default-config",
            "-o",
            "r.log",
            "-d",
            "--external",
            "tty[1:2]:y",
        ],
        dir.path(),
    );
    assert_refused(
        &out,
        "restore: option --external tty[1:2]:y is not supported yet (only mnt[KEY]:PATH, \
         mnt[], dev[KEY]:DEVICE, veth[IN]:OUT[@BRIDGE], macvlan[IN]:OUT and netdev[IN]:OUT are)",
    );
    assert!(dir.path().join("r.log").exists());
}

#[test]
fn dump_refuses_external_kinds_it_does_not_handle() {
    let dir = tempfile::tempdir().unwrap();
    let out = criu(
        &[
            "dump",
            "--no-default-config",
            "-t",
            "999999999",
            "--external",
            "dev[8]:disk",
        ],
        dir.path(),
    );
    assert_refused(&out, "dump: option --external dev[8]:disk is not supported");
}

#[test]
fn an_option_from_a_config_file_is_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("c.conf");
    std::fs::write(&conf, "lazy-pages\n").unwrap();
    let cfg = format!("--config={}", conf.display());
    let out = criu(&["dump", &cfg, "-t", "999999999"], dir.path());
    assert_refused(&out, "dump: option --lazy-pages is not supported yet");
}

#[test]
fn a_command_not_implemented_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = criu(&["lazy-pages", "--no-default-config"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(said.contains("lazy-pages: not supported yet"), "{said}");
}

#[test]
fn dedup_without_a_parent_dump_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = criu(&["dedup", "--no-default-config", "-D", "."], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(
        said.contains("no parent dump to deduplicate against"),
        "{said}"
    );
}

#[test]
fn swrk_without_its_socket_fails_naming_the_fd() {
    let dir = tempfile::tempdir().unwrap();
    let out = criu(&["swrk", "3", "--no-default-config"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("swrk: fd 3"),
        "{}",
        text(&out.stderr)
    );
}
