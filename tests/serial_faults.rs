//! Every fault point of `criu_actors::fault` (`CRIU_FAULT=N` fails there, `N+1000` makes criu
//! kill itself there): a dump that fails or dies leaves its task running, untraced, with all
//! its state (it checks itself); a restore that fails or dies leaves no task of the tree. And
//! criu killed during injected syscalls of a dump (`CRIU_FAULT_KILL_AT_CALL`), spread over
//! all of them: every task comes back to its own state by itself. A dump of TCP connections
//! that fails or dies leaves them unlocked and out of repair mode.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::process::{Command, Stdio};
use std::time::Duration;

use criu_actors::fault::{Point, DUMP, KILL, RESTORE};
use harness::{descendants, require_root, wait_until};
use state_task::{Argv, StateTask};

fn criu(dir: &std::path::Path, fault: Option<u32>, args: &[&str]) -> std::process::ExitStatus {
    let mut c = Command::new(env!("CARGO_BIN_EXE_criu"));
    c.arg("--no-default-config")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(n) = fault {
        c.env("CRIU_FAULT", n.to_string());
    }
    c.status().unwrap()
}

#[test]
fn a_dump_failing_or_killed_at_every_point_leaves_the_task_unharmed() {
    require_root();
    for p in DUMP {
        for n in [p as u32, p as u32 + KILL] {
            let dir = tempfile::tempdir().unwrap();
            let task = StateTask::start(dir.path());
            std::fs::create_dir(dir.path().join("images")).unwrap();
            let pid = task.pid.to_string();
            let args = ["dump", "-t", &pid, "-D", "images", "-o", "dump.log", "-v4"];
            let status = criu(dir.path(), Some(n), &args);
            let log = task.log("dump.log");
            assert!(
                !status.success(),
                "CRIU_FAULT={n} ({p:?}): the dump succeeded"
            );
            if n < KILL {
                assert!(log.contains(&format!("fault {n} injected")), "{log}");
                assert!(!dir.path().join("images/inventory.img").exists());
            }
            assert!(
                wait_until(Duration::from_secs(5), || harness::tracer(
                    task.pid, task.pid
                ) == 0),
                "CRIU_FAULT={n}: still traced\n{log}"
            );
            assert_eq!(task.verdict(), "PASS\n", "CRIU_FAULT={n} ({p:?}):\n{log}");
        }
    }
}

#[test]
fn a_dump_killed_during_any_injected_call_leaves_the_tree_unharmed() {
    require_root();
    let mut kills = 0;
    // 1 and 2: the first call (the scratch area's mmap) running and stopped; then every
    // 13th, odd and even in turn, until the dump has fewer calls and succeeds.
    for k in [1u32, 2].into_iter().chain((3..).step_by(13)) {
        let dir = tempfile::tempdir().unwrap();
        let task = StateTask::workload("kd_tree")
            .argv(Argv::ArgsResult)
            .start(dir.path());
        std::fs::create_dir(dir.path().join("images")).unwrap();
        let tree = descendants(task.pid);
        let pid = task.pid.to_string();
        let mut c = Command::new(env!("CARGO_BIN_EXE_criu"));
        // -R: a dump that ends kills nothing, so the tree must run on whenever criu dies.
        c.args([
            "--no-default-config",
            "dump",
            "-R",
            "-t",
            &pid,
            "-D",
            "images",
            "--tcp-established",
        ])
        .current_dir(dir.path())
        .env("CRIU_FAULT_KILL_AT_CALL", k.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let status = c.status().unwrap();
        if status.success() {
            break;
        }
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "call {k}: {status}");
        kills += 1;
        for &p in &tree {
            assert!(
                wait_until(Duration::from_secs(10), || harness::free_running(p)),
                "call {k}: pid {p} still traced or stopped"
            );
        }
        assert_eq!(task.verdict(), "PASS\n", "criu killed at injected call {k}");
    }
    eprintln!("criu killed at {kills} injected calls, every task unharmed");
    assert!(
        kills >= 5,
        "only {kills} kills: the dump made too few injected calls"
    );
}

#[test]
fn a_dump_failing_or_killed_at_every_point_leaves_connections_talking() {
    require_root();
    use std::os::unix::process::ExitStatusExt;
    for (own_netns, method) in [
        (false, "iptables"),
        (true, "iptables"),
        (false, "nftables"),
        (true, "nftables"),
        // No lock: the sockets' repair mode alone.
        (false, "skip"),
    ] {
        for p in DUMP {
            for n in [p as u32, p as u32 + KILL] {
                let dir = tempfile::tempdir().unwrap();
                let mut launch = StateTask::workload("in_state")
                    .argv(Argv::ResultArgs)
                    .args(&["inside"]);
                if own_netns {
                    launch = launch.in_own_netns();
                }
                let task = launch.start(dir.path());
                std::fs::create_dir(dir.path().join("images")).unwrap();
                let pid = task.pid.to_string();
                let args = [
                    "dump",
                    "-t",
                    &pid,
                    "-D",
                    "images",
                    "-o",
                    "dump.log",
                    "-v4",
                    "--tcp-established",
                    "--network-lock",
                    method,
                ];
                let status = criu(dir.path(), Some(n), &args);
                let log = task.log("dump.log");
                let what = format!("CRIU_FAULT={n} ({p:?}), {method}, own netns {own_netns}");
                if n > KILL {
                    assert_eq!(status.signal(), Some(libc::SIGKILL), "{what}: {status}");
                } else {
                    assert!(
                        log.contains(&format!("fault {n} injected")),
                        "{what}: {log}"
                    );
                }
                let ns = own_netns.then_some(task.pid);
                assert!(
                    wait_until(Duration::from_secs(5), || harness::lock_rules(ns)
                        .is_empty()),
                    "{what}: lock rules left: {:?}\n{log}",
                    harness::lock_rules(ns)
                );
                // Every byte queued both ways arrives, so no connection stayed in repair mode.
                assert_eq!(task.verdict(), "PASS\n", "{what}:\n{log}");
            }
        }
    }
}

fn alive(pid: i32) -> bool {
    harness::state(pid, pid).is_some_and(|s| s != 'Z' && s != 'X')
}

#[test]
fn a_restore_failing_or_killed_at_every_point_leaves_nothing() {
    require_root();
    // Orphans of a killed criu come here and are reaped at once (see serial_restore_killed).
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let reap = || {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        while let Ok(st) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if st == WaitStatus::StillAlive {
                break;
            }
        }
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    let mut root = Command::new("setsid")
        .args(["sh", "-c", "sleep 1000 & sleep 1000 & wait"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = root.id() as i32;
    assert!(wait_until(Duration::from_secs(5), || descendants(pid)
        .len()
        == 3));
    let tree = descendants(pid);
    let pid_s = pid.to_string();
    let dumped = criu(
        dir.path(),
        None,
        &["dump", "-t", &pid_s, "-D", "images", "-o", "dump.log"],
    );
    assert!(dumped.success());
    let _ = root.wait();
    let gone = |tree: &[i32]| {
        wait_until(Duration::from_secs(10), || {
            reap();
            tree.iter()
                .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        })
    };
    assert!(gone(&tree));
    let restore = ["restore", "-d", "-D", "images", "-o", "restore.log", "-v4"];
    for p in RESTORE {
        for n in [p as u32, p as u32 + KILL] {
            let last = tree.iter().max().unwrap() + 1000;
            std::fs::write("/proc/sys/kernel/ns_last_pid", last.to_string()).unwrap();
            let status = criu(dir.path(), Some(n), &restore);
            let log = std::fs::read_to_string(dir.path().join("images/restore.log")).unwrap();
            assert!(
                !status.success(),
                "CRIU_FAULT={n} ({p}): the restore succeeded\n{log}",
                p = p as u32
            );
            assert!(log.contains(&format!("fault {n} injected")), "{log}");
            let left: Vec<i32> = tree.iter().copied().filter(|&t| alive(t)).collect();
            assert!(
                wait_until(Duration::from_secs(5), || tree.iter().all(|&t| !alive(t))),
                "CRIU_FAULT={n} ({p:?}): {left:?} of {tree:?} left\n{log}"
            );
            assert!(gone(&tree), "CRIU_FAULT={n}: the tree's pids stay taken");
        }
    }
    // And the images still restore.
    assert!(criu(dir.path(), None, &restore).success());
    assert!(tree.iter().all(|&t| alive(t)));
    for &t in &tree {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(t), nix::sys::signal::SIGKILL);
    }
    assert!(gone(&tree));
}

#[test]
fn every_point_has_its_own_number() {
    let mut all: Vec<u32> = DUMP.iter().chain(&RESTORE).map(|&p| p as u32).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), DUMP.len() + RESTORE.len());
    assert!(all.iter().all(|&n| n < KILL) && Point::DumpSeized as u32 == 1);
}
