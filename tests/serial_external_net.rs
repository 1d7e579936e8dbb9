//! `criu check --feature external_net_ns` against the feature itself: a task in its own
//! network namespace is dumped with `--external net[INO]:KEY` and restored with
//! `--inherit-fd fd[N]:KEY` into another namespace; the answer must be yes exactly when the
//! restored task ends up in that namespace. Runs in the nextest `serial` group: the restore
//! claims the task's pid.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::{require_root, wait_until};
use state_task::criu;

fn net_ns(pid: i32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .unwrap_or_else(|e| panic!("netns of {pid}: {e}"))
        .ino()
}

/// `sleep` in a network namespace of its own; killed and reaped when dropped.
struct InNetNs(Child);

impl InNetNs {
    fn start() -> InNetNs {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start unshare --net sleep");
        let t = InNetNs(child);
        let own = net_ns(std::process::id() as i32);
        assert!(
            wait_until(Duration::from_secs(10), || net_ns(t.pid()) != own),
            "unshare --net never left our network namespace"
        );
        t
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for InNetNs {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Dumps a task with its network namespace external and restores it into another one.
/// Ok when the restored task lives in the namespace handed over; Err says what went wrong.
fn restore_into_external_net_ns(dir: &Path) -> Result<(), String> {
    std::fs::create_dir(dir.join("images")).unwrap();
    let mut task = InNetNs::start();
    let pid = task.pid();
    let ext = format!("net[{}]:extnet", net_ns(pid));
    let out = criu(
        &[
            "dump",
            "-t",
            &pid.to_string(),
            "-D",
            "images",
            "-o",
            "dump.log",
            "--external",
            &ext,
        ],
        dir,
    );
    if out.status.code() != Some(0) {
        return Err(format!(
            "dump with --external {ext}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // The dump killed it: reap it so that its pid is free for the restore.
    let _ = task.0.wait();
    let target = InNetNs::start();
    let want = net_ns(target.pid());
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec \"$0\" --no-default-config restore -D images -o restore.log -d \
             --inherit-fd fd[3]:extnet 3</proc/{}/ns/net",
            target.pid()
        ))
        .arg(env!("CARGO_BIN_EXE_criu"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run criu restore");
    if out.status.code() != Some(0) {
        return Err(format!(
            "restore with --inherit-fd fd[3]:extnet: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let got = net_ns(pid);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "the task came back in network namespace {got}, not the external {want}"
        ))
    }
}

#[test]
fn external_net_ns_answer_matches_a_real_restore_into_an_external_netns() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let truth = restore_into_external_net_ns(dir.path());
    let out = criu(&["check", "--feature", "external_net_ns"], dir.path());
    assert_eq!(
        out.status.code() == Some(0),
        truth.is_ok(),
        "check says {out:?}; the real thing: {truth:?}"
    );
    if truth.is_err() {
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("external_net_ns"),
            "{out:?}"
        );
    }
}
