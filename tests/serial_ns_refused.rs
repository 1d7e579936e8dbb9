//! A task in a namespace of its own is refused by `criu dump` before it is touched, naming
//! the pid and the namespace kind, until namespaces are dumped and restored: before this rule
//! such a task was dumped and came back silently in the host's namespaces. Needs root.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn criu_dump(pid: i32, dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .args(["dump", "--no-default-config", "-t", &pid.to_string(), "-D"])
        .arg(dir)
        .args(["-o", "dump.log", "-v4", "--shell-job"])
        .stdin(Stdio::null())
        .output()
        .expect("run criu")
}

fn ns(pid: i32, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map(|l| l.display().to_string())
        .unwrap_or_default()
}

/// `/proc/PID/stat`'s state letter.
fn state(pid: i32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')')
        .next()
        .and_then(|s| s.trim().chars().next())
        .unwrap_or('?')
}

/// Waits until `pid` has left criu's namespace of `kind` (unshare has done its work).
fn wait_unshared(pid: i32, kind: &str) {
    let me = std::process::id() as i32;
    let start = Instant::now();
    while ns(pid, kind) == ns(me, kind) || ns(pid, kind).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "pid {pid} never left our {kind} namespace"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Dumps `pid` and checks the refusal: non-zero exit, the message names the pid and `what`,
/// no inventory (the directory does not claim a dump), and the task runs on untraced.
fn assert_refused(pid: i32, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = criu_dump(pid, dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "dump of pid {pid} succeeded: {stderr}"
    );
    let want = format!("pid {pid}: {what}");
    assert!(stderr.contains(&want), "want {want:?} in: {stderr}");
    assert!(!dir.path().join("inventory.img").exists());
    assert!(
        matches!(state(pid), 'S' | 'R'),
        "pid {pid} is in state {}",
        state(pid)
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.contains("TracerPid:\t0\n"),
        "pid {pid} is still traced"
    );
}

/// unshare's arguments: a pid namespace needs --fork so that there is a task inside it.
fn flag_args(flag: &str) -> Vec<&str> {
    let mut args = vec![flag];
    if flag == "-p" {
        args.push("--fork");
    }
    args.extend(["sleep", "100"]);
    args
}

fn unshared_sleep(flag: &str, kind: &str) -> Killed {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root");
    let child = Command::new("unshare")
        .args(flag_args(flag))
        .stdin(Stdio::null())
        .spawn()
        .expect("run unshare");
    let pid = child.id() as i32;
    let held = Killed(child);
    wait_unshared(pid, kind);
    held
}

#[test]
fn own_uts_ipc_net_and_mount_namespaces_are_refused() {
    for (flag, kind) in [("-u", "uts"), ("-i", "ipc"), ("-n", "net"), ("-m", "mnt")] {
        let task = unshared_sleep(flag, kind);
        assert_refused(task.0.id() as i32, &format!("its {kind} namespace"));
    }
}

#[test]
fn a_pid_namespace_is_refused_for_the_task_and_for_its_creator() {
    // unshare -p --fork: unshare stays in ours with pid_for_children set; sleep is pid 1 of
    // the new one.
    let task = unshared_sleep("-p", "pid_for_children");
    let creator = task.0.id() as i32;
    let start = Instant::now();
    let inner = loop {
        let children = std::fs::read_to_string(format!("/proc/{creator}/task/{creator}/children"))
            .unwrap_or_default();
        if let Some(c) = children.split_whitespace().next() {
            break c.parse::<i32>().unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "unshare never forked"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let inner_pid = nix::unistd::Pid::from_raw(inner);
    let refused = std::panic::catch_unwind(|| {
        assert_refused(inner, "its pid namespace");
        // The creator's tree holds the inner task too; its own link names the children's.
        assert_refused(creator, "the pid namespace of its children");
    });
    // The inner task outlives its creator: kill it, then the creator reaps it.
    let _ = nix::sys::signal::kill(inner_pid, nix::sys::signal::Signal::SIGKILL);
    drop(task);
    if let Err(e) = refused {
        std::panic::resume_unwind(e);
    }
}
