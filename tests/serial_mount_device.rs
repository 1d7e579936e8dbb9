//! A filesystem on a block device, mounted in a tree's own mount namespace: dumped with
//! `--external dev[MAJOR/MINOR]:KEY` and restored with `--external dev[KEY]:DEVICE`, it is
//! mounted again from the device, and the task reads its file through the fd it kept. The
//! device is an ext4 image on a loop device (`losetup`, `mkfs.ext4`). Needs root; runs in the
//! nextest `serial` group.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::{in_session, read_trimmed as read, require_root, wait_until, KillOnDrop};

/// A loop device over an image file, detached when dropped.
struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_block_device_mount_comes_back_from_its_device() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let image = d.join("disk.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
    let dev = Loop(run(Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&image)));
    let rdev = std::fs::metadata(&dev.0).unwrap().rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let mnt = d.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // Mounts the device in a namespace of its own, writes a file there and keeps it open on
    // fd 3, then reads it again through that fd each round.
    let script = format!(
        "mount {dev} {mnt} && echo on-disk > {mnt}/file && exec 3<{mnt}/file && \
         while :; do cat <&3 > {out}.new; mv {out}.new {out}; exec 3<&-; exec 3<{mnt}/file; \
         sleep 0.05; done",
        dev = dev.0,
        mnt = mnt.display(),
        out = d.join("seen").display()
    );
    let child = Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "setsid",
            "sh",
            "-c",
            &script,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut task = KillOnDrop { child, pid };
    assert!(wait_until(Duration::from_secs(10), || read(
        &d.join("seen")
    ) == "on-disk"));
    let dev_key = format!("dev[{major}/{minor}]:disk");
    state_task::dump_tree(d, pid, &["--external", &dev_key]);
    let _ = task.child.wait();
    assert!(wait_until(Duration::from_secs(30), || in_session(pid).is_empty()));
    std::fs::remove_file(d.join("seen")).unwrap();
    let device = format!("dev[disk]:{}", dev.0);
    state_task::restore_tree(d, &["--root", "/", "--external", &device]);
    assert!(
        wait_until(Duration::from_secs(10), || read(&d.join("seen"))
            == "on-disk"),
        "the restored task does not read its file on the device"
    );
    let mounts = read(Path::new(&format!("/proc/{pid}/mountinfo")));
    let line = mounts
        .lines()
        .find(|l| l.contains(&format!(" {} ", mnt.display())));
    let line = line.unwrap_or_else(|| panic!("{} is not mounted:\n{mounts}", mnt.display()));
    assert!(
        line.contains(&format!(" {major}:{minor} ")) && line.contains(" - ext4 "),
        "{line}"
    );
}
