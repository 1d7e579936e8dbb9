//! Test-side helpers of the dump tests (tests/serial_dump*.rs), included with `#[path]` (and
//! `#[macro_use]`, for `read_all!` and `one!`) next to `harness.rs`: start a workload, run
//! `criu dump` on it, read back what it wrote.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use criu_proto::images::*;
use criu_proto::ImageKind;

use crate::harness::{self, bin, wait_until};

/// A workload started with /dev/null as stdio.
pub struct Proc {
    pub child: Child,
    pub pid: i32,
}

impl Drop for Proc {
    fn drop(&mut self) {
        harness::kill_tree(self.pid);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn(cmd: &mut Command) -> Proc {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn workload");
    let pid = child.id() as i32;
    Proc { child, pid }
}

/// Waits for a workload's ready file and returns its words.
pub fn ready(path: &Path) -> Vec<String> {
    assert!(
        wait_until(Duration::from_secs(10), || path.exists()),
        "no ready file {}",
        path.display()
    );
    std::fs::read_to_string(path)
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// What a `criu dump` run ended with.
pub struct Dumped {
    pub rc: i32,
    pub stderr: String,
}

/// `criu dump -t PID -D DIR -o dump.log -v4 EXTRA` (the log in DIR): its exit code and stderr.
pub fn criu_dump(pid: i32, dir: &Path, extra: &[&str]) -> Dumped {
    let out = Command::new(env!("CARGO_BIN_EXE_criu"))
        .args(["dump", "--no-default-config", "-t", &pid.to_string(), "-D"])
        .arg(dir)
        .args(["-o", "dump.log", "-v4"])
        .args(extra)
        .output()
        .expect("run criu");
    Dumped {
        rc: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every entry of an image, decoded as `$t`.
macro_rules! read_all {
    ($dir:expr, $kind:expr, $id:expr, $t:ty) => {{
        let (kind, id): (&criu_proto::ImageKind, Option<u64>) = ($kind, $id);
        criu_proto::ImageReader::open($dir, kind, id)
            .unwrap_or_else(|e| panic!("open {}: {e}", kind.file_name(id)))
            .read_all::<$t>()
            .unwrap_or_else(|e| panic!("read {}: {e}", kind.file_name(id)))
    }};
}

/// The only entry of an image.
macro_rules! one {
    ($dir:expr, $kind:expr, $id:expr, $t:ty) => {{
        let mut all = read_all!($dir, $kind, $id, $t);
        assert_eq!(
            all.len(),
            1,
            "{} entries in {}",
            all.len(),
            $kind.file_name($id)
        );
        all.remove(0)
    }};
}

pub fn state(pid: i32) -> Option<char> {
    harness::state(pid, pid)
}

pub fn tracer_pid(pid: i32) -> i32 {
    harness::tracer(pid, pid)
}

pub fn pages_files_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// The dump stats, checked against the pages images.
pub fn check_stats(dir: &Path) -> DumpStatsEntry {
    let stats = one!(dir, &ImageKind::STATS_DUMP, None, StatsEntry);
    let d = stats.dump.expect("dump stats");
    assert_eq!(
        d.pages_written * 4096,
        pages_files_size(dir),
        "pages_written vs pages-*.img size"
    );
    assert!(d.pages_scanned >= d.pages_written);
    assert!(d.frozen_time >= d.freezing_time);
    d
}

pub fn sig_bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// dump_state with `threads` more threads and a `mib` MiB pattern area, waited for until it
/// pauses: (it, the area's address and length, the other threads' tids).
pub fn start_state(dir: &Path, threads: usize, mib: usize) -> (Proc, u64, u64, Vec<i32>) {
    let ready_file = dir.join("ready");
    let p = spawn(
        Command::new(bin("dump_state"))
            .arg(&ready_file)
            .arg(threads.to_string())
            .arg(mib.to_string()),
    );
    let words = ready(&ready_file);
    std::fs::remove_file(&ready_file).unwrap();
    let addr = u64::from_str_radix(words[0].trim_start_matches("0x"), 16).unwrap();
    let len: u64 = words[1].parse().unwrap();
    let tids = words[2..].iter().map(|w| w.parse().unwrap()).collect();
    harness::wait_in_syscall(p.pid, p.pid, libc::SYS_pause);
    (p, addr, len, tids)
}
