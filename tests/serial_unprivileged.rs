//! criu run by a user other than root (nobody), as CRIU's `--unprivileged` mode has it: a copy
//! of our binary given CAP_CHECKPOINT_RESTORE and CAP_SYS_PTRACE with `setcap`, dumping and
//! restoring a shell loop of the same user. Without `--unprivileged` it refuses, naming the
//! option; with it the loop comes back at its pid, still nobody's, without capabilities, and
//! goes on counting. Needs root (to make the copy and switch users); runs in the nextest
//! `serial` group; CI installs libcap2-bin (setcap).

#[path = "workloads/src/harness.rs"]
mod harness;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use harness::{in_session, read_trimmed as read, require_root, wait_until, KillOnDrop};

const NOBODY: [&str; 3] = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"];

/// Runs the capable copy of criu in `dir` as nobody.
fn criu_as_nobody(dir: &Path, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(NOBODY)
        .arg(dir.join("criu"))
        .arg("--no-default-config")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv")
}

fn status(pid: i32, field: &str) -> String {
    read(Path::new(&format!("/proc/{pid}/status")))
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

#[test]
fn nobody_dumps_and_restores_its_own_loop_with_unprivileged() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_criu"), d.join("criu")).unwrap();
    let out = Command::new("setcap")
        .args(["cap_checkpoint_restore,cap_sys_ptrace+eip"])
        .arg(d.join("criu"))
        .output()
        .expect("setcap is not installed (libcap2-bin; .ci/run installs it)");
    assert!(
        out.status.success(),
        "setcap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = d.join("count");
    let script = format!(
        "i=0; while :; do i=$((i+1)); echo $i > {c}.new; mv {c}.new {c}; sleep 0.05; done",
        c = count.display()
    );
    let child = Command::new("setpriv")
        .args(NOBODY)
        .args(["setsid", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut task = KillOnDrop { child, pid };
    let n = || read(&count).parse::<u64>().unwrap_or(0);
    assert!(
        wait_until(Duration::from_secs(10), || n() > 2),
        "the loop never counted"
    );
    let images = d.join("images");
    std::fs::create_dir(&images).unwrap();
    std::fs::set_permissions(&images, std::fs::Permissions::from_mode(0o777)).unwrap();
    let root = pid.to_string();
    let dump = ["dump", "-t", &root, "-D", "images", "-o", "dump.log", "-v4"];
    let refused = criu_as_nobody(d, &dump);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("needs --unprivileged"),
        "{said}"
    );
    let mut unprivileged = dump.to_vec();
    unprivileged.push("--unprivileged");
    let out = criu_as_nobody(d, &unprivileged);
    assert!(
        out.status.success(),
        "dump: {}",
        read(&images.join("dump.log"))
    );
    let _ = task.child.wait();
    assert!(wait_until(Duration::from_secs(30), || in_session(pid).is_empty()));
    let before = n();
    let restore = [
        "restore",
        "-D",
        "images",
        "-o",
        "restore.log",
        "-v4",
        "-d",
        "--unprivileged",
    ];
    let out = criu_as_nobody(d, &restore);
    assert!(
        out.status.success(),
        "restore: {}",
        read(&images.join("restore.log"))
    );
    assert!(
        wait_until(Duration::from_secs(10), || n() > before + 3),
        "the restored loop does not count"
    );
    assert!(
        status(pid, "Uid").starts_with("65534"),
        "{}",
        status(pid, "Uid")
    );
    assert_eq!(status(pid, "CapEff"), "0000000000000000");
}
