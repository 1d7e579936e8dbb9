//! A container made only with Debian tools: an overlayfs root built from busybox-static,
//! entered with `unshare --mount --pid --fork` and `pivot_root`, with its own `/proc`, a
//! tmpfs `/dev` holding a device node, a data directory bind-mounted from the host and a
//! second overlay of its own (mounted anew at restore from its layers' paths). It is
//! dumped with `--external mnt[]` (the data bind is found in criu's own mounts) and restored
//! with `--root` on the same overlay and `--ext-mount-map auto`; it keeps running, keeps its
//! pid 1 and sees the same mounts. Needs root; runs in the nextest `serial` group; CI installs
//! busybox-static.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::{descendants, in_session, kill_tree, read_trimmed as read, require_root, wait_until};

/// What runs in the container: set up the mounts, pivot into the overlay, then a shell that
/// counts into the data directory with its pid as it sees it.
const INNER: &str = "set -e
mount --make-rprivate /
cd ROOT/merged
mount --bind ROOT/data data
mount -t overlay overlay -o lowerdir=ROOT/l2,upperdir=ROOT/u2,workdir=ROOT/w2 ovl
pivot_root . old
cd /
mount -t proc proc /proc
mount -t tmpfs -o mode=755 tmpfs /dev
mknod /dev/null c 1 3
umount -l /old
exec setsid /bin/sh -c 'exec 10>&-; i=0; while :; do i=$((i+1)); \
echo \"$i $(cat /data/greeting) $$ $(cat /ovl/inner)\" > /data/count.new; \
mv /data/count.new /data/count; echo $i > /ovl/written; \
sleep 0.05; done' </dev/null >/dev/null 2>&1 10>&-
";

/// The overlay and the container; unmounted and killed when dropped.
struct Container {
    dir: PathBuf,
    unshare: Option<Child>,
    root: i32,
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.root > 0 {
            kill_tree(self.root);
        }
        if let Some(mut u) = self.unshare.take() {
            let _ = u.kill();
            let _ = u.wait();
        }
        let merged = self.dir.join("merged");
        let _ = Command::new("umount").arg("-l").arg(&merged).status();
    }
}

fn busybox() -> PathBuf {
    ["/usr/bin/busybox", "/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("busybox-static is not installed (.ci/run installs it)")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Container {
    fn start(dir: &Path) -> Container {
        let lower = dir.join("lower");
        for d in ["bin", "proc", "dev", "data", "old", "ovl"] {
            std::fs::create_dir_all(lower.join(d)).unwrap();
        }
        for d in ["upper", "work", "merged", "data", "l2", "u2", "w2"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("l2/inner"), "inner\n").unwrap();
        std::fs::copy(busybox(), lower.join("bin/busybox")).unwrap();
        let applets = [
            "sh", "sleep", "cat", "mv", "mount", "umount", "mknod", "setsid",
        ];
        for applet in applets {
            std::os::unix::fs::symlink("busybox", lower.join("bin").join(applet)).unwrap();
        }
        std::fs::write(dir.join("data/greeting"), "hello\n").unwrap();
        let layers = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            dir.join("upper").display(),
            dir.join("work").display()
        );
        let mut c = Container {
            dir: dir.to_path_buf(),
            unshare: None,
            root: 0,
        };
        run(Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &layers])
            .arg(dir.join("merged")));
        let script = INNER.replace("ROOT", dir.to_str().unwrap());
        std::fs::write(dir.join("inner.sh"), script).unwrap();
        let unshare = Command::new("unshare")
            .args(["--mount", "--pid", "--fork", "sh"])
            .arg(dir.join("inner.sh"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let launcher = unshare.id() as i32;
        c.unshare = Some(unshare);
        let counting = wait_until(Duration::from_secs(10), || {
            !read(&dir.join("data/count")).is_empty()
        });
        assert!(counting, "the container never counted");
        c.root = descendants(launcher)
            .get(1)
            .copied()
            .expect("unshare's child");
        c
    }

    fn count(&self) -> Vec<String> {
        read(&self.dir.join("data/count"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// Mount points and filesystem types, as the container sees them.
    fn mounts(&self) -> Vec<(String, String)> {
        read(Path::new(&format!("/proc/{}/mountinfo", self.root)))
            .lines()
            .filter_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                let mp = left.split_whitespace().nth(4)?.to_string();
                Some((mp, right.split_whitespace().next()?.to_string()))
            })
            .collect()
    }
}

#[test]
fn an_overlay_container_made_with_unshare_and_pivot_root_comes_back() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = Container::start(dir);
    let before = (c.mounts(), c.count());
    assert_eq!(
        before.1.get(2).map(String::as_str),
        Some("1"),
        "the shell is not pid 1: {before:?}"
    );
    state_task::dump_tree(dir, c.root, &["--external", "mnt[]"]);
    if let Some(mut u) = c.unshare.take() {
        let _ = u.wait();
    }
    let gone = wait_until(Duration::from_secs(30), || in_session(c.root).is_empty());
    assert!(gone, "the dumped container lingers");
    let merged = dir.join("merged").display().to_string();
    let auto = ["--root", &merged, "--ext-mount-map", "auto"];
    c.root = state_task::restore_tree(dir, &auto);
    assert_eq!(c.mounts(), before.0, "the container's mounts");
    let count = |v: &[String]| v.first().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    let start = count(&c.count());
    let went_on = wait_until(Duration::from_secs(10), || count(&c.count()) > start + 3);
    let after = c.count();
    assert!(
        went_on,
        "the container stopped counting at {start}: {after:?}"
    );
    assert_eq!(after[1..], ["hello", "1", "inner"], "{after:?}");
    // The inner overlay writes to its upper layer on the host.
    let written = || read(&dir.join("u2/written")).parse::<u64>().unwrap_or(0);
    let now = written();
    let writes = wait_until(Duration::from_secs(10), || written() > now);
    assert!(writes, "the inner overlay is not written");
    let null = std::fs::metadata(format!("/proc/{}/root/dev/null", c.root)).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(null.file_type().is_char_device() && null.rdev() == libc::makedev(1, 3));
}
