//! Progress lines: a dump under a pseudo-terminal (util-linux `script`) with its log in a file
//! draws them on stderr; the same dump with stderr on a pipe prints nothing at all.

#[path = "workloads/src/harness.rs"]
mod harness;

use std::process::{Command, Stdio};
use std::time::Duration;

use harness::{require_root, wait_until};

/// A sleeping session leader to dump; killed when dropped.
struct Sleeper(std::process::Child);

impl Sleeper {
    fn start() -> Sleeper {
        let child = Command::new("setsid")
            .args(["sleep", "100"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert!(wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        }));
        Sleeper(child)
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dump_args(pid: u32, dir: &std::path::Path) -> String {
    format!(
        "{} --no-default-config dump -t {pid} -D {} -o dump.log -R",
        env!("CARGO_BIN_EXE_criu"),
        dir.display()
    )
}

#[test]
fn a_dump_on_a_terminal_shows_progress_and_on_a_pipe_does_not() {
    require_root();
    let task = Sleeper::start();
    let dir = tempfile::tempdir().unwrap();

    let out = Command::new("script")
        .args(["-qec", &dump_args(task.0.id(), dir.path()), "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs the dump under a pseudo-terminal");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("dump dumping, 1 task(s)"),
        "no phase line: {shown:?}"
    );
    assert!(shown.contains("done"), "no final line: {shown:?}");
    assert!(shown.contains("B/s"), "no rate: {shown:?}");

    let out = Command::new("sh")
        .args(["-c", &dump_args(task.0.id(), dir.path())])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty() && out.stdout.is_empty(),
        "a dump on a pipe printed: {:?} {:?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(dir.path().join("dump.log")).unwrap();
    assert!(
        !log.contains("task(s) ["),
        "progress leaked into the log: {log}"
    );
}
