//! What `criu dump` refuses before it touches a task, naming the pid and the namespace: a
//! tree whose tasks do not share the root's
//! namespaces, a pid namespace dumped from a task other than its init or without one, a network namespace
//! with a device of a kind not kept (a vxlan), and a mount namespace holding a mount that
//! cannot be restored (naming the option that would make it external). Needs root.

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
    assert_refused_naming(pid, pid, what);
}

/// [`assert_refused`] for a dump of `pid` whose message names task `named`.
fn assert_refused_naming(pid: i32, named: i32, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = criu_dump(pid, dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "dump of pid {pid} succeeded: {stderr}"
    );
    let want = format!("pid {named}: {what}");
    let named_mount = format!("pid {named}: mount ");
    let found = stderr.contains(&want) || (stderr.contains(&named_mount) && stderr.contains(what));
    assert!(found, "want {want:?} in: {stderr}");
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

#[test]
fn a_mount_namespace_with_a_mount_that_cannot_be_restored_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("ram");
    std::fs::create_dir(&mnt).unwrap();
    // ramfs: nothing to mount it again from, and no device to name.
    let script = format!("mount -t ramfs ram {} && exec sleep 100", mnt.display());
    let task = unshared(
        &["-m", "--propagation", "private", "sh", "-c", &script],
        "mnt",
    );
    let pid = task.0.id() as i32;
    wait_exec_sleep(pid, "the ramfs was never mounted");
    let mnt = mnt.display();
    assert_refused_naming(
        pid,
        pid,
        &format!("({mnt}, unsupported, source ram): cannot be restored; make it external with --external mnt[{mnt}]:KEY"),
    );
}

/// Runs `check`, then kills `stray` (a task that outlives `task`'s process) and `task`, also
/// when the check fails.
fn checked_then_killed(task: Killed, stray: i32, check: impl FnOnce() + std::panic::UnwindSafe) {
    let checked = std::panic::catch_unwind(check);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(stray),
        nix::sys::signal::Signal::SIGKILL,
    );
    drop(task);
    if let Err(e) = checked {
        std::panic::resume_unwind(e);
    }
}

/// Waits until `pid` (a shell that sets something up, then execs sleep) runs sleep.
fn wait_exec_sleep(pid: i32, what: &str) {
    let start = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .starts_with("sleep")
    {
        assert!(start.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `unshare ARGS` and waits until it left our `kind` namespace.
fn unshared(args: &[&str], kind: &str) -> Killed {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root");
    let child = Command::new("unshare")
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .expect("run unshare");
    let held = Killed(child);
    wait_unshared(held.0.id() as i32, kind);
    held
}

#[test]
fn a_network_namespace_with_a_device_of_a_kind_not_kept_is_refused_naming_it() {
    let script = "ip link add crtest0 type vxlan id 9 dstport 4789 && exec sleep 100";
    let task = unshared(&["-n", "sh", "-c", script], "net");
    let pid = task.0.id() as i32;
    // sh execs sleep once the device exists.
    wait_exec_sleep(pid, "the device was never made");
    assert_refused(
        pid,
        "its network namespace has device crtest0 of kind vxlan",
    );
}

#[test]
fn a_tree_whose_child_left_the_root_uts_namespace_is_refused() {
    let script = "unshare -u sleep 100 & exec sleep 100";
    let task = unshared(&["-u", "sh", "-c", script], "uts");
    let root = task.0.id() as i32;
    let start = Instant::now();
    let child = loop {
        let children = std::fs::read_to_string(format!("/proc/{root}/task/{root}/children"))
            .unwrap_or_default();
        let c = children
            .split_whitespace()
            .next()
            .and_then(|c| c.parse::<i32>().ok());
        if let Some(c) = c.filter(|&c| ns(c, "uts") != ns(root, "uts") && !ns(c, "uts").is_empty())
        {
            break c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the child never unshared"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    checked_then_killed(task, child, || {
        assert_refused_naming(root, child, "its uts namespace differs from the root's");
    });
}

#[test]
fn a_pid_namespace_is_refused_below_its_init() {
    // unshare -p --fork: unshare stays in ours with pid_for_children set; sh is pid 1 of the
    // new one, and its child sleep pid 2.
    let task = Killed(
        Command::new("unshare")
            .args(["-p", "--fork", "sh", "-c", "sleep 100 & wait"])
            .stdin(Stdio::null())
            .spawn()
            .expect("run unshare"),
    );
    let creator = task.0.id() as i32;
    let child_of = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .and_then(|c| c.parse::<i32>().ok())
    };
    let start = Instant::now();
    let (init, second) = loop {
        if let Some(init) = child_of(creator) {
            if let Some(second) = child_of(init) {
                break (init, second);
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "unshare never forked"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    // The init outlives its creator: kill it, then the creator reaps it.
    checked_then_killed(task, init, || {
        assert_refused(second, "it is pid 2 in its own pid namespace");
    });
}

#[test]
fn a_task_whose_children_would_be_born_in_a_pid_namespace_without_init_is_refused() {
    // unshare -p without --fork: sleep's children would be born in the new namespace, which
    // has no init yet (its first child would be it).
    let task = Killed(
        Command::new("unshare")
            .args(["-p", "sleep", "100"])
            .stdin(Stdio::null())
            .spawn()
            .expect("run unshare"),
    );
    let pid = task.0.id() as i32;
    wait_exec_sleep(pid, "unshare never ran sleep");
    assert_refused(pid, "the pid namespace of its children has no init yet");
}
