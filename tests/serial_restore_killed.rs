//! criu killed (SIGKILL) at random moments of `criu restore -d` of kd_tree (two processes,
//! six threads, a pipe, a socket pair and a loopback TCP connection, 64 MiB of memory):
//! afterwards either the whole tree runs and passes its own checks (the kill came after the
//! restore was complete) or no task of it is left (the restore's watchdog killed the half-made
//! tree). Never some of it. The number of tries is `KILL_TRIES` (default 20; the note's figures
//! come from `KILL_TRIES=1000`). Delays are spread over the time one whole restore takes here.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{descendants, require_root, wait_until, LONG};
use state_task::{Argv, StateTask};

fn criu() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_criu"));
    c.arg("--no-default-config");
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// The kernel's PF_EXITING: the task is on its way out (a SIGKILL was taken).
const PF_EXITING: u64 = 0x4;

/// Whether `pid` is there and not dying: a task the watchdog killed can take a while to tear
/// down 64 MiB, and must not count as a task that runs.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        // After the command's closing parenthesis: state, ppid, pgrp, session, tty_nr,
        // tpgid, flags.
        let fields: Vec<&str> = s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let flags: u64 = fields.get(6).and_then(|f| f.parse().ok()).unwrap_or(0);
        fields.first().is_some_and(|st| *st != "Z" && *st != "X") && flags & PF_EXITING == 0
    })
}

/// Reaps whatever exited among our children (orphans of the tree come to us, a subreaper).
fn reap() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(st) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if st == WaitStatus::StillAlive {
            break;
        }
    }
}

/// No process, not even a zombie, holds `pid` (the next restore needs it free).
fn gone(pid: i32) -> bool {
    reap();
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Each thread of `pids`: its state, tracer, wait channel and blocked signals.
fn thread_states(pids: &[i32]) -> String {
    let mut out = Vec::new();
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
            let status = read("status");
            let field = |name: &str| {
                status
                    .lines()
                    .find(|l| l.starts_with(name))
                    .map(|l| l[name.len()..].trim().to_string())
                    .unwrap_or_default()
            };
            out.push(format!(
                "{pid}/{} {} tracer {} wchan {} syscall {} blocked {}",
                t.file_name().to_string_lossy(),
                field("State:"),
                field("TracerPid:"),
                read("wchan"),
                read("syscall").split(' ').next().unwrap_or("").trim(),
                field("SigBlk:")
            ));
        }
    }
    out.join("; ")
}

/// Whether a restore's watchdog (`criu __restore-watchdog`) is running.
fn watchdog_running() -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .is_ok_and(|c| c.split(|&b| b == 0).any(|w| w == b"__restore-watchdog"))
            && alive(
                e.file_name()
                    .to_str()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
            )
    })
}

fn kill_all(pids: &[i32]) {
    for &p in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(wait_until(Duration::from_secs(10), || pids
        .iter()
        .all(|&p| gone(p))));
}

/// Without a network lock: the dump's rules would stay until a restore completes, and the
/// tries restore the same images again and again.
const TCP: [&str; 3] = ["--tcp-established", "--network-lock", "skip"];

fn restore(images: &std::path::Path) -> std::process::Child {
    criu()
        .args(["restore", "-d", "-D"])
        .arg(images)
        .args(["-o", "restore.log", "-v4"])
        .args(TCP)
        .spawn()
        .unwrap()
}

/// A restore that made some tasks leaves the kernel's next pid right after them, where the
/// next criu's own threads would take the pids the tree needs: move it on. Past pid_max it
/// wraps to the low pids, away from the tree too.
fn move_next_pid_past(tree: &[i32]) {
    let pid_max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let last = (tree.iter().max().unwrap() + 1000).min(pid_max - 1);
    std::fs::write("/proc/sys/kernel/ns_last_pid", last.to_string()).unwrap();
}

#[test]
fn a_restore_killed_at_any_moment_leaves_all_or_nothing() {
    require_root();
    let tries: u32 = std::env::var("KILL_TRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let mut task = StateTask::workload("kd_tree")
        .argv(Argv::ArgsResult)
        .start(dir.path());
    assert!(
        wait_until(LONG, || descendants(task.pid).len() == 2),
        "kd_tree did not start its child"
    );
    let tree = descendants(task.pid);
    task.dump(&TCP);
    // From here orphans (the restored root once criu is gone) come to this test, which reaps
    // them at once: this machine's init reaps only now and then, and a zombie keeps its pid
    // taken. (Set after the dump, whose tree init must reap.)
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let images = dir.path().join("images");
    let result = dir.path().join("result");

    // A first restore warms the caches up (timed cold, it took longer than the tries do and
    // every kill came after the end).
    move_next_pid_past(&tree);
    assert!(restore(&images).wait().unwrap().success());
    kill_all(&tree);
    // One whole restore then: when its first task appears (before that it only reads and
    // checks images, nothing to undo) and when it ends; the kills are spread between.
    move_next_pid_past(&tree);
    let t = Instant::now();
    let mut first = restore(&images);
    let mut first_task = None;
    let status = loop {
        if first_task.is_none() && alive(tree[0]) {
            first_task = Some(t.elapsed());
        }
        if let Some(status) = first.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    assert!(status.success());
    let whole_restore = t.elapsed();
    let first_task = first_task
        .unwrap_or_default()
        .saturating_sub(whole_restore / 5);
    assert_eq!(task.verdict(), "PASS\n", "after a whole restore");
    kill_all(&tree);

    let (mut whole, mut none) = (0, 0);
    for i in 0..tries {
        // From just before the first task to just past the end, early and late moments alike.
        let span = (whole_restore + whole_restore / 10).saturating_sub(first_task);
        let delay = first_task + span * (i * 37 % 100 + 1) / 100;
        std::fs::write(&result, "READY\n").unwrap();
        move_next_pid_past(&tree);
        let mut criu = restore(&images);
        std::thread::sleep(delay);
        let _ = criu.kill();
        let _ = criu.wait();
        // The watchdog needs a moment to see criu gone and kill a half-made tree: the tree
        // is judged once it has exited (this test reaps it, a subreaper).
        assert!(
            wait_until(Duration::from_secs(10), || {
                reap();
                !watchdog_running()
            }),
            "try {i}: the restore's watchdog is still there"
        );
        let settled = wait_until(Duration::from_secs(5), || {
            let n = tree.iter().filter(|&&p| alive(p)).count();
            n == 0 || n == tree.len()
        });
        let living: Vec<i32> = tree.iter().copied().filter(|&p| alive(p)).collect();
        let log = std::fs::read_to_string(images.join("restore.log")).unwrap_or_default();
        assert!(
            settled,
            "try {i} (killed after {delay:?}): a half-restored tree: {living:?} of {tree:?} run"
        );
        // A restore that failed on its own (not killed) would prove nothing.
        assert!(
            !log.contains("Error"),
            "try {i}: the restore failed:\n{log}"
        );
        if living.is_empty() {
            none += 1;
        } else {
            whole += 1;
            // Complete, so it must be the tree that was dumped.
            let verdict = task.verdict();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            assert_eq!(
                verdict,
                "PASS\n",
                "try {i} (killed after {delay:?}); threads: {}; restore.log ends: {tail:?}",
                thread_states(&tree)
            );
        }
        kill_all(&tree);
    }
    eprintln!(
        "{tries} kills from {first_task:?} to {:?} (a whole restore: {whole_restore:?}): \
         {whole} whole trees, {none} with nothing left",
        whole_restore + whole_restore / 10
    );
    assert!(
        none > 0,
        "no kill came during a restore: the test proves nothing"
    );
}
