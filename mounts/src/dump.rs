//! Dump half: a namespace's mounts as CRIU's `mountpoints-<ns>.img`, each tmpfs's content as
//! `tmpfs-dev-<dev>.tar.gz.img` (a gzip'ed tar made by the `tar` command with CRIU's flags).

use crate::model::{entries_from_infos, kdev, kdev_major, kdev_minor};
use crate::tree::{How, Tree};
use crate::{MountError, MountOptions};
use criu_proto::images::{Fstype, MntEntry};
use criu_proto::{ImageKind, ImageWriter};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::mount::OpenTreeFlags;
use std::collections::HashSet;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};

/// The namespace's mounts as image entries, external keys filled in.
fn collect(pid: i32, opts: &MountOptions) -> Result<Vec<MntEntry>, MountError> {
    let infos = criu_procfs::read_mountinfo(pid).map_err(|source| MountError::Proc { pid, source })?;
    let mut entries = entries_from_infos(&infos);
    // A devpts instance other than criu's own was mounted with newinstance, which the kernel
    // does not show (CRIU adds it back the same way).
    let host_pts = nix::sys::stat::stat("/dev/pts").ok().map(|st| {
        kdev(nix::sys::stat::major(st.st_dev) as u32, nix::sys::stat::minor(st.st_dev) as u32)
    });
    for e in &mut entries {
        if e.fstype == Fstype::Devpts as u32 && Some(e.root_dev) != host_pts {
            if e.options.is_empty() {
                e.options = "newinstance".into();
            } else {
                e.options.push_str(",newinstance");
            }
        }
        if e.mountpoint != "/" {
            if let Some(key) = opts.external_for(&e.mountpoint) {
                e.ext_key = Some(key.to_owned());
            }
        }
    }
    Ok(entries)
}

/// Refuses, before any task is touched, a mount this crate cannot rebuild.
pub fn check(pid: i32, opts: &MountOptions) -> Result<(), MountError> {
    Tree::build(collect(pid, opts)?).map(drop)
}

/// Writes `mountpoints-<mnt_ns_id>.img` and the tmpfs content images for the mount namespace
/// of host pid `pid`.
pub fn dump(pid: i32, mnt_ns_id: u32, dir: &Path, opts: &MountOptions) -> Result<(), MountError> {
    let entries = collect(pid, opts)?;
    let tree = Tree::build(entries.clone())?;
    let mut w = ImageWriter::create(dir, &ImageKind::MNTS, Some(u64::from(mnt_ns_id)))?;
    for e in &entries {
        w.write(e)?;
    }
    w.finish()?;
    let mut done = HashSet::new();
    for n in &tree.nodes {
        let tmpfs = n.e.fstype == Fstype::Tmpfs as u32;
        if tmpfs && n.how == How::Fresh && done.insert(n.e.root_dev) {
            dump_tmpfs(pid, &n.e, dir)?;
        }
    }
    Ok(())
}

/// A private copy of the mount at `mountpoint` in pid's namespace, without what is mounted
/// on top of or below it (so files under child mount points are seen); the mount itself
/// where the kernel refuses to clone it.
fn open_mount(pid: i32, e: &MntEntry) -> Result<OwnedFd, MountError> {
    let what = || format!("mount {} ({}, tmpfs): open {}", e.mnt_id, e.mountpoint, e.mountpoint);
    let root = rustix::fs::open(format!("/proc/{pid}/root"), OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|err| MountError::rsys(what(), err))?;
    let rel = e.mountpoint.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let at = rustix::fs::openat2(
        &root,
        rel,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|err| MountError::rsys(what(), err))?;
    let fd = match rustix::mount::open_tree(
        &at,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_EMPTY_PATH,
    ) {
        Ok(clone) => clone,
        Err(_) => at,
    };
    let st = rustix::fs::fstat(&fd).map_err(|err| MountError::rsys(what(), err))?;
    let dev = kdev(rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev));
    if dev != e.root_dev {
        return Err(MountError::Other(format!(
            "mount {} ({}, tmpfs): the path leads to device {}:{}, not {}:{} (hidden by another mount?)",
            e.mnt_id,
            e.mountpoint,
            kdev_major(dev),
            kdev_minor(dev),
            kdev_major(e.root_dev),
            kdev_minor(e.root_dev)
        )));
    }
    Ok(fd)
}

fn dump_tmpfs(pid: i32, e: &MntEntry, dir: &Path) -> Result<(), MountError> {
    let fd = open_mount(pid, e)?;
    let path = dir.join(ImageKind::TMPFS_DEV.file_name(Some(u64::from(e.root_dev))));
    let what = format!("mount {} ({}, tmpfs): tar into {}", e.mnt_id, e.mountpoint, path.display());
    let out = File::create(&path).map_err(|err| MountError::io(what.clone(), err))?;
    let res = Command::new("tar")
        .args([
            "--create",
            "--gzip",
            "--no-unquote",
            "--no-wildcards",
            "--one-file-system",
            "--check-links",
            "--preserve-permissions",
            "--sparse",
            "--numeric-owner",
            "--directory",
            "/proc/self/fd/0",
            ".",
        ])
        .stdin(Stdio::from(fd))
        .stdout(Stdio::from(out))
        .stderr(Stdio::piped())
        .output()
        .map_err(|err| MountError::io(what.clone(), err))?;
    if !res.status.success() {
        return Err(MountError::Other(format!(
            "{what}: tar {}: {}",
            res.status,
            String::from_utf8_lossy(&res.stderr).trim()
        )));
    }
    Ok(())
}
