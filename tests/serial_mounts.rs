//! A mount namespace built with Debian tools (a bind-mounted root with /usr external, a tmpfs
//! with files, a shared peer and a slave of it, a directory bind, a read-only bind, a file
//! bind, an unbindable bind, proc, sysfs, devpts, mqueue) is dumped with `criu_mounts::dump` and rebuilt by `criu __mount-helper` in a
//! fresh `unshare --mount` process; the two mountinfo tables are compared field by field
//! (ids left out), and so are the tmpfs content, the read-only mount and propagation.

use criu_mounts::MountOptions;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills and reaps its process on every path (its mount namespace goes with it).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_comm(p: &mut Proc, comm: &str) {
    let pid = p.0.id();
    let start = Instant::now();
    loop {
        if let Ok(Some(st)) = p.0.try_wait() {
            panic!("pid {pid} exited early: {st}");
        }
        if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "pid {pid} never became {comm}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One mountinfo row without ids: mount point, root, options, fs type, source, superblock
/// options, propagation with group numbers renamed in order of appearance.
fn rows(pid: u32) -> Vec<String> {
    let infos = criu_procfs::read_mountinfo(pid as i32).unwrap();
    let mut names: HashMap<u32, usize> = HashMap::new();
    let mut name = |id: u32| {
        let n = names.len();
        *names.entry(id).or_insert(n)
    };
    let mut out: Vec<String> = infos
        .iter()
        .map(|m| {
            let mut prop = Vec::new();
            if let Some(s) = m.shared {
                prop.push(format!("shared:G{}", name(s)));
            }
            if let Some(s) = m.master {
                prop.push(format!("master:G{}", name(s)));
            }
            if m.unbindable {
                prop.push("unbindable".into());
            }
            let parent = infos
                .iter()
                .find(|p| p.mnt_id == m.parent_id)
                .map(|p| p.mount_point.display().to_string())
                .unwrap_or_else(|| "-".into());
            format!(
                "{} (under {parent}) root={} {} [{}] {} {} {}",
                m.mount_point.display(),
                m.root.display(),
                m.mount_options,
                prop.join(" "),
                m.fstype,
                m.source,
                m.super_options
            )
        })
        .collect();
    out.sort();
    out
}

fn criu() -> &'static str {
    env!("CARGO_BIN_EXE_criu")
}

#[test]
fn mount_tree_dumped_and_restored() {
    let base = tempfile::Builder::new()
        .prefix("criu-mnt-")
        .tempdir_in("/tmp")
        .unwrap();
    let root = base.path().join("root");
    let imgs = base.path().join("images");
    std::fs::create_dir_all(&imgs).unwrap();
    for d in [
        "usr",
        "proc",
        "old",
        "data",
        "mnt/tmp",
        "mnt/bind",
        "mnt/ro",
        "mnt/unb",
        "sys",
        "dev/pts",
        "dev/mqueue",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for l in ["bin", "lib", "lib64", "sbin"] {
        std::os::unix::fs::symlink(format!("usr/{l}"), root.join(l)).unwrap();
    }
    std::fs::write(root.join("data/hello"), "hello\n").unwrap();
    std::fs::write(root.join("file_src"), "a file\n").unwrap();
    std::fs::write(root.join("mnt/file"), "").unwrap();

    let script = format!(
        "set -e; R={r}; mount --bind $R $R; cd $R; mount --bind -o ro /usr usr; \
         mount -t tmpfs -o size=4m,mode=755 tst mnt/tmp; echo tmpfs-content > mnt/tmp/f; \
         mkdir mnt/tmp/sub mnt/tmp/hidden mnt/peer mnt/slave; echo under > mnt/tmp/hidden/x; \
         mount -t tmpfs cover mnt/tmp/hidden; \
         mount --make-shared mnt/tmp; mount --bind mnt/tmp mnt/peer; mount --bind mnt/tmp/sub mnt/slave; \
         mount --make-slave mnt/slave; \
         mount --bind data mnt/bind; mount --bind data mnt/ro; mount -o remount,bind,ro,nosuid mnt/ro; \
         mount --bind file_src mnt/file; mount --bind data mnt/unb; mount --make-unbindable mnt/unb; \
         mount -t sysfs -o ro sysfs sys; mount -t devpts -o newinstance,ptmxmode=666,mode=620 pts dev/pts; \
         mount -t mqueue -o nodev mq dev/mqueue; \
         pivot_root . old; mount -t proc -o nosuid,nodev,noexec proc /proc; umount -l /old; \
         exec sleep 60",
        r = root.display()
    );
    let mut src = Proc(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_comm(&mut src, "sleep");
    let dumped = rows(src.0.id());

    // The dump clones tmpfs mounts through criu's helper, as criu itself would.
    std::env::set_var("CRIU_MOUNT_HELPER_EXE", criu());
    let dump_opts = MountOptions {
        external: vec![("/usr".into(), "USR".into())],
        ..Default::default()
    };
    criu_mounts::check(src.0.id() as i32, &MountOptions::default())
        .expect_err("/usr cannot be restored unless it is external");
    criu_mounts::check(src.0.id() as i32, &dump_opts).unwrap();
    criu_mounts::dump(src.0.id() as i32, 7, &imgs, &dump_opts).unwrap();
    let tars: Vec<PathBuf> = std::fs::read_dir(&imgs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("tmpfs-dev-"))
        .collect();
    assert_eq!(tars.len(), 2, "one tar image per tmpfs: {tars:?}");
    assert!(imgs.join("mountpoints-7.img").exists());
    drop(src);

    let mut dst = Proc(
        Command::new("unshare")
            .args(["--mount", "sleep", "60"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_comm(&mut dst, "sleep");
    let pid = dst.0.id();
    let out = Command::new(criu())
        .args(["__mount-helper", "restore"])
        .arg(&imgs)
        .args(["7", &pid.to_string(), "--root"])
        .arg(&root)
        .args(["--external", "USR:/usr"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helper failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rows(pid), dumped, "mountinfo after restore differs");

    let in_ns = |p: &str| Path::new(&format!("/proc/{pid}/root")).join(p);
    assert_eq!(
        std::fs::read_to_string(in_ns("mnt/tmp/f")).unwrap(),
        "tmpfs-content\n"
    );
    assert_eq!(
        std::fs::read_to_string(in_ns("mnt/peer/f")).unwrap(),
        "tmpfs-content\n"
    );
    assert_eq!(
        std::fs::read_to_string(in_ns("mnt/ro/hello")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(in_ns("mnt/file")).unwrap(),
        "a file\n"
    );
    let err = std::fs::write(in_ns("mnt/ro/new"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    // What was under the mount on mnt/tmp/hidden came back too.
    let hidden = Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-m",
            "sh",
            "-c",
            "mount --bind /mnt/tmp /mnt/bind && cat /mnt/bind/hidden/x",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&hidden.stdout),
        "under\n",
        "{}",
        String::from_utf8_lossy(&hidden.stderr)
    );
    // Propagation: a mount under the shared tmpfs shows in its peer and in the slave.
    let st = Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-m",
            "mount",
            "-t",
            "tmpfs",
            "late",
            "/mnt/tmp/sub",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let mi = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    for mp in ["/mnt/tmp/sub ", "/mnt/peer/sub ", "/mnt/slave "] {
        assert!(
            mi.lines()
                .any(|l| l.contains(mp) && l.contains(" - tmpfs late ")),
            "the late mount did not propagate to {mp}:\n{mi}"
        );
    }
    // Nothing of criu's tree is left in the restored namespace, nor the yard in /tmp.
    assert!(!mi.contains(" /old"), "{mi}");
    let yards: Vec<_> = std::fs::read_dir("/tmp")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".criu-mnt."))
        .collect();
    assert!(yards.is_empty(), "yard left behind: {yards:?}");
}

/// A tree in a mount namespace whose mounts are slaves of criu's (`unshare --propagation
/// slave`), dumped with `--external mnt[]:m` (every such mount external, its master allowed)
/// and restored with `--ext-mount-map auto`: each comes back a slave of criu's mount it was
/// bound from, so a mount made in criu's namespace under a shared one appears in the
/// restored tree.
#[test]
fn external_slaves_come_back_slaves_of_criu_s_mounts() {
    let base = tempfile::Builder::new()
        .prefix("criu-extm-")
        .tempdir_in("/tmp")
        .unwrap();
    let b = base.path();
    let (src, sub) = (b.join("src"), b.join("src/sub"));
    std::fs::create_dir_all(b.join("img")).unwrap();
    std::fs::create_dir_all(&src).unwrap();
    let sh = |script: &str| {
        let ok = Command::new("sh").args(["-c", script]).status().unwrap();
        assert!(ok.success(), "{script}");
    };
    sh(&format!(
        "mount -t tmpfs extsrc {0} && mount --make-shared {0} && mkdir {0}/sub",
        src.display()
    ));
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-R").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(src.clone());
    let mut p = Proc(
        Command::new("setsid")
            .args([
                "unshare",
                "--mount",
                "--propagation",
                "slave",
                "sleep",
                "1000",
            ])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_comm(&mut p, "sleep");
    let pid = p.0.id();
    let master_of = |pid: u32, at: &Path| {
        criu_procfs::read_mountinfo(pid as i32)
            .unwrap()
            .into_iter()
            .find(|m| m.mount_point == at)
            .and_then(|m| m.master)
    };
    assert!(
        master_of(pid, &src).is_some(),
        "not a slave before the dump"
    );
    let run = |args: &[&str]| {
        let out = Command::new(criu())
            .args(args)
            .current_dir(b)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    let pid_s = pid.to_string();
    run(&[
        "dump",
        "-t",
        &pid_s,
        "-D",
        "img",
        "-o",
        "d.log",
        "--external",
        "mnt[]:m",
    ]);
    let _ = p.0.wait();
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    run(&[
        "restore",
        "-D",
        "img",
        "-o",
        "r.log",
        "-d",
        "--ext-mount-map",
        "auto",
        "--root",
        "/",
    ]);
    struct Kill(i32);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let _restored = Kill(pid as i32);
    assert!(
        master_of(pid, &src).is_some(),
        "came back without its master"
    );
    sh(&format!("mount -t tmpfs late {}", sub.display()));
    let start = Instant::now();
    while master_of(pid, &sub).is_none() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        master_of(pid, &sub).is_some(),
        "a mount under criu's shared mount did not reach the restored slave"
    );
}
