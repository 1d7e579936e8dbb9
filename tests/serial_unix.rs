//! Unix sockets through `criu dump` and `criu restore`: a self-checking workload
//! (tests/workloads/src/bin/uk_state.rs) sets up sockets, is dumped and restored, then checks
//! from inside that every socket holds what it held. Runs in the nextest `serial` group.

#[path = "workloads/src/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use harness::{bin, descendants, require_root, wait_until};

fn criu(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .arg("--no-default-config")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run criu")
}

/// The workload in one mode; killed (its whole group) when dropped.
struct Sockets {
    child: Option<Child>,
    pid: i32,
    result: PathBuf,
    dir: tempfile::TempDir,
}

impl Sockets {
    fn start(mode: &str) -> Sockets {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("images")).unwrap();
        Sockets::start_in(mode, dir)
    }

    fn start_in(mode: &str, dir: tempfile::TempDir) -> Sockets {
        let result = dir.path().join("result");
        let child = Command::new(bin("uk_state"))
            .arg(&result)
            .arg(dir.path())
            .arg(mode)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start uk_state");
        let pid = child.id() as i32;
        let task = Sockets {
            child: Some(child),
            pid,
            result,
            dir,
        };
        assert!(
            wait_until(Duration::from_secs(20), || task.result_text() == "READY\n"),
            "uk_state {mode} never got ready: {}",
            task.result_text()
        );
        task
    }

    fn result_text(&self) -> String {
        std::fs::read_to_string(&self.result).unwrap_or_default()
    }

    fn dump(&mut self, extra: &[&str]) -> Output {
        let pid = self.pid.to_string();
        let mut args = vec!["dump", "-t", &pid, "-D", "images", "-o", "dump.log", "-v4"];
        args.extend_from_slice(extra);
        criu(&args, self.dir.path())
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("images").join(name)).unwrap_or_default()
    }

    /// Dumps (the dump must succeed), then restores detached.
    fn dump_and_restore(&mut self, extra: &[&str]) {
        let tree = descendants(self.pid);
        let out = self.dump(extra);
        assert_eq!(
            out.status.code(),
            Some(0),
            "dump: {out:?}\n{}",
            self.log("dump.log")
        );
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        // The dumped children are reaped by init: their pids must be free for the restore.
        assert!(wait_until(Duration::from_secs(10), || tree
            .iter()
            .all(|p| !Path::new(&format!("/proc/{p}")).exists())));
        let mut args = vec!["restore", "-D", "images", "-o", "restore.log", "-v4", "-d"];
        args.extend_from_slice(extra);
        let out = criu(&args, self.dir.path());
        assert_eq!(
            out.status.code(),
            Some(0),
            "restore: {out:?}\n{}",
            self.log("restore.log")
        );
    }

    /// Waits for the verdict (after SIGUSR1 when `poke`).
    fn verdict(&self, poke: bool) -> String {
        if poke {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGUSR1,
            )
            .unwrap();
        }
        wait_until(Duration::from_secs(30), || {
            let t = self.result_text();
            t != "READY\n" && !t.is_empty()
        });
        self.result_text()
    }
}

impl Drop for Sockets {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

fn round_trip(mode: &str) {
    require_root();
    let mut task = Sockets::start(mode);
    task.dump_and_restore(&[]);
    assert_eq!(
        task.verdict(mode != "echo"),
        "PASS\n",
        "{}",
        task.log("restore.log")
    );
}

#[test]
fn socketpairs_keep_queues_boundaries_and_shutdowns() {
    round_trip("pairs");
}

#[test]
fn named_sockets_and_pending_connections_come_back() {
    round_trip("names");
}

#[test]
fn a_pair_shared_with_a_child_keeps_both_queues() {
    round_trip("tree");
}

#[test]
fn fds_in_flight_are_sent_again() {
    round_trip("rights");
}

#[test]
fn an_echo_client_and_server_finish_after_restore() {
    round_trip("echo");
}

#[test]
fn an_outside_peer_needs_ext_unix_sk() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    let ext_path = dir.path().join("ext.sock");
    let ext = std::os::unix::net::UnixDatagram::bind(&ext_path).unwrap();
    ext.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut task = Sockets::start_in("external", dir);

    // Without the option the dump fails, naming the reason, and the task runs on.
    let out = task.dump(&[]);
    assert_ne!(out.status.code(), Some(0));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        task.log("dump.log")
    );
    assert!(said.contains("ext-unix-sk"), "{said}");
    assert!(Path::new(&format!("/proc/{}", task.pid)).exists());

    task.dump_and_restore(&["--ext-unix-sk"]);
    assert_eq!(task.verdict(true), "PASS\n");
    let mut buf = [0u8; 16];
    let n = ext.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
}
