//! `criu exec`: the manual's examples (`close 1`, `open '&/foo/bar' 2`) run inside a real
//! process, checked through /proc.

#[path = "workloads/src/harness.rs"]
mod harness;

use harness::*;
use std::path::PathBuf;

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

#[test]
fn manual_examples_through_the_command_module() {
    require_root();
    let mut w = Workload::start("tw_blocker", &["read"]);
    w.expect("READY", LONG);
    wait_in_syscall(w.pid, w.pid, libc::SYS_read);
    assert!(fd_target(w.pid, 1).is_some());

    assert_eq!(criu::commands::exec::run(w.pid, &words(&["close", "1"])), 0);
    assert_eq!(fd_target(w.pid, 1), None, "fd 1 still open");

    let path = std::env::temp_dir().join(format!("criu-tracee-exec-{}", std::process::id()));
    std::fs::write(&path, b"").unwrap();
    let arg = format!("&{}", path.display());
    assert_eq!(
        criu::commands::exec::run(w.pid, &words(&["open", &arg, "2"])),
        0
    );
    // open() takes the lowest free fd: the 1 just closed.
    assert_eq!(fd_target(w.pid, 1), Some(path.clone()));
    let flags = std::fs::read_to_string(format!("/proc/{}/fdinfo/1", w.pid)).unwrap();
    let flags = flags
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        i64::from_str_radix(&flags, 8).unwrap() & 3,
        2,
        "opened O_RDWR"
    );

    // Errors: unknown syscall, bad number, missing task.
    assert_eq!(criu::commands::exec::run(w.pid, &words(&["nosuchcall"])), 1);
    assert_eq!(
        criu::commands::exec::run(w.pid, &words(&["close", "one"])),
        1
    );
    assert_eq!(criu::commands::exec::run(i32::MAX, &words(&["getpid"])), 1);

    // The task runs on: its read completes, and its output goes to the file now at fd 1.
    w.send("hi\n");
    assert_eq!(w.wait_exit(LONG), Exit::Code(0));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "READ 3 hi\n");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn execute_returns_the_raw_result() {
    require_root();
    let w = Workload::start("tw_blocker", &["read"]);
    w.expect("READY", LONG);
    wait_in_syscall(w.pid, w.pid, libc::SYS_read);
    let timeout = std::time::Duration::from_secs(10);
    let call = criu_tracee::exec::parse(&words(&["getpid"])).unwrap();
    assert_eq!(
        criu_tracee::exec::execute(w.pid, &call, timeout).unwrap(),
        w.pid as i64
    );
    let call = criu_tracee::exec::parse(&words(&["close", "-1"])).unwrap();
    assert_eq!(
        criu_tracee::exec::execute(w.pid, &call, timeout).unwrap(),
        -(libc::EBADF as i64)
    );
    let path = PathBuf::from("/proc/self/comm");
    let call = criu_tracee::exec::parse(&words(&["open", "&/proc/self/comm", "0"])).unwrap();
    let fd = criu_tracee::exec::execute(w.pid, &call, timeout).unwrap();
    assert!(fd >= 3);
    let target = fd_target(w.pid, fd).unwrap();
    assert_eq!(
        target,
        PathBuf::from(format!("/proc/{}/comm", w.pid)),
        "{path:?} resolved in the task"
    );
    assert_eq!(tracer(w.pid, w.pid), 0);
}

#[test]
fn manual_examples_through_the_binary() {
    let w = Workload::start("tw_blocker", &["read"]);
    w.expect("READY", LONG);
    wait_in_syscall(w.pid, w.pid, libc::SYS_read);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_criu"))
        .args([
            "exec",
            "--no-default-config",
            "-t",
            &w.pid.to_string(),
            "close",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    assert_eq!(fd_target(w.pid, 1), None);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_criu"))
        .args([
            "exec",
            "--no-default-config",
            "-t",
            &w.pid.to_string(),
            "open",
            "&/proc/self/comm",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    assert_eq!(
        fd_target(w.pid, 1),
        Some(PathBuf::from(format!("/proc/{}/comm", w.pid)))
    );
}
