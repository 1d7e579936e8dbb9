//! A tree in its own pid, uts, ipc, net and time namespaces, started with Debian's `unshare`,
//! is dumped and restored by our criu and keeps its pids, names, System V objects, clocks and
//! `lo`. Needs root; runs in the nextest `serial` group.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::{bin, is_verdict, require_root, wait_until, LONG};
use state_task::criu;

/// unshare's flags for a container without its own mounts.
const WORLD: &[&str] = &["--pid", "--fork", "--uts", "--ipc", "--net"];

/// A tree started by `unshare ... PROGRAM`, whose init is the dump root.
struct Container {
    unshare: Option<Child>,
    dir: PathBuf,
    /// The init as criu sees it (before the dump, then after the restore).
    root: i32,
}

impl Container {
    fn start(dir: &Path, flags: &[&str], program: &[&str]) -> Container {
        let unshare = Command::new("unshare")
            .args(flags)
            .args(program)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run unshare");
        let creator = unshare.id() as i32;
        let mut c = Container {
            unshare: Some(unshare),
            dir: dir.to_path_buf(),
            root: 0,
        };
        let found = wait_until(Duration::from_secs(10), || {
            let children =
                std::fs::read_to_string(format!("/proc/{creator}/task/{creator}/children"))
                    .unwrap_or_default();
            c.root = children
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            c.root != 0
        });
        assert!(found, "unshare never forked its init");
        c
    }

    fn images(&self) -> PathBuf {
        self.dir.join("images")
    }

    /// Dumps the tree (which then dies) and reaps unshare.
    fn dump(&mut self) {
        std::fs::create_dir_all(self.images()).unwrap();
        let root = self.root.to_string();
        let out = criu(
            &["dump", "-t", &root, "-D", "images", "-o", "dump.log", "-v4"],
            &self.dir,
        );
        assert!(
            out.status.success(),
            "dump failed: {}",
            self.log("dump.log")
        );
        if let Some(mut u) = self.unshare.take() {
            let _ = u.wait();
        }
    }

    /// Restores the tree; its init's pid (as criu sees it) becomes the root.
    fn restore(&mut self) {
        let out = criu(
            &[
                "restore",
                "-D",
                "images",
                "-o",
                "restore.log",
                "-v4",
                "-d",
                "--pidfile",
                "pid",
            ],
            &self.dir,
        );
        assert!(
            out.status.success(),
            "restore failed: {}",
            self.log("restore.log")
        );
        let pid = std::fs::read_to_string(self.images().join("pid")).unwrap();
        self.root = pid.trim().parse().unwrap();
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.images().join(name)).unwrap_or_default()
    }

    /// The last NSpid entry of the root: its pid in its own namespace.
    fn root_vpid(&self) -> String {
        status_field(self.root, "NSpid")
            .split_whitespace()
            .last()
            .unwrap_or("")
            .to_string()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // The init's death kills its whole pid namespace.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.root),
            nix::sys::signal::Signal::SIGKILL,
        );
        if let Some(mut u) = self.unshare.take() {
            let _ = u.kill();
            let _ = u.wait();
        }
    }
}

fn status_field(pid: i32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

fn ns_link(pid: i32, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map(|l| l.display().to_string())
        .unwrap_or_default()
}

#[test]
fn a_namespaced_world_comes_back_whole() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("result");
    let world = bin("ns_world");
    let mut flags = WORLD.to_vec();
    flags.extend(["--time", "--monotonic", "864000", "--boottime", "1728000"]);
    let program = [world.to_str().unwrap(), result.to_str().unwrap(), "/"];
    let mut c = Container::start(dir.path(), &flags, &program);
    let ready = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&result).unwrap_or_default() == "READY\n"
    });
    assert!(ready, "ns_world: {:?}", std::fs::read_to_string(&result));
    let offsets = std::fs::read_to_string(format!("/proc/{}/timens_offsets", c.root)).unwrap();
    c.dump();
    for image in [
        "utsns-",
        "ipcns-shm-",
        "ipcns-sem-",
        "ipcns-msg-",
        "ipcns-var-",
        "timens-",
        "netns-",
        "netdev-",
    ] {
        let found = std::fs::read_dir(c.images())
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().starts_with(image));
        assert!(found, "no {image}N.img written");
    }
    c.restore();
    assert_eq!(c.root_vpid(), "1");
    let me = std::process::id() as i32;
    for kind in ["pid", "uts", "ipc", "net", "time"] {
        assert_ne!(
            ns_link(c.root, kind),
            ns_link(me, kind),
            "{kind} namespace is criu's"
        );
    }
    let restored = std::fs::read_to_string(format!("/proc/{}/timens_offsets", c.root)).unwrap();
    assert_eq!(restored, offsets);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.root),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    wait_until(LONG, || {
        is_verdict(&std::fs::read_to_string(&result).unwrap_or_default())
    });
    assert_eq!(std::fs::read_to_string(&result).unwrap(), "PASS\n");
}

/// The `out` line of the shell loop: "PID COUNT HOSTNAME SEGMENTS".
fn loop_line(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("out"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_shell_loop_container_made_with_unshare_keeps_running_and_its_pids() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let script = "hostname box; ipcmk -M 4096 >/dev/null; i=0; \
                  while :; do i=$((i+1)); echo \"$$ $i $(hostname) $(ipcs -m | grep -c 0x)\" > out.new; \
                  mv out.new out; sleep 0.05; done";
    let program = ["setsid", "sh", "-c", script];
    let mut c = Container::start(dir.path(), WORLD, &program);
    assert!(wait_until(Duration::from_secs(10), || loop_line(
        dir.path()
    )
    .len()
        == 4));
    let before = loop_line(dir.path());
    assert_eq!(before[0], "1", "the shell is not init: {before:?}");
    c.dump();
    c.restore();
    assert_eq!(c.root_vpid(), "1");
    let count = |l: &[String]| l.get(1).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    let went_on = wait_until(Duration::from_secs(10), || {
        count(&loop_line(dir.path())) > count(&before) + 3
    });
    let after = loop_line(dir.path());
    assert!(
        went_on,
        "the loop stopped: before {before:?}, after {after:?}"
    );
    assert_eq!(
        (&after[0], &after[2], &after[3]),
        (&before[0], &before[2], &before[3])
    );
}

#[test]
fn with_empty_ns_net_the_setup_namespaces_script_sets_up_the_network() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // A device criu does not dump: with --empty-ns net that is the runtime's business.
    let script = "ip link add crv0 type veth peer name crv1; i=0; \
                  while :; do i=$((i+1)); echo \"$$ $i x x\" > out.new; mv out.new out; sleep 0.05; done";
    let program = ["setsid", "sh", "-c", script];
    let mut c = Container::start(dir.path(), &["--pid", "--fork", "--net"], &program);
    assert!(wait_until(Duration::from_secs(10), || loop_line(
        dir.path()
    )
    .len()
        == 4));
    std::fs::create_dir_all(c.images()).unwrap();
    let root = c.root.to_string();
    let out = criu(
        &[
            "dump",
            "-t",
            &root,
            "-D",
            "images",
            "-o",
            "dump.log",
            "-v4",
            "--empty-ns",
            "net",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "dump failed: {}", c.log("dump.log"));
    if let Some(mut u) = c.unshare.take() {
        let _ = u.wait();
    }
    let seen = dir.path().join("seen");
    let action = dir.path().join("action.sh");
    std::fs::write(
        &action,
        format!(
            "#!/bin/sh\ncase $CRTOOLS_SCRIPT_ACTION in\n\
             setup-namespaces) nsenter -t $CRTOOLS_INIT_PID -n ip link set lo up || exit 1 ;;\nesac\n\
             echo $CRTOOLS_SCRIPT_ACTION $CRTOOLS_INIT_PID >> {}\n",
            seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&action, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let action = action.to_str().unwrap().to_string();
    let out = criu(
        &[
            "restore",
            "-D",
            "images",
            "-o",
            "restore.log",
            "-v4",
            "-d",
            "--pidfile",
            "pid",
            "--empty-ns",
            "net",
            "--action-script",
            &action,
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "restore failed: {}",
        c.log("restore.log")
    );
    c.root = std::fs::read_to_string(c.images().join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let seen = std::fs::read_to_string(&seen).unwrap();
    let stages: Vec<&str> = seen
        .lines()
        .filter(|l| l.contains("setup-namespaces"))
        .collect();
    assert_eq!(
        stages,
        [
            format!("setup-namespaces {}", c.root),
            format!("post-setup-namespaces {}", c.root)
        ],
        "scripts saw: {seen}"
    );
    let links = Command::new("nsenter")
        .args(["-t", &c.root.to_string(), "-n", "ip", "-o", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(links.contains("lo: <LOOPBACK,UP"), "{links}");
    assert!(!links.contains("crv0"), "{links}");
    let before = loop_line(dir.path());
    let count = |l: &[String]| l.get(1).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    assert!(wait_until(Duration::from_secs(10), || count(&loop_line(
        dir.path()
    )) > count(&before)
        + 3));
}
