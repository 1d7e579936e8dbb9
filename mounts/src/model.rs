//! From `/proc/PID/mountinfo` rows to CRIU's `MntEntry`, field by field as CRIU fills them.
//!
//! - `root_dev` is the superblock's device in the kernel's encoding (`major << 20 | minor`).
//! - `flags` holds the per-mount flags (`MS_RDONLY`, `MS_NOSUID`, `MS_NODEV`, `MS_NOEXEC`,
//!   the atime ones; `MS_STRICTATIME` when neither `relatime` nor `noatime` is shown) and the
//!   propagation (`MS_SHARED`, `MS_SLAVE`, `MS_UNBINDABLE`).
//! - `sb_flags` the superblock's `ro`, `sync`, `dirsync`, `mand`; `options` the other
//!   superblock options, comma separated, as the kernel shows them.
//! - `mountpoint` is the path in the namespace ("/" for its root), `root` the path inside the
//!   filesystem.
//! - The image lists mounts in the reverse of mountinfo's order (CRIU builds its list by
//!   prepending each row).

use criu_procfs::MountInfo;
use criu_proto::images::{Fstype, MntEntry};
use std::path::{Component, Path, PathBuf};

pub const MS_RDONLY: u32 = 1;
pub const MS_NOSUID: u32 = 2;
pub const MS_NODEV: u32 = 4;
pub const MS_NOEXEC: u32 = 8;
pub const MS_SYNCHRONOUS: u32 = 16;
pub const MS_MANDLOCK: u32 = 64;
pub const MS_DIRSYNC: u32 = 128;
pub const MS_NOATIME: u32 = 1024;
pub const MS_NODIRATIME: u32 = 2048;
pub const MS_UNBINDABLE: u32 = 1 << 17;
pub const MS_PRIVATE: u32 = 1 << 18;
pub const MS_SLAVE: u32 = 1 << 19;
pub const MS_SHARED: u32 = 1 << 20;
pub const MS_RELATIME: u32 = 1 << 21;
pub const MS_STRICTATIME: u32 = 1 << 24;

/// The kernel's device encoding CRIU stores (`MKKDEV`).
pub fn kdev(major: u32, minor: u32) -> u32 {
    (major << 20) | (minor & 0xf_ffff)
}

pub fn kdev_major(dev: u32) -> u32 {
    dev >> 20
}

pub fn kdev_minor(dev: u32) -> u32 {
    dev & 0xf_ffff
}

/// CRIU's fstype code for a filesystem name (a subtype after '.' is ignored).
pub fn fstype_code(name: &str) -> Fstype {
    let base = name.split('.').next().unwrap_or(name);
    match base {
        "proc" => Fstype::Proc,
        "sysfs" => Fstype::Sysfs,
        "devtmpfs" => Fstype::Devtmpfs,
        "binfmt_misc" => Fstype::BinfmtMisc,
        "tmpfs" => Fstype::Tmpfs,
        "devpts" => Fstype::Devpts,
        "simfs" => Fstype::Simfs,
        "pstore" => Fstype::Pstore,
        "securityfs" => Fstype::Securityfs,
        "fusectl" => Fstype::Fusectl,
        "debugfs" => Fstype::Debugfs,
        "tracefs" => Fstype::Tracefs,
        "cgroup" => Fstype::Cgroup,
        "cgroup2" => Fstype::Cgroup2,
        "aufs" => Fstype::Aufs,
        "fuse" => Fstype::Fuse,
        "overlay" => Fstype::Overlayfs,
        "mqueue" => Fstype::Mqueue,
        "autofs" => Fstype::Autofs,
        _ => Fstype::Unsupported,
    }
}

/// The filesystem name to mount for a code (the reverse of [`fstype_code`]).
pub fn fstype_name(code: u32, fsname: Option<&str>) -> Option<&str> {
    Some(match Fstype::try_from(code as i32).ok()? {
        Fstype::Proc => "proc",
        Fstype::Sysfs => "sysfs",
        Fstype::Devtmpfs => "devtmpfs",
        Fstype::BinfmtMisc => "binfmt_misc",
        Fstype::Tmpfs => "tmpfs",
        Fstype::Devpts => "devpts",
        Fstype::Simfs => "simfs",
        Fstype::Pstore => "pstore",
        Fstype::Securityfs => "securityfs",
        Fstype::Fusectl => "fusectl",
        Fstype::Debugfs => "debugfs",
        Fstype::Tracefs => "tracefs",
        Fstype::Cgroup => "cgroup",
        Fstype::Cgroup2 => "cgroup2",
        Fstype::Aufs => "aufs",
        Fstype::Fuse => "fuse",
        Fstype::Overlayfs => "overlay",
        Fstype::Autofs => "autofs",
        Fstype::Mqueue => "mqueue",
        Fstype::Auto => return fsname,
        Fstype::Unsupported => return None,
    })
}

/// Per-mount flags from mountinfo's fifth field ("rw,nosuid,relatime").
pub fn mount_flags(opts: &str) -> u32 {
    let mut flags = 0;
    for o in opts.split(',') {
        flags |= match o {
            "ro" => MS_RDONLY,
            "nosuid" => MS_NOSUID,
            "nodev" => MS_NODEV,
            "noexec" => MS_NOEXEC,
            "noatime" => MS_NOATIME,
            "nodiratime" => MS_NODIRATIME,
            "relatime" => MS_RELATIME,
            _ => 0,
        };
    }
    if flags & (MS_RELATIME | MS_NOATIME) == 0 {
        flags |= MS_STRICTATIME;
    }
    flags
}

/// Superblock flags and the remaining options from mountinfo's last field.
pub fn sb_flags_and_options(opts: &str) -> (u32, String) {
    let mut flags = 0;
    let mut rest: Vec<&str> = Vec::new();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "rw" => {}
            "ro" => flags |= MS_RDONLY,
            "sync" => flags |= MS_SYNCHRONOUS,
            "dirsync" => flags |= MS_DIRSYNC,
            "mand" => flags |= MS_MANDLOCK,
            other => rest.push(other),
        }
    }
    (flags, rest.join(","))
}

/// One mountinfo row as CRIU's image entry (no external key yet).
pub fn entry_from_info(m: &MountInfo) -> MntEntry {
    let code = fstype_code(&m.fstype);
    let mut flags = mount_flags(&m.mount_options);
    if m.shared.is_some() {
        flags |= MS_SHARED;
    }
    if m.master.is_some() {
        flags |= MS_SLAVE;
    }
    if m.unbindable {
        flags |= MS_UNBINDABLE;
    }
    let (sb_flags, options) = sb_flags_and_options(&m.super_options);
    let mut root = m.root.to_string_lossy().into_owned();
    let deleted = root.ends_with(" (deleted)") || root.ends_with("//deleted");
    if deleted {
        let cut = if root.ends_with(" (deleted)") {
            " (deleted)".len()
        } else {
            "//deleted".len()
        };
        root.truncate(root.len() - cut);
    }
    MntEntry {
        fstype: code as u32,
        mnt_id: m.mnt_id as u32,
        root_dev: kdev(m.major, m.minor),
        parent_mnt_id: m.parent_id as u32,
        flags,
        root,
        mountpoint: m.mount_point.to_string_lossy().into_owned(),
        source: m.source.clone(),
        options,
        shared_id: Some(m.shared.unwrap_or(0)),
        master_id: Some(m.master.unwrap_or(0)),
        with_plugin: None,
        ext_mount: None,
        fsname: None,
        internal_sharing: None,
        deleted: deleted.then_some(true),
        sb_flags: Some(sb_flags),
        ext_key: None,
    }
}

/// Entries for a whole mountinfo table, in CRIU's image order (reversed).
pub fn entries_from_infos(infos: &[MountInfo]) -> Vec<MntEntry> {
    infos.iter().rev().map(entry_from_info).collect()
}

/// Checks an image path ("/a/b"): absolute, no "..", no NUL; gives it back normalised as the
/// list of its components (empty for "/").
pub fn clean_abs_path(p: &str) -> Option<PathBuf> {
    if !p.starts_with('/') || p.contains('\0') {
        return None;
    }
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// `inner` relative to `outer` when `outer` is a prefix of it component by component.
pub fn strip_prefix_path(inner: &Path, outer: &Path) -> Option<PathBuf> {
    inner.strip_prefix(outer).ok().map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use criu_procfs::mountinfo::parse_mountinfo;

    const NS: &str = "\
470 380 254:0 /tmp/zdtm/root/root / rw,relatime - ext4 /dev/vda rw,discard
471 470 0:60 / /dev rw,relatime - tmpfs criu-test-dev rw,size=65536k,inode64
472 470 0:61 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
473 470 0:62 / /run rw,relatime shared:7 - tmpfs zdtm_run rw,inode64
474 471 0:63 / /dev/pts rw,relatime - devpts pts rw,mode=666,ptmxmode=666
475 473 0:62 /sub /mnt/b ro,nosuid,noatime master:7 - tmpfs zdtm_run rw,inode64
476 470 254:0 /tmp/zdtm/root/root/data /data\\040x ro unbindable - ext4 /dev/vda rw,discard
";

    #[test]
    fn entries_as_criu_fills_them() {
        let infos = parse_mountinfo(NS).unwrap();
        let es = entries_from_infos(&infos);
        assert_eq!(es.len(), 7);
        // Reverse of mountinfo's order.
        assert_eq!(es[0].mnt_id, 476);
        assert_eq!(es[6].mnt_id, 470);
        let root = &es[6];
        assert_eq!(root.fstype, Fstype::Unsupported as u32);
        assert_eq!(root.root_dev, (254 << 20));
        assert_eq!(root.parent_mnt_id, 380);
        assert_eq!(root.mountpoint, "/");
        assert_eq!(root.root, "/tmp/zdtm/root/root");
        assert_eq!(root.flags, MS_RELATIME);
        assert_eq!(root.options, "discard");
        assert_eq!(root.sb_flags, Some(0));
        assert_eq!((root.shared_id, root.master_id), (Some(0), Some(0)));

        let dev = es.iter().find(|e| e.mnt_id == 471).unwrap();
        assert_eq!(dev.fstype, Fstype::Tmpfs as u32);
        assert_eq!(dev.root_dev, 60);
        assert_eq!(dev.source, "criu-test-dev");
        assert_eq!(dev.options, "size=65536k,inode64");

        let proc_ = es.iter().find(|e| e.mnt_id == 472).unwrap();
        assert_eq!(proc_.flags, MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME);
        assert_eq!(proc_.options, "");

        let run = es.iter().find(|e| e.mnt_id == 473).unwrap();
        assert_eq!(run.flags, MS_RELATIME | MS_SHARED);
        assert_eq!(run.shared_id, Some(7));

        let b = es.iter().find(|e| e.mnt_id == 475).unwrap();
        assert_eq!(b.flags, MS_RDONLY | MS_NOSUID | MS_NOATIME | MS_SLAVE);
        assert_eq!((b.shared_id, b.master_id), (Some(0), Some(7)));
        assert_eq!(b.root, "/sub");

        let data = es.iter().find(|e| e.mnt_id == 476).unwrap();
        assert_eq!(data.mountpoint, "/data x");
        assert_eq!(data.flags, MS_RDONLY | MS_STRICTATIME | MS_UNBINDABLE);
    }

    #[test]
    fn superblock_options_split() {
        assert_eq!(
            sb_flags_and_options("ro,sync,mode=755"),
            (MS_RDONLY | MS_SYNCHRONOUS, "mode=755".into())
        );
        assert_eq!(sb_flags_and_options("rw"), (0, String::new()));
    }

    #[test]
    fn paths_are_checked() {
        assert_eq!(clean_abs_path("/"), Some(PathBuf::new()));
        assert_eq!(clean_abs_path("/a/./b/"), Some(PathBuf::from("a/b")));
        assert_eq!(clean_abs_path("/a/../b"), None);
        assert_eq!(clean_abs_path("a/b"), None);
        assert_eq!(clean_abs_path("/a\0"), None);
    }

    #[test]
    fn fstype_names_round_trip() {
        for n in [
            "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup2", "overlay",
        ] {
            let code = fstype_code(n);
            assert_eq!(fstype_name(code as u32, None), Some(n));
        }
        assert_eq!(fstype_code("fuse.sshfs"), Fstype::Fuse);
        assert_eq!(fstype_code("ext4"), Fstype::Unsupported);
    }
}
