//! Iterative dumps: `criu pre-dump` rounds, each with `--prev-images-dir` naming the round
//! before, then `criu dump --prev-images-dir --track-mem`, of a tree that never stops
//! rewriting its memory (tests/workloads/src/bin/mp_writer.rs journals which generation each
//! page holds and checks itself). They prove that
//! - a pre-dump leaves the tree running (not stopped, not traced), also as it grows new
//!   mappings and new children between rounds;
//! - the final dump links its parent (`parent` -> `../3`) and writes only what changed since
//!   (far less than the 256 MiB area the first round wrote in full);
//! - the restore from that chain of images gives every task exactly the memory it had when the
//!   dump froze it: every page of every task matches its journal, whichever round it came from;
//! - a pre-dump whose parent images directory does not exist fails, as CRIU's does ("Invalid
//!   parent image directory provided"), before touching the tree, which runs on intact.
//!
//! The first test needs soft-dirty page tracking (CONFIG_MEM_SOFT_DIRTY); on a kernel without
//! it, it fails naming it. Leave it out with
//! `cargo nextest run -E 'not test(three_pre_dumps)'` (nextest counts it as skipped).

#[path = "workloads/src/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use harness::{bin, descendants, is_verdict, require_root, state, tracer, wait_until};

const AREA_MIB: u64 = 256;
const MIB: u64 = 1 << 20;

fn criu(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .arg("--no-default-config")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run criu")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The last 200 lines of a log file, for an assertion's message.
fn log_tail(path: &Path) -> String {
    let text = read(path);
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(200);
    format!(
        "--- {} (last lines) ---\n{}",
        path.display(),
        lines[from..].join("\n")
    )
}

/// Runs criu and asserts it succeeded, showing `log` (relative to `dir`) when it did not.
fn criu_ok(args: &[&str], dir: &Path, log: &str) {
    let out = criu(args, dir);
    assert_eq!(
        out.status.code(),
        Some(0),
        "criu {}: {out:?}\n{}",
        args.join(" "),
        log_tail(&dir.join(log))
    );
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

/// No process, not even a zombie, holds `pid` (the restore needs it free).
fn gone(pid: i32) -> bool {
    reap();
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
        .unwrap_or_else(|e| panic!("{sig} to {pid}: {e}"));
}

/// Asserts that `pid` runs: there, neither stopped nor a zombie, and traced by nobody.
fn assert_runs(pid: i32, when: &str) {
    let st = state(pid, pid);
    assert!(
        matches!(st, Some(c) if !matches!(c, 'T' | 't' | 'Z' | 'X')),
        "{when}: pid {pid} is in state {st:?}"
    );
    assert_eq!(tracer(pid, pid), 0, "{when}: pid {pid} is still traced");
}

/// Sum of the sizes of `dir`'s pages-*.img files.
fn pages_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("pages-") && name.ends_with(".img")
        })
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Panics naming a kernel feature this machine lacks, and how to leave the test out.
fn missing_feature(feature: &str, filter: &str) -> ! {
    panic!(
        "this machine lacks {feature}: the test cannot run here. To run the rest, leave it \
         out: cargo nextest run -E 'not test({filter})' (nextest counts it as skipped)"
    )
}

/// A started mp_writer tree: its results dir and the pid of each role. Dropping it kills every
/// pid it knows (also those of a restored tree: the pids are the same) and reaps them.
struct Tree {
    original: Child,
    results: PathBuf,
    roles: Vec<(String, i32)>,
}

impl Tree {
    fn start(dir: &Path, mib: u64) -> Tree {
        // Orphans (the restored root once criu is gone, children of a killed parent) come to
        // this test, which reaps them: a zombie keeps its pid taken.
        nix::sys::prctl::set_child_subreaper(true).unwrap();
        let results = dir.join("results");
        std::fs::create_dir(&results).unwrap();
        // mp_writer calls setsid itself: the root of the dumped tree leads its session.
        let original = Command::new(bin("mp_writer"))
            .arg(&results)
            .arg(mib.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut tree = Tree {
            original,
            results,
            roles: Vec::new(),
        };
        tree.wait_ready("parent");
        tree
    }

    fn root(&self) -> i32 {
        self.roles[0].1
    }

    /// Waits for RESULTS/<role> to say READY and records the role's pid.
    fn wait_ready(&mut self, role: &str) {
        let ready = wait_until(Duration::from_secs(60), || {
            read(&self.results.join(role)) == "READY\n"
        });
        assert!(ready, "mp_writer's {role} never got ready");
        let pid = read(&self.results.join(format!("{role}.pid")))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{role}.pid: {e}"));
        self.roles.push((role.to_string(), pid));
    }

    /// SIGUSR2 to the parent: a new mapping and a new child, `n`th of them.
    fn grow(&mut self, n: usize) {
        signal(self.root(), nix::sys::signal::Signal::SIGUSR2);
        let ack = self.results.join("parent.ack");
        let want = format!("MAPPED {n}\n");
        assert!(
            wait_until(Duration::from_secs(30), || read(&ack) == want),
            "mp_writer never acknowledged SIGUSR2 #{n}: {:?}",
            read(&ack)
        );
        self.wait_ready(&format!("child{n}"));
    }

    fn assert_all_run(&self, when: &str) {
        for (role, pid) in &self.roles {
            assert_runs(*pid, &format!("{when} ({role})"));
        }
    }

    /// SIGUSR1 to every role, then each one's verdict.
    fn verdicts(&self) -> Vec<(String, String)> {
        for (_, pid) in &self.roles {
            signal(*pid, nix::sys::signal::Signal::SIGUSR1);
        }
        let result = |role: &str| read(&self.results.join(format!("{role}.result")));
        wait_until(Duration::from_secs(60), || {
            self.roles.iter().all(|(role, _)| is_verdict(&result(role)))
        });
        self.roles
            .iter()
            .map(|(role, _)| (role.clone(), result(role)))
            .collect()
    }

    /// Waits until the tree the dump killed is gone to the last zombie.
    fn wait_gone(&mut self) {
        let _ = self.original.wait();
        assert!(
            wait_until(Duration::from_secs(10), || self
                .roles
                .iter()
                .all(|&(_, p)| gone(p))),
            "dumped tree still there: {:?}",
            self.roles
        );
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        for (_, pid) in self.roles.iter().rev() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.original.kill();
        let _ = self.original.wait();
        wait_until(Duration::from_secs(5), || {
            self.roles.iter().all(|&(_, p)| gone(p))
        });
    }
}

#[test]
fn three_pre_dumps_then_a_dump_restore_memory_exactly() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    if criu(&["check", "--feature", "mem_dirty_track"], d)
        .status
        .code()
        != Some(0)
    {
        missing_feature(
            "soft-dirty page tracking (CONFIG_MEM_SOFT_DIRTY), which pre-dump needs",
            "three_pre_dumps",
        );
    }
    for sub in ["img/1", "img/2", "img/3", "img/final"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    let mut tree = Tree::start(d, AREA_MIB);
    let pid = tree.root().to_string();

    for round in 1..=3usize {
        if round > 1 {
            // A new 8 MiB mapping and a new child since the round before.
            tree.grow(round - 1);
        }
        let images = format!("img/{round}");
        let prev = format!("../{}", round - 1);
        let mut args = vec!["pre-dump", "-t", &pid, "-D", &images];
        if round > 1 {
            args.extend(["--prev-images-dir", &prev]);
        }
        args.extend(["-o", "dump.log", "-v4"]);
        criu_ok(&args, d, &format!("{images}/dump.log"));
        tree.assert_all_run(&format!("after pre-dump {round}"));
        if round > 1 {
            assert_eq!(
                std::fs::read_link(d.join(&images).join("parent")).ok(),
                Some(PathBuf::from(&prev)),
                "pre-dump {round}'s parent link"
            );
        }
    }
    let before: Vec<i32> = {
        let mut v = descendants(tree.root());
        v.sort_unstable();
        v
    };
    assert_eq!(before.len(), 3, "parent and two children: {before:?}");

    criu_ok(
        &[
            "dump",
            "-t",
            &pid,
            "-D",
            "img/final",
            "--prev-images-dir",
            "../3",
            "--track-mem",
            "-o",
            "dump.log",
            "-v4",
        ],
        d,
        "img/final/dump.log",
    );
    tree.wait_gone();

    assert_eq!(
        std::fs::read_link(d.join("img/final/parent")).ok(),
        Some(PathBuf::from("../3")),
        "the final dump's parent link"
    );
    let first = pages_bytes(&d.join("img/1"));
    let last = pages_bytes(&d.join("img/final"));
    eprintln!(
        "pages written: round 1 {} KiB, round 2 {} KiB, round 3 {} KiB, final dump {} KiB",
        first / 1024,
        pages_bytes(&d.join("img/2")) / 1024,
        pages_bytes(&d.join("img/3")) / 1024,
        last / 1024
    );
    assert!(
        first >= AREA_MIB * MIB,
        "the first pre-dump wrote {first} bytes of pages, less than the {AREA_MIB} MiB area"
    );
    assert!(
        last < 64 * MIB,
        "the final dump wrote {last} bytes of pages: it should hold only what changed since \
         pre-dump 3"
    );

    criu_ok(
        &[
            "restore",
            "-D",
            "img/final",
            "-d",
            "-o",
            "restore.log",
            "-v4",
        ],
        d,
        "img/final/restore.log",
    );
    let after: Vec<i32> = {
        let mut v = descendants(tree.root());
        v.sort_unstable();
        v
    };
    assert_eq!(after, before, "pids after restore");
    tree.assert_all_run("after restore");
    let verdicts = tree.verdicts();
    let bad: Vec<_> = verdicts.iter().filter(|(_, v)| v != "PASS\n").collect();
    assert!(
        bad.is_empty(),
        "memory after restore: {bad:?}\n{}",
        log_tail(&d.join("img/final/restore.log"))
    );
}

#[test]
fn a_pre_dump_with_a_missing_parent_fails_and_the_tree_runs_on() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("img/1")).unwrap();
    let tree = Tree::start(d, 64);
    let pid = tree.root().to_string();

    let out = criu(
        &[
            "pre-dump",
            "-t",
            &pid,
            "-D",
            "img/1",
            "--prev-images-dir",
            "../nope",
            "-o",
            "dump.log",
            "-v4",
        ],
        d,
    );
    let log = read(&d.join("img/1/dump.log"));
    // CRIU checks the parent directory when it opens the images directory, before it looks at
    // the tree: "Invalid parent image directory provided: No such file or directory", exit 1.
    assert_ne!(
        out.status.code(),
        Some(0),
        "a pre-dump whose parent directory is missing succeeded: {out:?}\n{log}"
    );
    let said = format!("{}{log}", String::from_utf8_lossy(&out.stderr)).to_lowercase();
    assert!(
        said.contains("parent image") || said.contains("nope"),
        "the failure does not name the missing parent directory: {out:?}\n{log}"
    );
    assert!(
        std::fs::symlink_metadata(d.join("img/1/parent")).is_err(),
        "a parent link to a directory that does not exist"
    );
    assert_eq!(pages_bytes(&d.join("img/1")), 0, "pages written anyway");

    tree.assert_all_run("after the failed pre-dump");
    let verdicts = tree.verdicts();
    assert_eq!(
        verdicts,
        vec![("parent".to_string(), "PASS\n".to_string())],
        "memory after the failed pre-dump"
    );
}
