//! Debian's `runc` checkpoints and restores a running container through our binary
//! (`runc --criu OURS`, which drives it over `criu swrk`): a busybox-static shell loop in new
//! pid, mount, network, IPC and UTS namespaces and runc's cgroups, its stdout on a pipe. The
//! loop's counter is the memory check: after each restore the first line on the new pipe is
//! the one after the last line before the dump. Runs in the nextest `serial` group; CI installs
//! runc and busybox-static.

#[path = "workloads/src/harness.rs"]
mod harness;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use harness::require_root;

const LOOP: &str = "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done";

/// A container of its own runc state root; deleted with `runc delete -f` when dropped.
struct Container {
    id: String,
    state: PathBuf,
    bundle: PathBuf,
    images: PathBuf,
    _dir: tempfile::TempDir,
}

impl Container {
    fn new() -> Container {
        Container::with_process(false, &["/bin/sh", "-c", LOOP])
    }

    /// A container running `args`, on a terminal of its own with `terminal`.
    fn with_process(terminal: bool, args: &[&str]) -> Container {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        make_bundle(&bundle, terminal, args);
        Container {
            id: format!("criu-rs-test-{}", std::process::id()),
            state: dir.path().join("state"),
            images: dir.path().join("images"),
            bundle,
            _dir: dir,
        }
    }

    fn runc(&self) -> Command {
        let mut cmd = Command::new(tool("runc"));
        cmd.arg("--root").arg(&self.state);
        cmd.arg("--log").arg(self.state.with_file_name("runc.log"));
        cmd.arg("--criu").arg(env!("CARGO_BIN_EXE_criu"));
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs `runc ARGS... ID` to its end; the container's stdout and stderr (one pipe, as a
    /// shim gives them) come to the returned counts.
    fn start(&self, args: &[&str]) -> Counts {
        let (reader, writer) = std::io::pipe().unwrap();
        let status = self
            .runc()
            .args(args)
            .arg(&self.id)
            .stdout(writer.try_clone().unwrap())
            .stderr(writer)
            .status()
            .expect("start runc");
        assert!(status.success(), "runc {args:?}: {status}: {}", self.log());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                let Ok(n) = line.trim().parse() else {
                    eprintln!("container: {line}");
                    continue;
                };
                if tx.send(n).is_err() {
                    break;
                }
            }
        });
        Counts { rx, last: None }
    }

    /// runc's own log (its errors, with criu's last error line).
    fn log(&self) -> String {
        std::fs::read_to_string(self.state.with_file_name("runc.log")).unwrap_or_default()
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.runc().args(args).arg(&self.id).output().unwrap();
        assert!(
            out.status.success(),
            "runc {args:?}: {}: {}",
            out.status,
            self.log()
        );
        out
    }

    fn checkpoint(&self, extra: &[&str]) {
        self.checkpoint_to(&self.images, extra);
    }

    fn checkpoint_to(&self, images: &Path, extra: &[&str]) {
        let _ = std::fs::remove_dir_all(images);
        let path = images.to_str().unwrap();
        let mut args = vec!["checkpoint", "--image-path", path];
        args.extend_from_slice(extra);
        let out = self.runc().args(&args).arg(&self.id).output().unwrap();
        let log = "dump.log";
        assert!(
            out.status.success(),
            "runc checkpoint {extra:?}: {}: {}\n{}",
            out.status,
            self.log(),
            std::fs::read_to_string(images.join(log)).unwrap_or_default()
        );
    }

    fn restore(&self) -> Counts {
        let bundle = self.bundle.to_str().unwrap().to_string();
        let images = self.images.to_str().unwrap().to_string();
        self.start(&["restore", "-d", "-b", &bundle, "--image-path", &images])
    }

    /// The container's init as the host sees it, from `runc state`.
    fn init_pid(&self) -> i32 {
        let out = self.run(&["state"]);
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(state["status"], "running", "{state}");
        state["pid"].as_i64().unwrap() as i32
    }

    fn is_gone(&self) -> bool {
        let out = self.runc().arg("state").arg(&self.id).output().unwrap();
        let state: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        !out.status.success() || state["status"] == "stopped"
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.runc().args(["delete", "-f"]).arg(&self.id).output();
    }
}

fn tool(name: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin", "/bin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is not installed (apt-get install it; .ci/run does)"))
}

/// A bundle from `runc spec` and busybox-static, running `args`.
fn make_bundle(bundle: &Path, terminal: bool, args: &[&str]) {
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "dev", "proc", "sys", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy(tool("busybox"), rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep", "cat", "echo"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let out = Command::new(tool("runc"))
        .args(["spec", "-b"])
        .arg(bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "runc spec: {out:?}");
    let path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["process"]["terminal"] = terminal.into();
    config["process"]["args"] = serde_json::json!(args);
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}

/// What the container printed on one pipe, and the last count taken from it.
struct Counts {
    rx: Receiver<u64>,
    last: Option<u64>,
}

impl Counts {
    /// The next count the container prints, within a few seconds.
    fn next(&mut self, what: &str) -> u64 {
        let n = self
            .rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{what}: no line from the container: {e}"));
        self.last = Some(n);
        n
    }

    /// The last count printed before the pipe went quiet (the container is frozen or gone).
    fn last_before_silence(&mut self) -> u64 {
        while let Ok(n) = self.rx.recv_timeout(Duration::from_millis(500)) {
            self.last = Some(n);
        }
        self.last.expect("the container printed nothing")
    }
}

/// The pid the task has in its innermost pid namespace (last field of NSpid).
fn inner_pid(pid: i32) -> i32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    line.split_whitespace().last().unwrap().parse().unwrap()
}

#[test]
fn runc_checkpoints_and_restores_a_container_three_times() {
    require_root();
    let c = Container::new();
    let bundle = c.bundle.to_str().unwrap().to_string();
    let mut out = c.start(&["run", "-d", "-b", &bundle]);
    out.next("after runc run");
    for cycle in 1..=3 {
        c.checkpoint(&[]);
        assert!(
            c.is_gone(),
            "cycle {cycle}: the container runs on after checkpoint"
        );
        let last = out.last_before_silence();
        out = c.restore();
        let first = out.next("after runc restore");
        assert_eq!(
            first,
            last + 1,
            "cycle {cycle}: the restored loop did not go on where it stopped"
        );
        assert!(out.next("after restore") > first);
        let init = c.init_pid();
        assert_eq!(
            inner_pid(init),
            1,
            "cycle {cycle}: the init is not pid 1 inside"
        );
        for ns in ["pid", "mnt", "net", "ipc", "uts"] {
            let now = std::fs::read_link(format!("/proc/{init}/ns/{ns}")).unwrap();
            let own = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
            assert_ne!(
                now, own,
                "cycle {cycle}: the restored container shares our {ns} ns"
            );
        }
    }
}

#[test]
fn runc_leave_running_checkpoint_restores_the_saved_state() {
    require_root();
    let c = Container::new();
    let bundle = c.bundle.to_str().unwrap().to_string();
    let mut out = c.start(&["run", "-d", "-b", &bundle]);
    let before = out.next("after runc run");
    c.checkpoint(&["--leave-running", "--file-locks", "--tcp-established"]);
    // The container goes on printing after the dump.
    let mut ran_on = out.next("after the dump");
    while ran_on < before + 40 {
        ran_on = out.next("after the dump");
    }
    let killed = c.runc().args(["kill", &c.id, "KILL"]).status().unwrap();
    assert!(killed.success(), "runc kill: {}", c.log());
    assert!(
        harness::wait_until(Duration::from_secs(10), || c.is_gone()),
        "the container did not stop"
    );
    c.run(&["delete"]);
    let mut out = c.restore();
    let first = out.next("after runc restore");
    assert!(
        first > before && first < ran_on,
        "the restored count {first} is not the checkpoint's (taken between {before} and {ran_on})"
    );
    assert_eq!(out.next("after restore"), first + 1);
}

/// `runc checkpoint --pre-dump` (the container runs on), then `runc checkpoint --parent-path`
/// naming it: the restored container goes on from the final checkpoint.
#[test]
fn runc_pre_dump_then_checkpoint_restores_the_final_state() {
    require_root();
    let c = Container::new();
    let bundle = c.bundle.to_str().unwrap().to_string();
    let mut out = c.start(&["run", "-d", "-b", &bundle]);
    let before = out.next("after runc run");
    let pre = c.images.with_file_name("pre");
    c.checkpoint_to(&pre, &["--pre-dump"]);
    let mut ran_on = out.next("after the pre-dump");
    while ran_on < before + 20 {
        ran_on = out.next("after the pre-dump");
    }
    c.checkpoint(&["--parent-path", "../pre"]);
    assert!(c.is_gone(), "the container runs on after checkpoint");
    let link = std::fs::read_link(c.images.join("parent")).expect("the checkpoint's parent link");
    assert_eq!(link, Path::new("../pre"));
    let last = out.last_before_silence();
    assert!(last >= ran_on, "the count went back before the checkpoint");
    let mut out = c.restore();
    let first = out.next("after runc restore");
    assert_eq!(
        first,
        last + 1,
        "the restored loop did not go on where it stopped"
    );
    assert!(out.next("after restore") > first);
}

/// A console socket as runc's `--console-socket` wants one: the master of the container's
/// terminal comes over it (SCM_RIGHTS), once.
struct ConsoleSocket {
    path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleSocket {
    fn new(path: PathBuf) -> ConsoleSocket {
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        ConsoleSocket { path, listener }
    }

    /// The master runc sends (after `runc run` or `runc restore` with this socket); None if
    /// it hangs up without one.
    fn master(&self) -> Option<std::os::fd::OwnedFd> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::AsRawFd;
        let (conn, _) = self.listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap();
        let fd = msg.cmsgs().ok()?.find_map(|c| match c {
            ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
            _ => None,
        })?;
        criu_sys::fd::own_inherited(fd).ok()
    }
}

/// Writes `word` to the terminal's master; true once the shell on it answers "got WORD".
fn talks(master: &std::os::fd::OwnedFd, word: &str) -> bool {
    nix::unistd::write(master, format!("{word}\n").as_bytes()).unwrap();
    let want = format!("got {word}");
    let mut seen = String::new();
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < end && !seen.contains(&want) {
        let fd = std::os::fd::AsFd::as_fd(master);
        let mut poll = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
        if nix::poll::poll(&mut poll, nix::poll::PollTimeout::from(100u16)).unwrap_or(0) > 0 {
            let mut buf = [0u8; 256];
            let n = nix::unistd::read(master, &mut buf).unwrap_or(0);
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    seen.contains(&want)
}

/// A container with a terminal (`terminal: true`, its master sent to a console socket):
/// runc checkpoints it through us and restores it with a new console socket, which gets the
/// master criu made for the terminal (`orphan_pts_master`); the shell answers through it.
#[test]
fn runc_restores_a_container_on_a_terminal_with_a_new_console() {
    require_root();
    let c = Container::with_process(
        true,
        &["/bin/sh", "-c", "while read l; do echo got $l; done"],
    );
    let bundle = c.bundle.to_str().unwrap().to_string();
    let console = ConsoleSocket::new(c.state.with_file_name("console.sock"));
    let socket = console.path.to_str().unwrap().to_string();
    let runc = {
        let args = ["run", "-d", "-b", &bundle, "--console-socket", &socket];
        let mut cmd = c.runc();
        cmd.args(args)
            .arg(&c.id)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::thread::spawn(move || cmd.status().unwrap())
    };
    let master = console.master();
    let ran = runc.join().unwrap();
    assert!(ran.success(), "runc run: {}", c.log());
    let master = master.unwrap_or_else(|| panic!("runc sent no master: {}", c.log()));
    assert!(
        talks(&master, "one"),
        "the container's shell never answered"
    );
    c.checkpoint(&[]);
    assert!(c.is_gone(), "the container runs on after checkpoint");
    drop(master);
    let images = c.images.to_str().unwrap().to_string();
    let runc = {
        let args = ["restore", "-d", "-b", &bundle, "--image-path", &images];
        let mut cmd = c.runc();
        cmd.args(args)
            .args(["--console-socket", &socket])
            .arg(&c.id);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        std::thread::spawn(move || cmd.status().unwrap())
    };
    let master = console.master();
    let restored = runc.join().unwrap();
    let rlog = std::fs::read_to_string(c.images.join("restore.log")).unwrap_or_default();
    assert!(restored.success(), "runc restore: {}\n{rlog}", c.log());
    let master = master.unwrap_or_else(|| panic!("runc sent no master: {}", c.log()));
    assert!(
        talks(&master, "two"),
        "the restored shell does not answer on its new console"
    );
}
