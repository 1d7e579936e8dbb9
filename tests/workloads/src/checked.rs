//! A self-checking workload under criu, for the tests that include this file with `#[path]`
//! (next to harness.rs): the workload takes its result file as first argument, writes
//! "READY" there once its state is set up, waits for SIGUSR1, then checks its state and writes
//! "PASS" or "FAIL: why". The test dumps and restores it in a temporary directory (images in
//! `images/`), then asks for the verdict.

#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::harness::{descendants, wait_until};

/// Runs criu with `args` in `dir`.
pub fn criu(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .arg("--no-default-config")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run criu")
}

/// The workload; killed (its process group too) when dropped.
pub struct SelfChecking {
    child: Option<Child>,
    pub pid: i32,
    result: PathBuf,
    pub dir: tempfile::TempDir,
}

impl SelfChecking {
    /// Runs `argv` (a program, or a launcher and the program) with the result file and `args`
    /// after it, in a new temporary directory, and waits until it is ready.
    pub fn start(argv: &[OsString], args: &[&str]) -> SelfChecking {
        SelfChecking::start_in(tempfile::tempdir().unwrap(), argv, args)
    }

    /// `start` in a directory the test prepared.
    pub fn start_in(dir: tempfile::TempDir, argv: &[OsString], args: &[&str]) -> SelfChecking {
        std::fs::create_dir(dir.path().join("images")).unwrap();
        let result = dir.path().join("result");
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .arg(&result)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {argv:?}: {e}"));
        let task = SelfChecking {
            pid: child.id() as i32,
            child: Some(child),
            result,
            dir,
        };
        assert!(
            wait_until(Duration::from_secs(20), || task.result() == "READY\n"),
            "{argv:?} never got ready: {}",
            task.result()
        );
        task
    }

    pub fn result(&self) -> String {
        std::fs::read_to_string(&self.result).unwrap_or_default()
    }

    /// A file of the images dir (a log).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("images").join(name)).unwrap_or_default()
    }

    pub fn dump(&mut self, extra: &[&str]) -> Output {
        let pid = self.pid.to_string();
        let mut args = vec!["dump", "-t", &pid, "-D", "images", "-o", "dump.log", "-v4"];
        args.extend_from_slice(extra);
        criu(&args, self.dir.path())
    }

    /// Dumps (the dump must succeed and the tree dies), then waits until every pid of the
    /// tree is free again.
    pub fn dump_ok(&mut self, extra: &[&str]) {
        let tree = descendants(self.pid);
        let out = self.dump(extra);
        assert_eq!(
            out.status.code(),
            Some(0),
            "dump: {out:?}\n{}",
            self.log("dump.log")
        );
        self.reap_dumped(&tree);
    }

    /// After a dump that killed `tree` (the pids read before it): reaps the workload and
    /// waits until init has reaped the rest, so that a restore finds every pid free.
    pub fn reap_dumped(&mut self, tree: &[i32]) {
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        assert!(wait_until(Duration::from_secs(10), || tree
            .iter()
            .all(|p| !Path::new(&format!("/proc/{p}")).exists())));
    }

    /// Restores detached; the restore must succeed.
    pub fn restore_ok(&self, extra: &[&str]) {
        let mut args = vec!["restore", "-D", "images", "-o", "restore.log", "-v4", "-d"];
        args.extend_from_slice(extra);
        let out = criu(&args, self.dir.path());
        assert_eq!(
            out.status.code(),
            Some(0),
            "restore: {out:?}\n{}",
            self.log("restore.log")
        );
    }

    /// The verdict, after SIGUSR1 when `poke` (a workload may also finish by itself).
    pub fn verdict(&self, poke: bool) -> String {
        if poke {
            let pid = nix::unistd::Pid::from_raw(self.pid);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).unwrap();
        }
        wait_until(Duration::from_secs(30), || {
            !matches!(self.result().as_str(), "READY\n" | "")
        });
        self.result()
    }
}

impl Drop for SelfChecking {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.pid);
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}
