//! Test-side driver of the self-checking restore workload (tests/workloads/src/bin/rs_state.rs),
//! included with `#[path]` by the restore tests next to `harness.rs`.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{bin, wait_until};

/// The workload, killed and reaped (or, once restored, killed by pid) when dropped.
pub struct StateTask {
    child: Option<Child>,
    pub pid: i32,
    result: std::path::PathBuf,
}

impl StateTask {
    pub fn start(dir: &Path) -> StateTask {
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let result = dir.join("result");
        let child = Command::new(bin("rs_state"))
            .arg(&result)
            .arg(&work)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rs_state");
        let pid = child.id() as i32;
        let task = StateTask {
            child: Some(child),
            pid,
            result,
        };
        assert!(
            wait_until(Duration::from_secs(10), || task.result_text() == "READY\n"),
            "rs_state never got ready"
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
        wait_until(Duration::from_secs(10), || crate::harness::is_verdict(&self.result_text()));
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
