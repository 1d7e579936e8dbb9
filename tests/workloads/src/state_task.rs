//! Test-side driver of the self-checking restore workload (tests/workloads/src/bin/rs_state.rs),
//! included with `#[path]` by the restore tests next to `harness.rs`.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{bin, wait_until};

/// A self-checking workload (`NAME [ARGS...] RESULT_FILE WORK_DIR`): it writes READY to
/// RESULT_FILE, then on SIGUSR1 checks itself and writes its verdict. Killed and reaped (or,
/// once restored, killed by pid) when dropped.
pub struct StateTask {
    child: Option<Child>,
    pub pid: i32,
    result: std::path::PathBuf,
    /// Where the workload keeps its files.
    pub work: std::path::PathBuf,
}

impl StateTask {
    /// rs_state.
    pub fn start(dir: &Path) -> StateTask {
        StateTask::start_workload("rs_state", &[], dir)
    }

    /// Workload `name` with `args` before its result file and work dir (both in `dir`).
    pub fn start_workload(name: &str, args: &[&str], dir: &Path) -> StateTask {
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let result = dir.join("result");
        let child = Command::new(bin(name))
            .args(args)
            .arg(&result)
            .arg(&work)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let pid = child.id() as i32;
        let task = StateTask {
            child: Some(child),
            pid,
            result,
            work,
        };
        assert!(
            wait_until(Duration::from_secs(10), || task.result_text() == "READY\n"),
            "{name} never got ready"
        );
        task
    }

    pub fn result_text(&self) -> String {
        std::fs::read_to_string(&self.result).unwrap_or_default()
    }

    /// Reaps the original after a dump killed it, so its pid is free again.
    pub fn reap(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// Tells the (restored) task to check itself; returns its verdict.
    pub fn verdict(&self) -> String {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .unwrap();
        wait_until(Duration::from_secs(10), || {
            crate::harness::is_verdict(&self.result_text())
        });
        self.result_text()
    }
}

impl Drop for StateTask {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        self.reap();
    }
}
