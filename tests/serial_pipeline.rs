//! A real shell pipeline of Debian programs, dumped while its pipes are full and restored
//! detached: it must finish with the right answer, so every byte held in the pipes came back
//! in order. Runs in the nextest `serial` group: restores claim exact pids.

#[path = "workloads/src/harness.rs"]
mod harness;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::{descendants, require_root, wait_in_syscall, wait_until};

fn criu(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_criu"))
        .arg("--no-default-config")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run criu")
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Kills whatever is left of the tree when the test ends, passed or not.
struct Tree(i32);

impl Drop for Tree {
    fn drop(&mut self) {
        harness::kill_tree(self.0);
    }
}

#[test]
fn a_pipeline_held_mid_stream_finishes_after_restore() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let out = std::fs::File::create(&out_path).unwrap();
    // setsid makes the shell a session leader of its own (no terminal to bring back); called
    // by a process that is not a group leader, it execs in place, so the pid is the shell's.
    let mut child = Command::new("setsid")
        .args(["sh", "-c", "seq 1 1000000 | (sleep 2; cat) | wc -l"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("start the pipeline");
    let root = child.id() as i32;
    let _tree = Tree(root);
    // Mid-stream: seq blocked writing into a full pipe while sleep holds the reader back.
    let mut seq = None;
    let ready = wait_until(Duration::from_secs(10), || {
        let tree = descendants(root);
        seq = tree.iter().copied().find(|&p| comm(p) == "seq");
        comm(root) == "sh" && seq.is_some() && tree.iter().any(|&p| comm(p) == "sleep")
    });
    assert!(ready, "pipeline never started: {:?}", descendants(root));
    let seq = seq.unwrap();
    wait_in_syscall(seq, seq, libc::SYS_write);
    let tree = descendants(root);
    assert!(tree.len() >= 4, "pipeline tree {tree:?}");

    std::fs::create_dir(dir.path().join("images")).unwrap();
    let pid = root.to_string();
    let dumped = criu(
        &["dump", "-t", &pid, "-D", "images", "-o", "dump.log", "-v4"],
        dir.path(),
    );
    let log = |name: &str| {
        std::fs::read_to_string(dir.path().join("images").join(name)).unwrap_or_default()
    };
    assert_eq!(
        dumped.status.code(),
        Some(0),
        "dump failed: {dumped:?}\n{}",
        log("dump.log")
    );
    let _ = child.wait();
    let gone = wait_until(Duration::from_secs(10), || {
        tree.iter()
            .all(|p| !Path::new(&format!("/proc/{p}")).exists())
    });
    assert!(gone, "the dumped tree {tree:?} is still there");
    // The pipe seq was writing into was full when dumped.
    let held = std::fs::metadata(dir.path().join("images/pipes-data.img"))
        .unwrap()
        .len();
    assert!(held >= 65536, "pipes-data.img holds only {held} bytes");
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), "");

    let restored = criu(
        &["restore", "-D", "images", "-o", "restore.log", "-v4", "-d"],
        dir.path(),
    );
    assert_eq!(
        restored.status.code(),
        Some(0),
        "restore failed: {restored:?}\n{}",
        log("restore.log")
    );
    let finished = wait_until(Duration::from_secs(30), || {
        !Path::new(&format!("/proc/{root}")).exists()
    });
    assert!(finished, "the restored pipeline did not finish");
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), "1000000\n");
}
