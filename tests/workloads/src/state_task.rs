//! Test-side driver of the self-checking workloads (tests/workloads/src/bin/: rs_state,
//! lk_hold, rf_files, af_anon, ff_*, fo_*), and the tests' way to run our own `criu` on them.
//! Included with `#[path]` by the restore tests next to `harness.rs`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::harness::{bin, descendants, is_verdict, kill_tree, wait_until, LONG};

/// Runs our `criu --no-default-config ARGS` in `dir`: stdin /dev/null, stdout and stderr
/// captured.
pub fn criu(args: &[&str], dir: &Path) -> Output {
    criu_with(args, dir, Stdio::null(), Stdio::piped())
}

/// [`criu`] with the given stdin and stdout; stderr captured.
pub fn criu_with(args: &[&str], dir: &Path, stdin: Stdio, stdout: Stdio) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .arg("--no-default-config")
        .args(args)
        .current_dir(dir)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("run criu")
}

/// The log `name` that criu wrote in `dir/images` ("" if there is none).
pub fn log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join("images").join(name)).unwrap_or_default()
}

/// `criu dump -t ROOT -D images -o dump.log -v4 EXTRA` in `dir` (its `images` made first);
/// panics with the log when it fails.
pub fn dump_tree(dir: &Path, root: i32, extra: &[&str]) {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let root = root.to_string();
    let mut args = vec!["dump", "-t", &root, "-D", "images", "-o", "dump.log", "-v4"];
    args.extend(extra);
    let out = criu(&args, dir);
    assert!(out.status.success(), "dump: {}", log(dir, "dump.log"));
}

/// `criu restore -D images -o restore.log -v4 -d --pidfile pid EXTRA` in `dir`; the restored
/// root (as criu sees it). Panics with the log when it fails.
pub fn restore_tree(dir: &Path, extra: &[&str]) -> i32 {
    let mut args = vec!["restore", "-D", "images", "-o", "restore.log", "-v4", "-d"];
    args.extend(["--pidfile", "pid"]);
    args.extend(extra);
    let out = criu(&args, dir);
    assert!(out.status.success(), "restore: {}", log(dir, "restore.log"));
    let pid = std::fs::read_to_string(dir.join("images/pid")).unwrap_or_default();
    pid.trim().parse().expect("the restore's pidfile")
}

/// Where a workload reads its result file (and work dir) in its argv.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Argv {
    /// `NAME [ARGS...] RESULT_FILE WORK_DIR`, the work dir made first: rs_state, lk_hold,
    /// rf_files (`MODE`), ff_fifo, fo_owner, fo_locks.
    ArgsResultWork,
    /// `NAME [ARGS...] RESULT_FILE`: af_anon (`KIND`).
    ArgsResult,
    /// `NAME RESULT_FILE [ARGS...]`: ff_inherit (`LOG_FILE`), fo_stdio.
    ResultArgs,
}

/// How to start a [`StateTask`]: `StateTask::workload(NAME)`, then what differs from the
/// defaults (no args, [`Argv::ArgsResultWork`], stdin and stdout /dev/null), then `start`.
pub struct Launch<'a> {
    name: &'a str,
    /// A program that runs the workload (`unshare -n ...`), execing it in the same process.
    launcher: Vec<String>,
    args: Vec<String>,
    argv: Argv,
    stdin: Stdio,
    stdout: Stdio,
}

impl Launch<'_> {
    /// Runs the workload through `launcher` (its argv, the workload's path and arguments
    /// follow), which must exec it in the same process.
    pub fn launcher(mut self, launcher: &[&str]) -> Self {
        self.launcher = launcher.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Runs the workload in a network namespace of its own with `lo` up (`unshare -n`, which
    /// execs it in the same process).
    pub fn in_own_netns(self) -> Self {
        self.launcher(&[
            "unshare",
            "-n",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ])
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn argv(mut self, argv: Argv) -> Self {
        self.argv = argv;
        self
    }

    pub fn stdin(mut self, stdin: Stdio) -> Self {
        self.stdin = stdin;
        self
    }

    pub fn stdout(mut self, stdout: Stdio) -> Self {
        self.stdout = stdout;
        self
    }

    /// Starts the workload with its result file (and work dir) in `dir`; waits until it is
    /// READY.
    pub fn start(self, dir: &Path) -> StateTask {
        let name = self.name;
        let work = dir.join("work");
        let result = dir.join("result");
        let mut cmd = match self.launcher.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin(name));
                c
            }
            None => Command::new(bin(name)),
        };
        match self.argv {
            Argv::ArgsResultWork => {
                std::fs::create_dir_all(&work).unwrap();
                cmd.args(&self.args).arg(&result).arg(&work)
            }
            Argv::ArgsResult => cmd.args(&self.args).arg(&result),
            Argv::ResultArgs => cmd.arg(&result).args(&self.args),
        };
        let child = cmd
            .stdin(self.stdin)
            .stdout(self.stdout)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let task = StateTask {
            pid: child.id() as i32,
            child: Some(child),
            result,
            work,
            dir: dir.to_path_buf(),
        };
        wait_until(Duration::from_secs(10), || {
            let text = task.result_text();
            text == "READY\n" || is_verdict(&text)
        });
        let text = task.result_text();
        assert_eq!(text, "READY\n", "{name} never got ready: {text:?}");
        task
    }
}

/// A self-checking workload: it writes READY to its result file, then on SIGUSR1 checks
/// itself and writes its verdict. Its tree is killed and reaped (or, once restored, killed
/// by pid) when dropped.
pub struct StateTask {
    child: Option<Child>,
    pub pid: i32,
    result: PathBuf,
    /// Where the workload keeps its files (made only for [`Argv::ArgsResultWork`]).
    pub work: PathBuf,
    /// The dir it was started in: criu runs here, with its images in `images`.
    pub dir: PathBuf,
}

impl StateTask {
    /// A workload to start; see [`Launch`].
    pub fn workload(name: &str) -> Launch<'_> {
        Launch {
            name,
            launcher: Vec::new(),
            args: Vec::new(),
            argv: Argv::ArgsResultWork,
            stdin: Stdio::null(),
            stdout: Stdio::null(),
        }
    }

    /// rs_state.
    pub fn start(dir: &Path) -> StateTask {
        StateTask::start_workload("rs_state", &[], dir)
    }

    /// Workload `name` with `args` before its result file and work dir (both in `dir`).
    pub fn start_workload(name: &str, args: &[&str], dir: &Path) -> StateTask {
        StateTask::workload(name).args(args).start(dir)
    }

    pub fn result_text(&self) -> String {
        std::fs::read_to_string(&self.result).unwrap_or_default()
    }

    /// Whether the task is there and not a zombie.
    pub fn alive(&self) -> bool {
        crate::harness::state(self.pid, self.pid).is_some_and(|s| s != 'Z' && s != 'X')
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
        self.wait_verdict()
    }

    /// The verdict of a task that checks itself unasked.
    pub fn wait_verdict(&self) -> String {
        wait_until(LONG, || is_verdict(&self.result_text()));
        self.result_text()
    }

    /// `criu dump -t PID -D images -o dump.log -v4 EXTRA` in the task's dir.
    pub fn try_dump(&self, extra: &[&str]) -> Output {
        std::fs::create_dir_all(self.dir.join("images")).unwrap();
        let pid = self.pid.to_string();
        let mut args = vec!["dump", "-t", &pid, "-D", "images", "-o", "dump.log", "-v4"];
        args.extend_from_slice(extra);
        criu(&args, &self.dir)
    }

    /// A dump that must succeed; then waits until the whole dumped tree is gone (the original
    /// reaped here, the others by init), so that its pids are free for a restore.
    pub fn dump(&mut self, extra: &[&str]) {
        let tree = descendants(self.pid);
        let out = self.try_dump(extra);
        self.assert_ok(&out, "dump");
        self.reap_dumped(&tree);
    }

    /// After a dump (ours or made elsewhere, as over RPC) killed `tree`, the pids read before
    /// it: reaps the original and waits until init has reaped the rest.
    pub fn reap_dumped(&mut self, tree: &[i32]) {
        self.reap();
        let gone = wait_until(Duration::from_secs(10), || {
            tree.iter()
                .all(|p| !Path::new(&format!("/proc/{p}")).exists())
        });
        assert!(gone, "the dumped tree {tree:?} is still there");
    }

    /// `criu restore -D images -o restore.log -v4 -d EXTRA` in the task's dir.
    pub fn restore(&self, extra: &[&str]) -> Output {
        self.restore_with(extra, Stdio::null(), Stdio::piped())
    }

    /// [`StateTask::restore`] with criu's stdin and stdout given.
    pub fn restore_with(&self, extra: &[&str], stdin: Stdio, stdout: Stdio) -> Output {
        let mut args = vec!["restore", "-D", "images", "-o", "restore.log", "-v4", "-d"];
        args.extend_from_slice(extra);
        criu_with(&args, &self.dir, stdin, stdout)
    }

    /// A restore that must succeed.
    pub fn restore_ok(&self, extra: &[&str]) {
        let out = self.restore(extra);
        self.assert_ok(&out, "restore");
    }

    /// Asserts that criu's `action` ("dump", "restore") succeeded; shows its log if not.
    pub fn assert_ok(&self, out: &Output, action: &str) {
        assert_eq!(
            out.status.code(),
            Some(0),
            "{action} failed: {out:?}\n{}",
            self.log(&format!("{action}.log"))
        );
    }

    /// The log `name` of criu runs in the task's dir.
    pub fn log(&self, name: &str) -> String {
        log(&self.dir, name)
    }

    /// What criu said about a run: its stderr, then its log `name`.
    pub fn said(&self, out: &Output, name: &str) -> String {
        format!("{}{}", String::from_utf8_lossy(&out.stderr), self.log(name))
    }
}

impl Drop for StateTask {
    fn drop(&mut self) {
        kill_tree(self.pid);
        self.reap();
    }
}
