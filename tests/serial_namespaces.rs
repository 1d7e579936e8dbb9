//! A tree in its own pid, uts, ipc, net and time namespaces, started with Debian's `unshare`
//! (or, in a user namespace too, with the ns_launch workload), is dumped and restored by our
//! criu and keeps its pids, names, System V objects, clocks, ids and `lo`. Needs root; runs in
//! the nextest `serial` group.

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
        let mut args = flags.to_vec();
        args.extend(program);
        Container::start_with(dir, "unshare", &args)
    }

    /// `launcher ARGS`: a process that stays in criu's namespaces and whose only child (or,
    /// for ns_launch, grandchild) is the init of the new ones.
    fn start_with(dir: &Path, launcher: &str, args: &[&str]) -> Container {
        let unshare = Command::new(launcher)
            .args(args)
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
        let child_of = |pid: i32| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<i32>().ok())
        };
        // The init is the first task below the launcher that is pid 1 of its namespace.
        let found = wait_until(Duration::from_secs(10), || {
            let mut p = creator;
            while let Some(child) = child_of(p) {
                if status_field(child, "NSpid").split_whitespace().last() == Some("1") {
                    c.root = child;
                    return true;
                }
                p = child;
            }
            false
        });
        assert!(found, "unshare never forked its init");
        c
    }

    fn images(&self) -> PathBuf {
        self.dir.join("images")
    }

    /// Dumps the tree (which then dies) and reaps unshare.
    fn dump(&mut self) {
        self.dump_with(&[]);
    }

    /// [`Container::dump`] with `extra` options.
    fn dump_with(&mut self, extra: &[&str]) {
        std::fs::create_dir_all(self.images()).unwrap();
        let root = self.root.to_string();
        let mut args = vec!["dump", "-t", &root, "-D", "images", "-o", "dump.log", "-v4"];
        args.extend(extra);
        let out = criu(&args, &self.dir);
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
        self.restore_with(&[], Stdio::null());
    }

    /// `criu restore -d --pidfile pid EXTRA` with criu's stdin given.
    fn try_restore(&self, extra: &[&str], stdin: Stdio) -> std::process::Output {
        let mut args = vec!["restore", "-D", "images", "-o", "restore.log", "-v4", "-d"];
        args.extend(["--pidfile", "pid"]);
        args.extend(extra);
        state_task::criu_with(&args, &self.dir, stdin, Stdio::piped())
    }

    /// A restore with `extra` options that must succeed.
    fn restore_with(&mut self, extra: &[&str], stdin: Stdio) {
        let out = self.try_restore(extra, stdin);
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

/// Starts ns_world through `launcher ARGS`; returns it READY and where its result goes.
fn start_world(dir: &Path, launcher: &str, args: &[&str]) -> (Container, PathBuf) {
    let result = dir.join("result");
    let world = bin("ns_world");
    let mut program: Vec<&str> = args.to_vec();
    program.extend([world.to_str().unwrap(), result.to_str().unwrap(), "/"]);
    let c = Container::start_with(dir, launcher, &program);
    let ready = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&result).unwrap_or_default() == "READY\n"
    });
    assert!(ready, "ns_world: {:?}", std::fs::read_to_string(&result));
    (c, result)
}

/// Tells the restored world to check itself; returns its verdict.
fn verdict(c: &Container, result: &Path) -> String {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.root),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    wait_until(LONG, || {
        is_verdict(&std::fs::read_to_string(result).unwrap_or_default())
    });
    std::fs::read_to_string(result).unwrap()
}

#[test]
fn a_namespaced_world_comes_back_whole() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut flags = WORLD.to_vec();
    flags.extend(["--time", "--monotonic", "864000", "--boottime", "1728000"]);
    let (mut c, result) = start_world(dir.path(), "unshare", &flags);
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
    assert_eq!(verdict(&c, &result), "PASS\n");
}

#[test]
fn a_world_in_its_own_user_namespace_keeps_its_id_maps_and_root_inside() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // Ids 0.. inside are 100000.. outside: the world's files need to be theirs to write.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let launch = bin("ns_launch");
    let (mut c, result) = start_world(dir.path(), launch.to_str().unwrap(), &["100000"]);
    let maps = |pid: i32| {
        ["uid_map", "gid_map"].map(|m| std::fs::read_to_string(format!("/proc/{pid}/{m}")).unwrap())
    };
    let before = maps(c.root);
    assert!(
        status_field(c.root, "Uid").starts_with("100000"),
        "{}",
        status_field(c.root, "Uid")
    );
    c.dump();
    assert!(std::fs::read_dir(c.images()).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("userns-")
    }));
    c.restore();
    assert_eq!(c.root_vpid(), "1");
    assert_eq!(maps(c.root), before);
    assert!(
        status_field(c.root, "Uid").starts_with("100000"),
        "{}",
        status_field(c.root, "Uid")
    );
    let me = std::process::id() as i32;
    assert_ne!(ns_link(c.root, "user"), ns_link(me, "user"));
    assert_eq!(verdict(&c, &result), "PASS\n");
}

/// Waits until the shell loop counted on past `before` (it runs again); returns its line.
fn loop_went_on(dir: &Path, before: &[String]) -> Vec<String> {
    let count = |l: &[String]| l.get(1).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    let went_on = wait_until(Duration::from_secs(10), || {
        count(&loop_line(dir)) > count(before) + 3
    });
    let after = loop_line(dir);
    assert!(
        went_on,
        "the loop stopped: before {before:?}, after {after:?}"
    );
    after
}

/// An executable `sh` action script in `dir` with `body`; returns its path.
fn action_script(dir: &Path, body: &str) -> String {
    let path = dir.join("action.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path.display().to_string()
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
    let after = loop_went_on(dir.path(), &before);
    assert_eq!(
        (&after[0], &after[2], &after[3]),
        (&before[0], &before[2], &before[3])
    );
}

#[test]
fn with_empty_ns_net_the_setup_namespaces_script_sets_up_the_network() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // A device criu does not dump: with --empty-ns net the network is the runtime's business.
    let script = "ip link add crv0 type veth peer name crv1; i=0; \
                  while :; do i=$((i+1)); echo \"$$ $i x x\" > out.new; mv out.new out; sleep 0.05; done";
    let program = ["setsid", "sh", "-c", script];
    let mut c = Container::start(dir.path(), &["--pid", "--fork", "--net"], &program);
    assert!(wait_until(Duration::from_secs(10), || loop_line(
        dir.path()
    )
    .len()
        == 4));
    c.dump_with(&["--empty-ns", "net"]);
    let seen = dir.path().join("seen");
    let action = action_script(
        dir.path(),
        &format!(
            "case $CRTOOLS_SCRIPT_ACTION in\n\
             setup-namespaces) nsenter -t $CRTOOLS_INIT_PID -n ip link set lo up || exit 1 ;;\nesac\n\
             echo $CRTOOLS_SCRIPT_ACTION $CRTOOLS_INIT_PID >> {}\n",
            seen.display()
        ),
    );
    c.restore_with(
        &["--empty-ns", "net", "--action-script", &action],
        Stdio::null(),
    );
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
    loop_went_on(dir.path(), &before);
}

/// `unshare ARGS sh -c 'SETUP; exec sleep 100'`, a process holding namespaces that stand for
/// a runtime's; killed when dropped.
struct Holder(Child);

impl Holder {
    fn start(args: &[&str], setup: &str) -> Holder {
        let script = format!("{setup}; exec sleep 100");
        let child = Command::new("unshare")
            .args(args)
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .expect("run unshare");
        let h = Holder(child);
        let pid = h.pid();
        let slept = wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("sleep"))
        });
        assert!(slept, "the holder never got ready");
        h
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_external_network_namespace_and_a_joined_uts_namespace_are_entered_not_made() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // The runtime's network namespace, with a device criu does not dump.
    let net = Holder::start(&["--net"], "ip link add crx0 type veth peer name crx1");
    let netns = format!("/proc/{}/ns/net", net.pid());
    let ino = std::fs::metadata(&netns)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    let script = "hostname boxed; i=0; while :; do i=$((i+1)); \
                  echo \"$$ $i $(hostname) x\" > out.new; mv out.new out; sleep 0.05; done";
    let net_arg = format!("--net={netns}");
    let program = [
        "nsenter", &net_arg, "unshare", "--pid", "--fork", "--uts", "setsid", "sh", "-c", script,
    ];
    let mut c = Container::start_with(dir.path(), program[0], &program[1..]);
    assert!(wait_until(Duration::from_secs(10), || loop_line(
        dir.path()
    )
    .len()
        == 4));
    let external = format!("net[{ino}]:extnet");
    c.dump_with(&["--external", &external]);
    // The uts namespace to join instead of making the dumped one again.
    let uts = Holder::start(&["--uts"], "hostname joined");
    let join = format!("uts:{}", uts.pid());
    // criu's fd 0 is the network namespace, handed over as the runtimes do.
    let netns_file = std::fs::File::open(&netns).unwrap();
    c.restore_with(
        &["--inherit-fd", "fd[0]:extnet", "--join-ns", &join],
        Stdio::from(netns_file),
    );
    assert_eq!(ns_link(c.root, "net"), ns_link(net.pid(), "net"));
    assert_eq!(ns_link(c.root, "uts"), ns_link(uts.pid(), "uts"));
    let went_on = wait_until(Duration::from_secs(10), || {
        loop_line(dir.path()).get(2).map(String::as_str) == Some("joined")
    });
    assert!(went_on, "the loop says {:?}", loop_line(dir.path()));
}

#[test]
fn a_joined_network_namespace_the_dump_locked_is_unlocked_by_the_restore() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let net = Holder::start(&["--net"], "ip link set lo up");
    let netns = format!("/proc/{}/ns/net", net.pid());
    // A connection in the namespace (outside the tree): the dump locks the whole namespace.
    let ns = std::fs::File::open(&netns).unwrap();
    let _conn = std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            (c, l.accept().unwrap().0)
        })
        .join()
        .unwrap()
    });
    let script = "i=0; while :; do i=$((i+1)); \
                  echo \"$$ $i x x\" > out.new; mv out.new out; sleep 0.05; done";
    let net_arg = format!("--net={netns}");
    let program = [
        "nsenter", &net_arg, "unshare", "--pid", "--fork", "setsid", "sh", "-c", script,
    ];
    let mut c = Container::start_with(dir.path(), program[0], &program[1..]);
    assert!(wait_until(Duration::from_secs(10), || loop_line(
        dir.path()
    )
    .len()
        == 4));
    c.dump_with(&[]);
    let rules = || harness::lock_rules(Some(net.pid()));
    assert!(!rules().is_empty(), "the dump did not lock the namespace");
    let join = format!("net:{netns}");
    c.restore_with(&["--join-ns", &join], Stdio::null());
    assert_eq!(ns_link(c.root, "net"), ns_link(net.pid(), "net"));
    assert_eq!(
        rules(),
        Vec::<String>::new(),
        "the restore left the namespace locked"
    );
    let before = loop_line(dir.path());
    loop_went_on(dir.path(), &before);
}

#[test]
fn a_restore_that_fails_after_the_namespaces_exist_leaves_nothing_behind() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let script = "i=0; while :; do i=$((i+1)); echo \"$$ $i x x\" > out.new; mv out.new out; sleep 0.05; done";
    let mut c = Container::start(dir.path(), WORLD, &["setsid", "sh", "-c", script]);
    assert!(wait_until(Duration::from_secs(10), || loop_line(
        dir.path()
    )
    .len()
        == 4));
    c.dump();
    // The post-setup-namespaces script fails: the root and its namespaces exist by then.
    let seen = dir.path().join("init-pid");
    let action = action_script(
        dir.path(),
        &format!(
            "[ \"$CRTOOLS_SCRIPT_ACTION\" = post-setup-namespaces ] || exit 0\n\
             readlink /proc/$CRTOOLS_INIT_PID/ns/pid > {0}\necho $CRTOOLS_INIT_PID >> {0}\nexit 1\n",
            seen.display()
        ),
    );
    let out = c.try_restore(&["--action-script", &action], Stdio::null());
    assert!(
        !out.status.success(),
        "the restore succeeded: {}",
        c.log("restore.log")
    );
    let seen = std::fs::read_to_string(&seen).unwrap();
    let mut lines = seen.lines();
    let (pidns, init) = (
        lines.next().unwrap().to_string(),
        lines.next().unwrap().parse::<i32>().unwrap(),
    );
    assert!(
        !Path::new(&format!("/proc/{init}")).exists(),
        "the root {init} is still there"
    );
    // No process is left in the pid namespace the restore made.
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|p| p.parse::<i32>().is_ok())
        .filter(|p| {
            std::fs::read_link(format!("/proc/{p}/ns/pid"))
                .is_ok_and(|l| l.display().to_string() == pidns)
        })
        .collect();
    assert!(left.is_empty(), "left in {pidns}: {left:?}");
}

/// `unshare FLAGS --mount --mount-proc` and the other namespaces, running a shell loop: it is
/// dumped and restored with `--root /` (its root mount is criu's "/", put back as a bind of it)
/// and keeps running, its pids and its own /proc.
fn container_with_mounts_keeps_running(extra: &[&str]) {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // The fourth field counts the pids its own /proc shows: only its own tasks.
    let script = "hostname box; i=0; while :; do i=$((i+1)); \
                  echo \"$$ $i $(hostname) $(ls /proc | grep -c '^[0-9]')\" > out.new; \
                  mv out.new out; sleep 0.05; done";
    let mut flags = extra.to_vec();
    flags.extend(["--mount", "--mount-proc"]);
    flags.extend(WORLD);
    flags.extend(["setsid", "sh", "-c", script]);
    let mut c = Container::start_with(dir.path(), "unshare", &flags);
    assert!(wait_until(Duration::from_secs(10), || loop_line(
        dir.path()
    )
    .len()
        == 4));
    let before = loop_line(dir.path());
    let few = |l: &[String]| {
        l.get(3)
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n < 10)
    };
    assert!(few(&before), "its /proc shows {before:?}");
    c.dump_with(&["--root", "/"]);
    c.restore_with(&["--root", "/"], Stdio::null());
    assert_eq!(c.root_vpid(), "1");
    let me = std::process::id() as i32;
    assert_ne!(ns_link(c.root, "mnt"), ns_link(me, "mnt"));
    let after = loop_went_on(dir.path(), &before);
    assert_eq!((&after[0], &after[2]), (&before[0], &before[2]));
    assert!(few(&after), "its /proc after the restore shows {after:?}");
}

#[test]
fn a_container_with_its_own_mounts_and_proc_made_with_unshare_keeps_running() {
    container_with_mounts_keeps_running(&[]);
}

#[test]
fn the_same_container_in_a_user_namespace_keeps_running() {
    // Its mount namespace is a user namespace's copy of criu's: every mount is locked there.
    container_with_mounts_keeps_running(&["--user", "--map-root-user"]);
}

/// Removes the queues mq_queue makes in criu's IPC namespace.
struct MqQueues(String);

impl Drop for MqQueues {
    fn drop(&mut self) {
        for suffix in ["", "-gone", "-free"] {
            let _ = criu_sys::mqueue::unlink(&format!("{}{suffix}", self.0));
        }
    }
}

#[test]
fn joined_user_and_mount_namespaces_hold_the_restored_task() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("criu-rs-mq-join-{}", std::process::id());
    let _clean = MqQueues(name.clone());
    let mut task = state_task::StateTask::workload("mq_queue")
        .args(&[&name])
        .start(dir.path());
    task.dump(&[]);
    // A runtime's user namespace (every id mapped to itself) and mount namespace.
    let user = Holder::start(&["--user"], "true");
    for map in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{}/{map}", user.pid()), "0 0 4294967295").unwrap();
    }
    let mnt = Holder::start(&["--mount"], "true");
    let join_user = format!("user:{},0,0", user.pid());
    let join_mnt = format!("mnt:/proc/{}/ns/mnt", mnt.pid());
    task.restore_ok(&["--join-ns", &join_user, "--join-ns", &join_mnt]);
    assert_eq!(ns_link(task.pid, "user"), ns_link(user.pid(), "user"));
    assert_eq!(ns_link(task.pid, "mnt"), ns_link(mnt.pid(), "mnt"));
    assert_ne!(
        ns_link(task.pid, "user"),
        ns_link(std::process::id() as i32, "user")
    );
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn namespaces_made_after_joining_a_user_namespace_belong_to_it() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("criu-rs-mq-joinns-{}", std::process::id());
    let mut task = state_task::StateTask::workload("mq_queue")
        .launcher(&["unshare", "--uts", "--ipc"])
        .args(&[&name])
        .start(dir.path());
    task.dump(&[]);
    let user = Holder::start(&["--user"], "true");
    for map in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{}/{map}", user.pid()), "0 0 4294967295").unwrap();
    }
    let join_user = format!("user:{}", user.pid());
    task.restore_ok(&["--join-ns", &join_user]);
    assert_eq!(ns_link(task.pid, "user"), ns_link(user.pid(), "user"));
    let me = std::process::id() as i32;
    for kind in ["uts", "ipc"] {
        assert_ne!(ns_link(task.pid, kind), ns_link(me, kind), "{kind}");
        // Made from inside the joined user namespace: it owns them.
        assert_eq!(
            user_ns_of_ns(task.pid, kind),
            ns_link(user.pid(), "user"),
            "{kind}"
        );
    }
    assert_eq!(task.verdict(), "PASS\n");
}

/// The user namespace that owns `pid`'s namespace of `kind` (ioctl NS_GET_USERNS, through
/// python's fcntl, as the test crate has no unsafe code).
fn user_ns_of_ns(pid: i32, kind: &str) -> String {
    let script = format!(
        "import os, fcntl\n\
         fd = os.open('/proc/{pid}/ns/{kind}', os.O_RDONLY)\n\
         u = fcntl.ioctl(fd, 0xb701)\n\
         print('user:[%d]' % os.fstat(u).st_ino)"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_tree_with_children_joins_a_user_namespace() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // A shell loop with a child that lives as long as it does, in criu's pid namespace.
    let script = "sleep 1000 & i=0; while :; do i=$((i+1)); echo \"$i\" > out.new; \
                  mv out.new out; sleep 0.05; done";
    let mut sh = Command::new("setsid")
        .args(["sh", "-c", script])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let root = sh.id() as i32;
    let count = |d: &Path| -> u64 {
        std::fs::read_to_string(d.join("out"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(wait_until(Duration::from_secs(10), || count(dir.path()) > 2));
    let sleeper = harness::descendants(root)
        .into_iter()
        .find(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.contains("1000"))
        })
        .expect("the loop's sleep 1000");
    std::fs::create_dir_all(dir.path().join("images")).unwrap();
    let pid = root.to_string();
    let dump = ["dump", "-t", &pid, "-D", "images", "-o", "dump.log", "-v4"];
    let out = criu(&dump, dir.path());
    assert!(
        out.status.success(),
        "{}",
        state_task::log(dir.path(), "dump.log")
    );
    let _ = sh.wait();
    // Every dumped task gone, also from the session the root led (zombies left to init keep
    // its id in use until init reaps them).
    let gone = wait_until(Duration::from_secs(10), || {
        harness::in_session(root).is_empty()
    });
    assert!(
        gone,
        "the dumped tree is still there: {:?}",
        harness::in_session(root)
    );
    let user = Holder::start(&["--user"], "true");
    for map in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{}/{map}", user.pid()), "0 0 4294967295").unwrap();
    }
    let join = format!("user:{}", user.pid());
    let restore = [
        "restore",
        "-D",
        "images",
        "-o",
        "restore.log",
        "-v4",
        "-d",
        "--join-ns",
        &join,
    ];
    let out = criu(&restore, dir.path());
    let restored = out.status.success();
    let links = (ns_link(root, "user"), ns_link(sleeper, "user"));
    let before = count(dir.path());
    let went_on = wait_until(Duration::from_secs(10), || count(dir.path()) > before + 2);
    harness::kill_tree(root);
    assert!(restored, "{}", state_task::log(dir.path(), "restore.log"));
    let want = ns_link(user.pid(), "user");
    assert_eq!(links, (want.clone(), want));
    assert!(went_on, "the loop stopped at {before}");
}

#[test]
fn a_container_with_its_own_pid_namespace_and_children_joins_a_user_namespace() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let script = "hostname box; sleep 1000 & i=0; while :; do i=$((i+1)); \
                  echo \"$$ $i $(hostname)\" > out.new; mv out.new out; sleep 0.05; done";
    let program = ["setsid", "sh", "-c", script];
    let mut c = Container::start(dir.path(), &["--pid", "--fork", "--uts"], &program);
    assert!(wait_until(Duration::from_secs(10), || loop_line(
        dir.path()
    )
    .len()
        == 3));
    let sleeper = |root: i32| {
        harness::descendants(root)
            .into_iter()
            .find(|&p| {
                std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| c.contains("1000"))
            })
            .map(|p| {
                status_field(p, "NSpid")
                    .split_whitespace()
                    .last()
                    .unwrap_or("")
                    .to_string()
            })
    };
    let sleeper_before = sleeper(c.root);
    let before = loop_line(dir.path());
    c.dump();
    let user = Holder::start(&["--user"], "true");
    for map in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{}/{map}", user.pid()), "0 0 4294967295").unwrap();
    }
    let join = format!("user:{}", user.pid());
    c.restore_with(&["--join-ns", &join], Stdio::null());
    assert_eq!(c.root_vpid(), "1");
    assert_eq!(sleeper(c.root), sleeper_before);
    assert_eq!(ns_link(c.root, "user"), ns_link(user.pid(), "user"));
    // Its pid namespace was made inside the joined user namespace: that one owns it.
    assert_eq!(user_ns_of_ns(c.root, "pid"), ns_link(user.pid(), "user"));
    let after = loop_went_on(dir.path(), &before);
    assert_eq!((&after[0], &after[2]), (&before[0], &before[2]));
}
