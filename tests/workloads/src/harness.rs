//! Test-side helpers for the tracee integration tests (included with `#[path]` by
//! tests/tracee_*.rs): build and start workload binaries, read their lines, look at /proc,
//! and kill and reap every process a test started.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Directory of the workload binaries, built once per test process with their own target dir
/// (so the build never waits on the lock of the cargo that runs the tests).
fn bin_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        // <target>/<profile>/deps/<test> -> <target>
        let target = exe.ancestors().nth(3).expect("target dir").to_path_buf();
        let dir = target.join("tracee-workloads");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "build",
                "--quiet",
                "--offline",
                "-p",
                "criu-test-workloads",
                "--bins",
                "--target-dir",
            ])
            .arg(&dir)
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("run cargo build for the workloads");
        assert!(status.success(), "building criu-test-workloads failed");
        dir.join("debug")
    })
}

pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Fails the test unless it runs as root. Being root is not a kernel feature a machine may lack,
/// so a test that needs it fails rather than passing without doing its work.
pub fn require_root() {
    assert!(
        is_root(),
        "this test needs root: it ptraces, checkpoints or restores real processes \
         (run the tests as root, see README)"
    );
}

/// A started workload; dropping it kills its whole tree and reaps it.
pub struct Workload {
    pub child: Child,
    pub pid: i32,
    lines: Receiver<String>,
}

impl Workload {
    pub fn start(name: &str, args: &[&str]) -> Workload {
        let mut child = Command::new(bin(name))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let pid = child.id() as i32;
        Workload {
            child,
            pid,
            lines: rx,
        }
    }

    /// The next line on the workload's stdout, within `timeout`.
    pub fn line(&self, timeout: Duration) -> String {
        self.lines
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("pid {}: no line within {timeout:?}: {e}", self.pid))
    }

    /// Waits for a line starting with `prefix` and returns the words after it.
    pub fn expect(&self, prefix: &str, timeout: Duration) -> Vec<String> {
        let line = self.line(timeout);
        let rest = line
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("pid {}: expected {prefix:?}, got {line:?}", self.pid));
        rest.split_whitespace().map(str::to_string).collect()
    }

    pub fn send(&mut self, text: &str) {
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        stdin.write_all(text.as_bytes()).expect("write to workload");
        stdin.flush().expect("flush workload stdin");
    }

    /// Waits up to `timeout` for the workload to end by itself; how it ended, or `TimedOut`
    /// if it still runs (it is looked at at least once, so a zero timeout asks "still
    /// running?").
    pub fn wait_exit(&mut self, timeout: Duration) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        let end = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => {
                    return match (st.code(), st.signal()) {
                        (Some(code), _) => Exit::Code(code),
                        (None, Some(sig)) => Exit::Signal(sig),
                        (None, None) => panic!("pid {}: wait status {st:?}", self.pid),
                    }
                }
                Ok(None) => {}
                Err(e) => panic!("pid {}: wait: {e}", self.pid),
            }
            if Instant::now() >= end {
                return Exit::TimedOut;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// How a workload ended, as [`Workload::wait_exit`] saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal (this number) killed it.
    Signal(i32),
    /// It was still running when the wait ended.
    TimedOut,
}

impl Drop for Workload {
    fn drop(&mut self) {
        kill_tree(self.pid);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every process in the tree under `pid`, `pid` first.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        for tid in threads(p) {
            let text = std::fs::read_to_string(format!("/proc/{p}/task/{tid}/children"))
                .unwrap_or_default();
            out.extend(
                text.split_whitespace()
                    .filter_map(|w| w.parse::<i32>().ok()),
            );
        }
        i += 1;
    }
    out
}

/// SIGKILLs every process under `pid` (children first), `pid` included.
pub fn kill_tree(pid: i32) {
    for p in descendants(pid).into_iter().rev() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

pub fn threads(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// One-letter state of a thread ('t' = traced and stopped), None if gone.
pub fn state(pid: i32, tid: i32) -> Option<char> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    text.rsplit_once(')')?.1.trim_start().chars().next()
}

/// TracerPid of a thread (0 when not traced).
pub fn tracer(pid: i32, tid: i32) -> i32 {
    status_field(pid, tid, "TracerPid:").unwrap_or(0)
}

pub fn status_field(pid: i32, tid: i32, field: &str) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until thread `tid` is blocked in syscall `nr` (per /proc/PID/task/TID/syscall).
pub fn wait_in_syscall(pid: i32, tid: i32, nr: i64) {
    let ok = wait_until(Duration::from_secs(10), || {
        let text =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).unwrap_or_default();
        text.split_whitespace()
            .next()
            .and_then(|w| w.parse::<i64>().ok())
            == Some(nr)
    });
    assert!(ok, "tid {tid} never blocked in syscall {nr}");
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// /proc/PID/maps as text.
/// Every thread of `pid` untraced and not stopped: let go for good.
pub fn free_running(pid: i32) -> bool {
    threads(pid)
        .iter()
        .all(|&t| tracer(pid, t) == 0 && !matches!(state(pid, t), Some('t' | 'T')))
}

pub fn maps(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default()
}

/// Where /proc/PID/fd/FD points, if open.
pub fn fd_target(pid: i32, fd: i64) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()
}

pub const LONG: Duration = Duration::from_secs(20);

/// Whether a self-checking workload's result file holds its whole verdict ("PASS" or
/// "FAIL: ..."), not READY nor the empty moment of its rewrite.
pub fn is_verdict(text: &str) -> bool {
    text.starts_with("PASS") || text.starts_with("FAIL")
}

/// Runs `work` on a thread in `pid`'s network namespace.
pub fn on_thread_in_netns<T: Send>(pid: i32, work: impl FnOnce() -> T + Send) -> T {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            work()
        })
        .join()
        .unwrap()
    })
}

/// criu's network lock in the network namespace of `netns_of` (the host's for None): rules
/// with its mark (0xc114) in the filter tables, and its nftables tables.
pub fn lock_rules(netns_of: Option<i32>) -> Vec<String> {
    let mut rules = Vec::new();
    for (tool, args, needle) in [
        ("iptables", &["-w", "-S"][..], "0xc114"),
        ("ip6tables", &["-w", "-S"], "0xc114"),
        ("nft", &["list", "tables"], "CRIU"),
    ] {
        let mut c = match netns_of {
            Some(pid) => {
                let mut c = Command::new("nsenter");
                c.args(["-t", &pid.to_string(), "-n", tool]);
                c
            }
            None => Command::new(tool),
        };
        let out = c.args(args).output().expect(tool);
        rules.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains(needle))
                .map(|l| format!("{tool}: {l}")),
        );
    }
    rules
}

/// The processes of session `sid`.
pub fn in_session(sid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // After "(comm)": state, ppid, pgrp, session.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            rest.split_whitespace().nth(3) == Some(&sid.to_string())
        })
        .collect()
}

/// A file's text without its surrounding whitespace; "" if it cannot be read.
pub fn read_trimmed(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A started process and the tree it leads, killed and reaped when dropped, however the test
/// ends. `pid` may name another process than the child's (the tree a test follows).
pub struct KillOnDrop {
    pub child: Child,
    pub pid: i32,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill_tree(self.pid);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
