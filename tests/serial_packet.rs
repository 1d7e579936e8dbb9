//! Packet and netlink sockets through `criu dump` and `criu restore`: a self-checking workload
//! (tests/workloads/src/bin/pk_state.rs) holds packet sockets bound to `lo` with options,
//! memberships, a ring and a fanout group, and netlink sockets bound, joined to groups,
//! unbound and connected; after the restore it checks them all from inside and uses them.
//! Runs in the nextest `serial` group: the packet sockets make the host's `lo` promiscuous.

#[path = "workloads/src/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use harness::{bin, require_root, wait_until};

fn criu(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .arg("--no-default-config")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run criu")
}

/// The workload; killed when dropped.
struct Sockets {
    child: Option<Child>,
    pid: i32,
    result: PathBuf,
    dir: tempfile::TempDir,
}

impl Sockets {
    /// Starts pk_state with `args`; `own_net`: in a network namespace of its own (with `lo`
    /// up), entered by `unshare`, which then execs the workload in the same process.
    fn start(own_net: bool, args: &[&str]) -> Sockets {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("images")).unwrap();
        let result = dir.path().join("result");
        let mut cmd = if own_net {
            let mut c = Command::new("unshare");
            c.args(["-n", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
                .arg(bin("pk_state"));
            c
        } else {
            Command::new(bin("pk_state"))
        };
        let child = cmd
            .arg(&result)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pk_state");
        let task = Sockets {
            pid: child.id() as i32,
            child: Some(child),
            result,
            dir,
        };
        assert!(
            wait_until(Duration::from_secs(20), || task.result() == "READY\n"),
            "pk_state never got ready: {}",
            task.result()
        );
        task
    }

    fn result(&self) -> String {
        std::fs::read_to_string(&self.result).unwrap_or_default()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("images").join(name)).unwrap_or_default()
    }

    fn dump(&mut self, extra: &[&str]) -> Output {
        let pid = self.pid.to_string();
        let mut args = vec!["dump", "-t", &pid, "-D", "images", "-o", "dump.log", "-v4"];
        args.extend_from_slice(extra);
        criu(&args, self.dir.path())
    }

    /// Dumps (the tree dies).
    fn dump_ok(&mut self) {
        let out = self.dump(&[]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "dump: {out:?}\n{}",
            self.log("dump.log")
        );
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    fn restore_ok(&self) {
        let args = ["restore", "-D", "images", "-o", "restore.log", "-v4", "-d"];
        let out = criu(&args, self.dir.path());
        assert_eq!(
            out.status.code(),
            Some(0),
            "restore: {out:?}\n{}",
            self.log("restore.log")
        );
    }

    fn verdict(&self) -> String {
        let pid = nix::unistd::Pid::from_raw(self.pid);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).unwrap();
        wait_until(Duration::from_secs(30), || {
            !matches!(self.result().as_str(), "READY\n" | "")
        });
        self.result()
    }
}

impl Drop for Sockets {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

#[test]
fn packet_and_netlink_sockets_come_back() {
    require_root();
    let mut task = Sockets::start(false, &[]);
    task.dump_ok();
    task.restore_ok();
    assert_eq!(task.verdict(), "PASS\n", "{}", task.log("restore.log"));
}

#[test]
fn packet_and_netlink_sockets_of_a_network_namespace_come_back() {
    require_root();
    let mut task = Sockets::start(true, &[]);
    task.dump_ok();
    task.restore_ok();
    assert_eq!(task.verdict(), "PASS\n", "{}", task.log("restore.log"));
}

#[test]
fn an_option_the_images_cannot_hold_fails_the_dump_and_the_tree_runs_on() {
    require_root();
    let mut task = Sockets::start(false, &["bypass"]);
    let out = task.dump(&[]);
    assert_ne!(out.status.code(), Some(0));
    let log = task.log("dump.log");
    let want = format!("pid {}: fd ", task.pid);
    assert!(
        log.contains(&want) && log.contains("packet socket") && log.contains("PACKET_QDISC_BYPASS"),
        "{log}"
    );
    // Untouched: it still passes its own checks.
    assert_eq!(task.verdict(), "PASS\n");
}
