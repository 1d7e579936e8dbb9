//! Files of a tree with its own mount namespace and root (a bind-mounted temp dir it
//! pivot_roots into, /usr external): the workload (tests/workloads/src/bin/mn_files.rs) holds a
//! regular file, an unlinked file, a fifo and a unix socket bound to a path, all named from its
//! own root. criu dumps it (`--external mnt[/usr]:USR`) and restores it (`--root`), reaching
//! those names through the tree's root, and the workload checks them from inside. Needs root;
//! runs in the nextest `serial` group.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::{bin, require_root, wait_until, LONG};
use state_task::criu;

fn nspid_is_one(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|v| v.split_whitespace().last().map(|p| p == "1"))
        .unwrap_or(false)
}

fn first_child(pid: i32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Kills a tree's init (its pid namespace goes with it).
struct Init(i32);

impl Drop for Init {
    fn drop(&mut self) {
        if self.0 > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn result(root: &Path) -> String {
    std::fs::read_to_string(root.join("result")).unwrap_or_default()
}

#[test]
fn files_named_from_the_trees_own_root_come_back() {
    require_root();
    let base = tempfile::Builder::new()
        .prefix("criu-fmnt-")
        .tempdir_in("/tmp")
        .unwrap();
    let root = base.path().join("root");
    let images = base.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    for d in ["usr", "proc", "old", "data"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for l in ["bin", "lib", "lib64", "sbin"] {
        std::os::unix::fs::symlink(format!("usr/{l}"), root.join(l)).unwrap();
    }
    std::fs::copy(bin("mn_files"), root.join("mn_files")).unwrap();
    // Its stdio too is a file of its own root (criu's /dev/null is not in it).
    std::fs::write(root.join("empty"), "").unwrap();
    let script = format!(
        "set -e; R={r}; mount --bind $R $R; cd $R; mount --bind -o ro /usr usr; \
         pivot_root . old; mount -t proc -o nosuid,nodev,noexec proc /proc; umount -l /old; \
         exec setsid /mn_files /data </empty >/log 2>&1",
        r = root.display()
    );
    let mut unshare = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut init = Init(0);
    let ready = wait_until(LONG, || result(&root) == "READY");
    assert!(ready, "mn_files never got ready: {:?}", result(&root));
    let creator = unshare.id() as i32;
    let found = wait_until(Duration::from_secs(5), || {
        match first_child(creator).filter(|&c| nspid_is_one(c)) {
            Some(c) => {
                init.0 = c;
                true
            }
            None => false,
        }
    });
    assert!(found, "no init below unshare");

    let pid = init.0.to_string();
    let out = criu(
        &[
            "dump",
            "-t",
            &pid,
            "-D",
            "images",
            "-o",
            "dump.log",
            "-v4",
            "--external",
            "mnt[/usr]:USR",
        ],
        base.path(),
    );
    let log = |name: &str| std::fs::read_to_string(images.join(name)).unwrap_or_default();
    assert!(out.status.success(), "dump failed: {}", log("dump.log"));
    let _ = unshare.wait();
    init.0 = 0;
    // The ghost travels in the images; its name is gone from the tree.
    assert!(!root.join("data/ghost").exists());

    let root_arg = root.display().to_string();
    let out = criu(
        &[
            "restore",
            "-D",
            "images",
            "-o",
            "restore.log",
            "-v4",
            "-d",
            "--pidfile",
            "pid",
            "--root",
            &root_arg,
            "--external",
            "mnt[USR]:/usr",
        ],
        base.path(),
    );
    assert!(
        out.status.success(),
        "restore failed: {}",
        log("restore.log")
    );
    init.0 = log("pid").trim().parse().unwrap();
    // Nothing was made in criu's own root under the tree's names.
    assert!(!Path::new("/data/sock").exists() && !Path::new("/data/fifo").exists());
    std::fs::write(root.join("go"), "").unwrap();
    let done = wait_until(LONG, || result(&root) != "READY");
    assert!(done, "mn_files gave no verdict after restore");
    assert_eq!(result(&root), "PASS");
}
