//! criu killed (SIGKILL) at random moments of `criu restore -d` of a 4-task tree: afterwards
//! either the whole tree runs (the kill came after the restore was complete) or no task of it
//! is left (the restore's watchdog killed the half-made tree). Never some of it. The number of
//! tries is `KILL_TRIES` (default 20; the note's figures come from `KILL_TRIES=1000`).

#[path = "workloads/src/harness.rs"]
mod harness;

use std::process::{Command, Stdio};
use std::time::Duration;

use harness::{descendants, require_root, wait_until};

fn criu() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_criu"));
    c.arg("--no-default-config");
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
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

#[test]
fn a_restore_killed_at_any_moment_leaves_all_or_nothing() {
    require_root();
    // Orphans (the restored root once criu is gone) come to this test, which reaps them at
    // once: this machine's init reaps only now and then, and a zombie keeps its pid taken.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let tries: u32 = std::env::var("KILL_TRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    // A session leader with three children, all sleeping.
    let mut root = Command::new("setsid")
        .args(["sh", "-c", "sleep 1000 & sleep 1000 & sleep 1000 & wait"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = root.id() as i32;
    assert!(wait_until(Duration::from_secs(5), || descendants(pid)
        .len()
        == 4));
    let tree = descendants(pid);
    let dumped = criu()
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&images)
        .args(["-o", "dump.log"])
        .status()
        .unwrap();
    assert!(dumped.success(), "dump failed");
    let _ = root.wait();
    assert!(wait_until(Duration::from_secs(5), || tree
        .iter()
        .all(|&p| gone(p))));

    let (mut whole, mut none) = (0, 0);
    for i in 0..tries {
        // Spread the kills over 5..65 ms: this machine's restore of the tree ends in about 50.
        let delay = Duration::from_micros(5_000 + u64::from(i) * 7919 % 60_000);
        // A restore that made some tasks leaves the kernel's next pid right after them, where
        // the next criu's own threads would take the pids the tree needs: move it on.
        // Past pid_max it wraps to the low pids, away from the tree too.
        let pid_max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let last = (tree.iter().max().unwrap() + 1000).min(pid_max - 1);
        std::fs::write("/proc/sys/kernel/ns_last_pid", last.to_string()).unwrap();
        let mut restore = criu()
            .args(["restore", "-d", "-D"])
            .arg(&images)
            .args(["-o", "restore.log", "-v4"])
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = restore.kill();
        let _ = restore.wait();
        // The watchdog needs a moment to see criu gone.
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
        }
        kill_all(&tree);
    }
    eprintln!("{tries} kills: {whole} whole trees, {none} with nothing left");
}
