//! Cgroups through `criu dump` and `criu restore`: a self-checking workload
//! (tests/workloads/src/bin/rs_state.rs) is put by the test into fresh cgroups on a v1
//! controller (pids, with `pids.max` set) and on cgroup2 (`/sys/fs/cgroup/unified`), dumped,
//! and restored under each `--manage-cgroups` mode; `/proc/PID/cgroup` and the property files
//! tell where it came back. `--freeze-cgroup` seizes through the v1 freezer and v2
//! `cgroup.freeze`. A task in a cgroup namespace of its own comes back with the namespace's
//! root where it was (the same /proc/PID/cgroup inside and outside). Every cgroup a test makes is removed when it ends, also on failure. Runs
//! in the nextest `serial` group: cgroups are the host's.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use harness::{require_root, wait_until};
use state_task::StateTask;

const PIDS: &str = "/sys/fs/cgroup/pids";
const UNIFIED: &str = "/sys/fs/cgroup/unified";
const FREEZER: &str = "/sys/fs/cgroup/freezer";

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Cgroups made by a test: removed (deepest first) when dropped, after their tasks are gone.
struct Cgroups {
    dirs: Vec<PathBuf>,
}

impl Cgroups {
    fn new() -> Cgroups {
        Cgroups { dirs: Vec::new() }
    }

    /// A fresh cgroup `criu-test-PID-N` under the hierarchy `root`.
    fn make(&mut self, root: &str) -> PathBuf {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = Path::new(root).join(format!("criu-test-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        self.dirs.push(dir.clone());
        dir
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            if let Ok(f) = std::fs::read_to_string(dir.join("freezer.state")) {
                if f.trim() != "THAWED" {
                    let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
                }
            }
            let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
            // Kill what is left inside, then wait until the cgroup is empty.
            if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                for p in procs.lines().filter_map(|l| l.parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while dir.exists() && std::fs::remove_dir(dir).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// rs_state in `dir`.
fn start(dir: &tempfile::TempDir) -> StateTask {
    StateTask::start(dir.path())
}

fn enter(dir: &Path, pid: i32) {
    std::fs::write(dir.join("cgroup.procs"), pid.to_string())
        .unwrap_or_else(|e| panic!("move {pid} into {}: {e}", dir.display()));
}

/// The path of `pid` on the hierarchy whose /proc/PID/cgroup name is `name` ("" for v2).
fn cgroup_of(pid: i32, name: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .find_map(|l| {
            let (_, rest) = l.split_once(':')?;
            let (n, path) = rest.split_once(':')?;
            (n == name).then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("{pid} has no {name:?} cgroup: {text}"))
}

fn rel(dir: &Path, root: &str) -> String {
    format!("/{}", dir.strip_prefix(root).unwrap().display())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn rmdir(dir: &Path) {
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::remove_dir(dir).is_ok()),
        "cannot remove {}",
        dir.display()
    );
}

fn restore(task: &StateTask, extra: &[&str]) -> std::process::Output {
    task.restore(extra)
}

/// A task in a pids cgroup with pids.max = 50 and in a cgroup2 cgroup, dumped.
fn dumped_in_cgroups(cg: &mut Cgroups, dir: &tempfile::TempDir) -> (StateTask, PathBuf, PathBuf) {
    let pids = cg.make(PIDS);
    std::fs::write(pids.join("pids.max"), "50").unwrap();
    let v2 = cg.make(UNIFIED);
    let mut task = start(dir);
    enter(&pids, task.pid);
    enter(&v2, task.pid);
    task.dump(&[]);
    (task, pids, v2)
}

#[test]
fn soft_recreates_removed_cgroups_with_their_limits() {
    require_root();
    let mut cg = Cgroups::new();
    let dir = tempfile::tempdir().unwrap();
    let (task, pids, v2) = dumped_in_cgroups(&mut cg, &dir);
    let img = task.dir.join("images/cgroup.img");
    assert!(
        std::fs::metadata(&img).unwrap().len() > 8,
        "empty cgroup.img"
    );
    rmdir(&pids);
    rmdir(&v2);
    // No --manage-cgroups: CRIU's default, soft.
    task.restore_ok(&[]);
    assert_eq!(cgroup_of(task.pid, "pids"), rel(&pids, PIDS));
    assert_eq!(cgroup_of(task.pid, ""), rel(&v2, UNIFIED));
    assert_eq!(read(&pids.join("pids.max")), "50");
    assert_eq!(task.verdict(), "PASS\n", "{}", task.log("restore.log"));
}

#[test]
fn soft_reuses_existing_cgroups_and_leaves_their_properties() {
    require_root();
    let mut cg = Cgroups::new();
    let dir = tempfile::tempdir().unwrap();
    let (task, pids, v2) = dumped_in_cgroups(&mut cg, &dir);
    std::fs::write(pids.join("pids.max"), "60").unwrap();
    task.restore_ok(&["--manage-cgroups=soft"]);
    assert_eq!(cgroup_of(task.pid, "pids"), rel(&pids, PIDS));
    assert_eq!(cgroup_of(task.pid, ""), rel(&v2, UNIFIED));
    assert_eq!(read(&pids.join("pids.max")), "60");
    assert_eq!(task.verdict(), "PASS\n", "{}", task.log("restore.log"));
}

#[test]
fn full_sets_properties_of_existing_cgroups() {
    require_root();
    let mut cg = Cgroups::new();
    let dir = tempfile::tempdir().unwrap();
    let (task, pids, _v2) = dumped_in_cgroups(&mut cg, &dir);
    std::fs::write(pids.join("pids.max"), "60").unwrap();
    // The root cgroups of the other hierarchies exist too: full writes their saved values
    // back, which is harmless here.
    task.restore_ok(&["--manage-cgroups=full"]);
    assert_eq!(cgroup_of(task.pid, "pids"), rel(&pids, PIDS));
    assert_eq!(read(&pids.join("pids.max")), "50");
    assert_eq!(task.verdict(), "PASS\n", "{}", task.log("restore.log"));
}

#[test]
fn strict_fails_on_an_existing_cgroup_and_removes_what_it_made() {
    require_root();
    let mut cg = Cgroups::new();
    let dir = tempfile::tempdir().unwrap();
    let (task, pids, v2) = dumped_in_cgroups(&mut cg, &dir);
    rmdir(&pids);
    // pids comes first and is made; the next hierarchy's cgroups exist.
    let out = restore(&task, &["--manage-cgroups=strict"]);
    let log = task.log("restore.log");
    assert_ne!(out.status.code(), Some(0), "{log}");
    assert!(
        log.contains("already exists (--manage-cgroups=strict)"),
        "{log}"
    );
    assert!(!pids.exists(), "the failed restore left {}", pids.display());
    assert!(v2.exists());
    assert!(!Path::new(&format!("/proc/{}", task.pid)).exists());
}

#[test]
fn none_needs_the_cgroups_to_exist() {
    require_root();
    let mut cg = Cgroups::new();
    let dir = tempfile::tempdir().unwrap();
    let (task, pids, _v2) = dumped_in_cgroups(&mut cg, &dir);
    rmdir(&pids);
    let out = restore(&task, &["--manage-cgroups=none"]);
    let log = task.log("restore.log");
    assert_ne!(out.status.code(), Some(0), "{log}");
    assert!(
        log.contains(&format!("{} does not exist", pids.display())),
        "{log}"
    );
}

#[test]
fn ignore_leaves_the_task_in_criu_cgroups() {
    require_root();
    let mut cg = Cgroups::new();
    let dir = tempfile::tempdir().unwrap();
    let (task, pids, v2) = dumped_in_cgroups(&mut cg, &dir);
    rmdir(&pids);
    rmdir(&v2);
    task.restore_ok(&["--manage-cgroups=ignore"]);
    let me = std::process::id() as i32;
    assert_eq!(cgroup_of(task.pid, "pids"), cgroup_of(me, "pids"));
    assert_eq!(cgroup_of(task.pid, ""), cgroup_of(me, ""));
    assert!(!pids.exists() && !v2.exists());
    assert_eq!(task.verdict(), "PASS\n", "{}", task.log("restore.log"));
}

#[test]
fn freeze_cgroup_v1_seizes_and_thaws_with_leave_running() {
    require_root();
    let mut cg = Cgroups::new();
    let freezer = cg.make(FREEZER);
    let dir = tempfile::tempdir().unwrap();
    let task = start(&dir);
    enter(&freezer, task.pid);
    let path = freezer.to_str().unwrap().to_string();
    let out = task.try_dump(&["--freeze-cgroup", &path, "-R"]);
    assert_eq!(out.status.code(), Some(0), "{}", task.log("dump.log"));
    assert_eq!(read(&freezer.join("freezer.state")), "THAWED");
    assert!(task.log("dump.log").contains("frozen"));
    // It ran on: it still answers.
    assert_eq!(task.verdict(), "PASS\n", "{}", task.log("dump.log"));
}

/// criu killed (SIGKILL: nothing of it runs) while the cgroup it froze is frozen: the thaw
/// keeper it forked first thaws the cgroup, and the task runs on.
#[test]
fn freeze_cgroup_thawed_when_criu_dies_while_it_is_frozen() {
    use std::os::unix::process::ExitStatusExt;
    require_root();
    let mut cg = Cgroups::new();
    let freezer = cg.make(FREEZER);
    let dir = tempfile::tempdir().unwrap();
    let task = start(&dir);
    enter(&freezer, task.pid);
    std::fs::create_dir_all(dir.path().join("images")).unwrap();
    let pid = task.pid.to_string();
    let path = freezer.to_str().unwrap().to_string();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_criu"))
        .args(["--no-default-config", "dump", "-t", &pid, "-D", "images"])
        .args(["--freeze-cgroup", &path])
        .env("CRIU_FAULT_KILL_FROZEN", "1")
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    assert!(
        wait_until(Duration::from_secs(5), || read(
            &freezer.join("freezer.state")
        ) == "THAWED"),
        "left {}",
        read(&freezer.join("freezer.state"))
    );
    assert!(wait_until(
        Duration::from_secs(5),
        || harness::free_running(task.pid)
    ));
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn freeze_cgroup_seizes_a_stopped_task_which_stays_stopped() {
    require_root();
    let mut cg = Cgroups::new();
    let freezer = cg.make(FREEZER);
    let dir = tempfile::tempdir().unwrap();
    let task = start(&dir);
    enter(&freezer, task.pid);
    let signal = |sig| nix::sys::signal::kill(nix::unistd::Pid::from_raw(task.pid), sig).unwrap();
    signal(nix::sys::signal::Signal::SIGSTOP);
    let stopped = || harness::state(task.pid, task.pid) == Some('T');
    assert!(wait_until(Duration::from_secs(5), stopped), "never stopped");
    // Seized frozen, a stopped task hangs the seize in the kernel: bounded here.
    std::fs::create_dir_all(task.dir.join("images")).unwrap();
    let out = std::process::Command::new("timeout")
        .args(["-s", "KILL", "30"])
        .arg(env!("CARGO_BIN_EXE_criu"))
        .args(["--no-default-config", "dump", "-t", &task.pid.to_string()])
        .args([
            "-D",
            "images",
            "-o",
            "dump.log",
            "-v4",
            "-R",
            "--freeze-cgroup",
        ])
        .arg(&freezer)
        .current_dir(&task.dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run criu");
    // Thawed here whatever criu did: a frozen task cannot be killed and reaped at the end.
    let state = read(&freezer.join("freezer.state"));
    let _ = std::fs::write(freezer.join("freezer.state"), "THAWED");
    assert_eq!(out.status.code(), Some(0), "{}", task.log("dump.log"));
    assert_eq!(state, "THAWED");
    assert!(stopped(), "-R let the stopped task run");
    signal(nix::sys::signal::Signal::SIGCONT);
    assert_eq!(task.verdict(), "PASS\n", "{}", task.log("dump.log"));
}

#[test]
fn freeze_cgroup_v2_dump_then_restore() {
    require_root();
    let mut cg = Cgroups::new();
    let v2 = cg.make(UNIFIED);
    let dir = tempfile::tempdir().unwrap();
    let mut task = start(&dir);
    enter(&v2, task.pid);
    let path = v2.to_str().unwrap().to_string();
    task.dump(&["--freeze-cgroup", &path]);
    assert_eq!(read(&v2.join("cgroup.freeze")), "0");
    task.restore_ok(&[]);
    assert_eq!(cgroup_of(task.pid, ""), rel(&v2, UNIFIED));
    assert_eq!(task.verdict(), "PASS\n", "{}", task.log("restore.log"));
}

#[test]
fn freeze_cgroup_that_is_no_freezer_fails_and_the_task_runs_on() {
    require_root();
    let mut cg = Cgroups::new();
    let pids = cg.make(PIDS);
    let dir = tempfile::tempdir().unwrap();
    let task = start(&dir);
    enter(&pids, task.pid);
    let path = pids.to_str().unwrap().to_string();
    let out = task.try_dump(&["--freeze-cgroup", &path]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        task.log("dump.log").contains("not a freezer cgroup"),
        "{}",
        task.log("dump.log")
    );
    assert_eq!(task.verdict(), "PASS\n");
}

/// `/proc/PID/cgroup` as read from inside `pid`'s cgroup namespace (nsenter joins only
/// that one, so the pid is criu's view).
fn cgroups_seen_inside(pid: i32) -> String {
    let out = std::process::Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-C", "cat"])
        .arg(format!("/proc/{pid}/cgroup"))
        .output()
        .expect("run nsenter");
    assert!(out.status.success(), "nsenter: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn cgroups_seen_outside(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap()
}

#[test]
fn a_cgroup_namespace_comes_back_with_its_root() {
    require_root();
    let mut cg = Cgroups::new();
    let pids = cg.make(PIDS);
    let v2 = cg.make(UNIFIED);
    let (pids_in, v2_in) = (pids.join("in"), v2.join("in"));
    for d in [&pids_in, &v2_in] {
        std::fs::create_dir(d).unwrap();
        cg.dirs.push(d.clone());
    }
    // The workload enters pids and v2 cgroups, unshares its cgroup namespace there, then
    // moves itself one level down: inside it sees "/in" on those two and "/" elsewhere.
    let into = |d: &Path| format!("echo $$ > {}/cgroup.procs", d.display());
    let inner = format!(
        "{} && {} && exec \"$0\" \"$@\"",
        into(&pids_in),
        into(&v2_in)
    );
    let script = format!(
        "{} && {} && exec unshare -C sh -c '{inner}' \"$0\" \"$@\"",
        into(&pids),
        into(&v2)
    );
    let dir = tempfile::tempdir().unwrap();
    let mut task = StateTask::workload("rs_state")
        .launcher(&["sh", "-c", &script])
        .start(dir.path());
    let me = std::process::id() as i32;
    let link = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/cgroup")).unwrap();
    assert_ne!(
        link(task.pid),
        link(me),
        "the workload has no cgroup namespace"
    );
    let inside = cgroups_seen_inside(task.pid);
    let outside = cgroups_seen_outside(task.pid);
    assert!(
        inside.contains(":pids:/in\n") && inside.contains("\n0::/in\n"),
        "{inside}"
    );
    task.dump(&[]);
    // Made again by the restore (soft).
    for d in [&pids_in, &pids] {
        rmdir(d);
    }
    task.restore_ok(&[]);
    let log = task.log("restore.log");
    let root = format!("cgroup namespace root pids:{}", rel(&pids, PIDS));
    assert!(log.contains(&root), "no {root:?} in {log}");
    assert_ne!(
        link(task.pid),
        link(me),
        "restored without a cgroup namespace"
    );
    assert_eq!(cgroups_seen_inside(task.pid), inside);
    assert_eq!(cgroups_seen_outside(task.pid), outside);
    assert_eq!(task.verdict(), "PASS\n", "{}", task.log("restore.log"));
}
