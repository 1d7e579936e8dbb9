//! SIGTERM to `criu dump` at random moments: either the dump finished (exit 0, the task
//! dumped and gone) or it rolled back: criu exits non-zero, leaves no inventory, and the task
//! runs on untraced with all its state (it checks itself: memory, registers, signals...).

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::process::{Command, Stdio};
use std::time::Duration;

use harness::{require_root, wait_until};
use state_task::StateTask;

#[test]
fn a_dump_stopped_by_sigterm_rolls_back_and_the_task_runs_on() {
    require_root();
    let (mut finished, mut rolled_back) = (0, 0);
    for i in 0..20u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut task = StateTask::start(dir.path());
        std::fs::create_dir(dir.path().join("images")).unwrap();
        let mut criu = Command::new(env!("CARGO_BIN_EXE_criu"))
            .args(["--no-default-config", "dump", "-t", &task.pid.to_string()])
            .args(["-D", "images", "-o", "dump.log", "-v4"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(i * 1_700));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(criu.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let status = criu.wait().unwrap();
        let log = task.log("dump.log");
        // A signal just after a finished dump ends criu with 128 + SIGTERM, the dump done.
        if status.success() || log.contains("Dumping finished successfully") {
            finished += 1;
            task.reap();
            continue;
        }
        // Killed by the signal itself only before criu took it over, and exiting at once
        // (128 + SIGTERM) only outside the dump: nothing was seized yet. During the dump it
        // stops at a phase and exits 1, saying why.
        match status.code() {
            None => assert!(
                log.is_empty(),
                "try {i}: criu died of the signal mid-dump:\n{log}"
            ),
            Some(143) => assert!(!log.contains("seiz"), "try {i}: exited mid-dump:\n{log}"),
            Some(code) => {
                assert_eq!(code, 1, "try {i}:\n{log}");
                assert!(
                    log.contains("SIGTERM"),
                    "try {i}: no word of the signal:\n{log}"
                );
            }
        }
        rolled_back += 1;
        assert!(
            !dir.path().join("images/inventory.img").exists(),
            "try {i}: a rolled-back dump left an inventory"
        );
        assert!(
            wait_until(Duration::from_secs(5), || harness::tracer(
                task.pid, task.pid
            ) == 0),
            "try {i}: the task is still traced\n{log}"
        );
        assert_eq!(task.verdict(), "PASS\n", "try {i}:\n{log}");
    }
    eprintln!("20 SIGTERMs: {finished} dumps finished first, {rolled_back} rolled back");
    assert!(
        rolled_back > 0,
        "no SIGTERM came during a dump: the test proves nothing"
    );
}
