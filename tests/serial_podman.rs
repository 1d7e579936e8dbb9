//! Debian's podman (`--runtime runc`, with our binary first in PATH, the way podman and runc
//! find criu) checkpoints and restores a container, also through `--export` to a tarball and
//! `--import` under a new name. The container's shell loop prints a counter: its log must
//! run on without a gap or a repeat across every checkpoint. Runs in the nextest `serial`
//! group; CI installs podman, runc and busybox-static.

#[path = "workloads/src/harness.rs"]
mod harness;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use harness::{require_root, wait_until};

const LOOP: &str = "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done";

/// An image and containers of this test, all removed when dropped.
struct Podman {
    image: String,
    names: Vec<String>,
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "dev", "proc", "sys", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox-static is not installed (.ci/run installs it)");
        std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sleep")).unwrap();
        let tar = dir.path().join("rootfs.tar");
        let tarred = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(tarred.success());
        let p = Podman {
            image: format!("localhost/criu-rs-test-{}", std::process::id()),
            names: Vec::new(),
            dir,
        };
        p.ok(&["import", tar.to_str().unwrap(), &p.image]);
        p
    }

    fn podman(&self, args: &[&str]) -> Output {
        let ours = Path::new(env!("CARGO_BIN_EXE_criu")).parent().unwrap();
        let path = format!(
            "{}:{}",
            ours.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("podman")
            .args(args)
            .env("PATH", path)
            .output()
            .expect("podman is not installed (.ci/run installs it)")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.podman(args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.restore_logs()
        );
        out
    }

    /// criu's logs of failed restores, for the assertion message.
    fn restore_logs(&self) -> String {
        let mut text = String::new();
        for name in &self.names {
            let out = self.podman(&["inspect", "--format", "{{.Id}}", name]);
            let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let dir = format!("/var/lib/containers/storage/overlay-containers/{id}/userdata");
            for log in ["dump.log", "restore.log"] {
                if let Ok(t) = std::fs::read_to_string(Path::new(&dir).join(log)) {
                    let errors: Vec<&str> = t.lines().filter(|l| l.contains("Error")).collect();
                    text += &format!("\n{name} {log}: {}", errors.join("\n"));
                }
            }
        }
        text
    }

    fn run(&mut self, name: &str) {
        self.names.push(name.to_string());
        self.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--runtime",
            "runc",
            // Without CAP_SYS_RESOURCE runc cannot raise limits to podman's defaults.
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
            &self.image,
            "/bin/sh",
            "-c",
            LOOP,
        ]);
    }

    fn counts(&self, name: &str) -> Vec<u64> {
        let out = self.ok(&["logs", name]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Waits until the container has printed more than `n` lines.
    fn wait_for_more(&self, name: &str, n: usize) {
        assert!(
            wait_until(Duration::from_secs(20), || self.counts(name).len() > n + 3),
            "{name} printed nothing new"
        );
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = self.podman(&["rm", "-f", name]);
        }
        let _ = self.podman(&["rmi", "-f", &self.image]);
    }
}

/// Every count is the one before plus one: nothing lost, nothing repeated.
fn assert_consecutive(counts: &[u64], what: &str) {
    for w in counts.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{what}: the counter jumped: {counts:?}");
    }
}

#[test]
fn podman_checkpoints_restores_exports_and_imports_a_container() {
    require_root();
    let mut p = Podman::new();
    p.run("criu-rs-a");
    p.wait_for_more("criu-rs-a", 0);
    for cycle in 0..2 {
        p.ok(&["container", "checkpoint", "criu-rs-a"]);
        let before = p.counts("criu-rs-a");
        p.ok(&["container", "restore", "criu-rs-a"]);
        p.wait_for_more("criu-rs-a", before.len());
        assert_consecutive(&p.counts("criu-rs-a"), &format!("restore {cycle}"));
    }

    let tarball = p.dir.path().join("a.tar.gz");
    let tarball = tarball.to_str().unwrap();
    p.ok(&["container", "checkpoint", "--export", tarball, "criu-rs-a"]);
    let last = *p.counts("criu-rs-a").last().unwrap();
    p.names.push("criu-rs-b".into());
    p.ok(&[
        "container",
        "restore",
        "--import",
        tarball,
        "--name",
        "criu-rs-b",
    ]);
    p.wait_for_more("criu-rs-b", 0);
    // The export carries the container's log: the new one shows all of it, then goes on.
    let imported = p.counts("criu-rs-b");
    assert!(
        imported.last() > Some(&last),
        "the imported container did not go on from {last}: {imported:?}"
    );
    assert_consecutive(&imported, "import");
}
