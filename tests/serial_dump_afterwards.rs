//! What happens to a tree that `criu dump` was run on: killed by default, left stopped with
//! `-s`, left running as it was when the dump fails (an unsupported fd, a missing pid, a
//! failing post-dump script), and no inventory that would make a failed dump look complete.

#[path = "workloads/src/harness.rs"]
mod harness;
#[macro_use]
#[path = "workloads/src/dump_images.rs"]
mod dump_images;

use std::process::{Command, Stdio};
use std::time::Duration;

use dump_images::*;
use harness::{require_root, wait_until};

#[test]
fn dump_kills_by_default_and_leave_stopped_stops() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (mut p, _, _, _) = start_state(dir.path(), 1, 1);
    let r = criu_dump(p.pid, dir.path(), &[]);
    assert_eq!(r.rc, 0, "dump failed: {}", r.stderr);
    let status = p.child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));

    let dir = tempfile::tempdir().unwrap();
    let (p, _, _, _) = start_state(dir.path(), 0, 1);
    let r = criu_dump(p.pid, dir.path(), &["-s"]);
    assert_eq!(r.rc, 0, "dump failed: {}", r.stderr);
    assert!(wait_until(Duration::from_secs(2), || state(p.pid)
        == Some('T')
        && tracer_pid(p.pid) == 0));
}

#[test]
fn failing_dump_leaves_the_task_running_and_no_inventory() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A stale inventory must not survive a failed dump either.
    std::fs::write(d.join("inventory.img"), b"old").unwrap();
    // /dev/fuse on stdout: a device the dump cannot restore, so it must fail cleanly.
    let fuse = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/fuse")
        .expect("open /dev/fuse");
    let stdout = Stdio::from(fuse);
    // setsid(1) execs sleep as the leader of its own session, as a dump root must be.
    let mut child = Command::new("setsid")
        .args(["sleep", "100"])
        .stdin(Stdio::null())
        .stdout(stdout)
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    assert!(wait_until(Duration::from_secs(5), || state(pid) == Some('S')));
    let maps_before = harness::maps(pid);
    let r = criu_dump(pid, d, &[]);
    assert_eq!(r.rc, 1);
    assert!(
        r.stderr
            .contains(&format!("pid {pid}: fd 1: character device /dev/fuse")),
        "stderr: {}",
        r.stderr
    );
    assert!(!d.join("inventory.img").exists());
    assert!(wait_until(Duration::from_secs(2), || tracer_pid(pid) == 0
        && state(pid) == Some('S')));
    assert_eq!(harness::maps(pid), maps_before);
    let log = std::fs::read_to_string(d.join("dump.log")).unwrap();
    assert!(log.contains("/dev/fuse"), "log: {log}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_root_that_does_not_lead_its_session_needs_shell_job() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // A child of this test: in the test's session, leading nothing.
    let mut child = Command::new("sleep")
        .arg("100")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    assert!(wait_until(Duration::from_secs(5), || state(pid) == Some('S')));
    let r = criu_dump(pid, dir.path(), &[]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(r.rc, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("the root process {pid} is not a session leader")),
        "{}",
        r.stderr
    );
    assert!(!dir.path().join("inventory.img").exists());
}

#[test]
fn dump_of_a_missing_pid_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let r = criu_dump(999_999_999, dir.path(), &[]);
    assert_eq!(r.rc, 1);
    assert!(
        r.stderr.contains("process 999999999 does not exist"),
        "stderr: {}",
        r.stderr
    );
}
#[test]
fn failing_post_dump_script_leaves_the_task_running_as_before() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let script = d.join("fail-post-dump.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$CRTOOLS_SCRIPT_ACTION\" = post-dump ] && exit 1\nexit 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (p, _, _, tids) = start_state(d, 1, 2);
    harness::wait_in_syscall(p.pid, tids[0], libc::SYS_pause);
    let maps_before = harness::maps(p.pid);
    let syscall_before = std::fs::read_to_string(format!("/proc/{}/syscall", p.pid)).unwrap();
    let r = criu_dump(p.pid, d, &["--action-script", script.to_str().unwrap()]);
    assert_eq!(r.rc, 1, "the post-dump script fails the dump");
    assert!(
        !d.join("inventory.img").exists(),
        "a failed dump must not look complete"
    );
    for t in [p.pid, tids[0]] {
        assert!(wait_until(Duration::from_secs(2), || harness::tracer(
            p.pid, t
        ) == 0
            && harness::state(p.pid, t) == Some('S')));
    }
    // Same mappings (no scratch area left), still in the same pause() with the same registers.
    assert_eq!(harness::maps(p.pid), maps_before);
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{}/syscall", p.pid)).unwrap(),
        syscall_before
    );
}
