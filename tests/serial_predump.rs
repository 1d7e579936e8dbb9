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
//! The pre-dump tests need memory tracking between dumps (soft-dirty, or userfaultfd
//! write-protection with PAGEMAP_SCAN); on a kernel without either, they fail naming it and
//! the filter that leaves them out (`cargo nextest run -E 'not test(three_pre_dumps)'`).

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/mp_tree.rs"]
mod mp_tree;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::path::PathBuf;

use harness::require_root;
use mp_tree::{
    criu, criu_ok, pages_allocated, pages_bytes, read, restore_and_check, restore_and_check_with,
    Tree, MIB,
};

const AREA_MIB: u64 = 256;

/// Panics naming a kernel feature this machine lacks, and how to leave the test out.
fn missing_feature(feature: &str, filter: &str) -> ! {
    panic!(
        "this machine lacks {feature}: the test cannot run here. To run the rest, leave it \
         out: cargo nextest run -E 'not test({filter})' (nextest counts it as skipped)"
    )
}

/// Panics naming the missing feature unless criu can track memory between dumps here
/// (soft-dirty, or userfaultfd write-protection with PAGEMAP_SCAN).
fn require_memory_tracking(d: &std::path::Path, filter: &str) {
    if criu(&["check", "--feature", "mem_dirty_track"], d)
        .status
        .code()
        != Some(0)
    {
        missing_feature(
            "memory tracking between dumps, which pre-dump needs",
            filter,
        );
    }
}

#[test]
fn three_pre_dumps_then_a_dump_restore_memory_exactly() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    require_memory_tracking(d, "three_pre_dumps");
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
        criu_ok(&args, d, &[&format!("{images}/dump.log")]);
        tree.assert_all_run(&format!("after pre-dump {round}"));
        if round > 1 {
            assert_eq!(
                std::fs::read_link(d.join(&images).join("parent")).ok(),
                Some(PathBuf::from(&prev)),
                "pre-dump {round}'s parent link"
            );
        }
    }
    let before = tree.pids();
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
        &["img/final/dump.log"],
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

    restore_and_check(d, "img/final", &tree, &before);
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

/// A pre-dump that fails after it made its trackers (`CRIU_FAULT=2`, once every task is
/// collected) takes them back: no userfaultfd is left in the task, which runs on with its
/// memory.
#[test]
fn a_failed_pre_dump_leaves_no_tracker_behind() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("img/1")).unwrap();
    let tree = Tree::start(d, 64);
    let pid = tree.root();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_criu"))
        .args(["--no-default-config", "pre-dump", "-t", &pid.to_string()])
        .args(["-D", "img/1", "-o", "dump.log", "-v4"])
        .env("CRIU_FAULT", "2")
        .current_dir(d)
        .output()
        .unwrap();
    let log = read(&d.join("img/1/dump.log"));
    assert_ne!(
        out.status.code(),
        Some(0),
        "the pre-dump did not fail: {log}"
    );
    assert!(
        log.contains("memory tracker at fd"),
        "no tracker was made before the fault point: {log}"
    );
    let trackers: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|l| l.display().to_string())
        .filter(|l| l.contains("userfaultfd"))
        .collect();
    assert!(
        trackers.is_empty(),
        "left in pid {pid}: {trackers:?}\n{log}"
    );
    tree.assert_all_run("after the failed pre-dump");
    assert_eq!(
        tree.verdicts(),
        vec![("parent".to_string(), "PASS\n".to_string())],
        "memory after the failed pre-dump"
    );
}

/// A final dump with `--auto-dedup` after a pre-dump: the pages it holds go out of the
/// pre-dump's images (which take less disk; `criu dedup` afterwards finds nothing more), and the
/// chain still restores every page exactly; a restore with `--auto-dedup` then punches the
/// pages it read out of the images too.
#[test]
fn dedup_frees_superseded_pages_and_the_chain_still_restores() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    require_memory_tracking(d, "dedup_frees");
    for sub in ["img/1", "img/final"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    let mut tree = Tree::start(d, 64);
    let pid = tree.root().to_string();
    criu_ok(
        &[
            "pre-dump", "-t", &pid, "-D", "img/1", "-o", "dump.log", "-v4",
        ],
        d,
        &["img/1/dump.log"],
    );
    let before = tree.pids();
    let parent_before = pages_allocated(&d.join("img/1"));
    let final_args = [
        "dump",
        "-t",
        &pid,
        "-D",
        "img/final",
        "--prev-images-dir",
        "../1",
        "--track-mem",
        "--auto-dedup",
        "-o",
        "dump.log",
        "-v4",
    ];
    criu_ok(&final_args, d, &["img/final/dump.log"]);
    tree.wait_gone();
    let parent_after = pages_allocated(&d.join("img/1"));
    let written = pages_bytes(&d.join("img/final"));
    eprintln!("pre-dump pages: {parent_before} bytes allocated, {parent_after} after the final dump with --auto-dedup, which wrote {written}");
    assert!(
        parent_after < parent_before && parent_before - parent_after <= written,
        "--auto-dedup freed {parent_before} -> {parent_after} bytes of the pre-dump's pages; the final dump holds {written}"
    );
    // Again by hand: nothing more to free, and it says what it did.
    criu_ok(
        &["dedup", "-D", "img/final", "-o", "dedup.log", "-v4"],
        d,
        &["img/final/dedup.log"],
    );
    assert_eq!(pages_allocated(&d.join("img/1")), parent_after);
    assert!(read(&d.join("img/final/dedup.log")).contains("Deduplicated: 1 pagemap(s)"));
    restore_and_check_with(d, "img/final", &tree, &before, &["--auto-dedup"]);
    let left = pages_allocated(&d.join("img/final")) + pages_allocated(&d.join("img/1"));
    assert!(
        left < parent_after,
        "a restore with --auto-dedup left {left} bytes of pages"
    );
}
