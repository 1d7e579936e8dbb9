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
use std::io::BufRead;
use std::io::BufReader;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The namespace's mounts as image entries, external keys filled in.
fn collect(pid: i32, opts: &MountOptions) -> Result<Vec<MntEntry>, MountError> {
    let infos =
        criu_procfs::read_mountinfo(pid).map_err(|source| MountError::Proc { pid, source })?;
    let mut entries = entries_from_infos(&infos);
    // A devpts instance other than criu's own was mounted with newinstance, which the kernel
    // does not show (CRIU adds it back the same way).
    let host_pts = nix::sys::stat::stat("/dev/pts").ok().map(|st| {
        kdev(
            nix::sys::stat::major(st.st_dev) as u32,
            nix::sys::stat::minor(st.st_dev) as u32,
        )
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
    crate::device::mark(&mut entries, &infos, opts);
    crate::auto::detect(&mut entries, opts)?;
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
            crate::tmpfs::dump(pid, &n.e, !n.children.is_empty(), dir)?;
        }
    }
    Ok(())
}

/// The program run as `PROGRAM __mount-helper open NS_PID MOUNTPOINT` to clone a mount of
/// another namespace (the kernel clones mounts only from the caller's own namespace, and a
/// multi-threaded criu cannot join one): `$CRIU_MOUNT_HELPER_EXE`, else criu itself.
pub fn helper_exe() -> Option<PathBuf> {
    std::env::var_os("CRIU_MOUNT_HELPER_EXE")
        .map(PathBuf::from)
        .or_else(|| std::env::current_exe().ok())
}

/// Helper side of `__mount-helper open`: joins pid's mount namespace (the caller must be
/// single-threaded) and gives a private clone of the mount at `mountpoint`, without what is
/// mounted on top of or below it.
pub fn clone_mount_in_ns(pid: i32, mountpoint: &str, dev: u32) -> Result<OwnedFd, MountError> {
    let open_ns =
        |path: String| File::open(&path).map_err(|e| MountError::io(format!("open {path}"), e));
    let own = open_ns("/proc/self/ns/mnt".into())?;
    let theirs = open_ns(format!("/proc/{pid}/ns/mnt"))?;
    match find_in(&theirs, pid, mountpoint, dev) {
        // A user namespace's copy of criu's mounts locks them: what hides the mount cannot be
        // unmounted there. The same filesystem may be reached in criu's own namespace.
        Err(MountError::Sys {
            errno: nix::errno::Errno::EINVAL,
            ..
        }) => find_in(&own, pid, mountpoint, dev),
        other => other,
    }
}

/// Joins the mount namespace `ns` and clones the mount of device `dev` at `mountpoint`; a
/// mount hidden under others there is uncovered in a private copy of the namespace, where
/// unmounting what is on top changes nothing for the task.
fn find_in(ns: &File, pid: i32, mountpoint: &str, dev: u32) -> Result<OwnedFd, MountError> {
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| MountError::sys(format!("setns into a mount namespace for pid {pid}"), e))?;
    let mut copied = false;
    for _ in 0..MAX_STACK {
        let top = open_at_mountpoint(pid, mountpoint)?;
        let st = rustix::fs::fstat(&top)
            .map_err(|e| MountError::rsys(format!("stat {mountpoint}"), e))?;
        if kdev(rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev)) == dev {
            return clone_at(pid, mountpoint, &top);
        }
        if !copied {
            private_copy()?;
            copied = true;
        }
        tracing::debug!("pid {pid}: {mountpoint} hides another mount: unmounting the top one");
        nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| MountError::sys(format!("uncover {mountpoint}: umount"), e))?;
    }
    Err(MountError::Other(format!(
        "{mountpoint} in the mount namespace of {pid}: no mount of device {}:{} under {MAX_STACK} others",
        kdev_major(dev),
        kdev_minor(dev)
    )))
}

/// How many mounts may stand on one another at a mount point before the search gives up.
const MAX_STACK: usize = 16;

/// A private copy of the current mount namespace for this (single-threaded) helper.
fn private_copy() -> Result<(), MountError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| MountError::sys("unshare(CLONE_NEWNS)", e))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| MountError::sys("make the copy private", e))
}

/// The top mount at `mountpoint`, as an O_PATH fd.
fn open_at_mountpoint(pid: i32, mountpoint: &str) -> Result<OwnedFd, MountError> {
    let what = || format!("open {mountpoint} in the mount namespace of {pid}");
    let root = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| MountError::rsys(what(), e))?;
    let rel = mountpoint.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    rustix::fs::openat2(
        &root,
        rel,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| MountError::rsys(what(), e))
}

/// A private clone of the mount `at` (at `mountpoint`) alone.
fn clone_at(pid: i32, mountpoint: &str, at: &OwnedFd) -> Result<OwnedFd, MountError> {
    rustix::mount::open_tree(
        at,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH,
    )
    .map_err(|e| {
        MountError::rsys(
            format!("clone the mount at {mountpoint} in the mount namespace of {pid}"),
            e,
        )
    })
}

/// Runs `__mount-helper open` and takes the clone it holds (pidfd_getfd).
fn clone_through_helper(pid: i32, mountpoint: &str, dev: u32) -> Result<OwnedFd, MountError> {
    let exe = helper_exe()
        .ok_or_else(|| MountError::Other("cannot find criu's own executable".into()))?;
    let what = format!(
        "{} __mount-helper open {pid} {mountpoint} {dev}",
        exe.display()
    );
    let mut child = Command::new(&exe)
        .args([
            "__mount-helper",
            "open",
            &pid.to_string(),
            mountpoint,
            &dev.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| MountError::io(what.clone(), e))?;
    let mut line = String::new();
    let read = child
        .stdout
        .take()
        .map(|o| BufReader::new(o).read_line(&mut line));
    let got = match (read, line.trim().parse::<i32>()) {
        (Some(Ok(_)), Ok(fd)) => criu_sys::pidfd::take_fd(child.id() as i32, fd)
            .map_err(|e| MountError::sys(format!("{what}: take its fd {fd}"), e)),
        _ => Err(MountError::Other(String::new())),
    };
    drop(child.stdin.take());
    let out = child
        .wait_with_output()
        .map_err(|e| MountError::io(what.clone(), e))?;
    got.map_err(|e| match e {
        MountError::Other(s) if s.is_empty() => MountError::Other(format!(
            "{what}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        e => e,
    })
}

/// The tmpfs to archive: a private clone made in its namespace by the helper; where that
/// cannot run, and nothing of the tree is mounted on it, the mount itself.
pub(crate) fn open_mount(
    pid: i32,
    e: &MntEntry,
    has_children: bool,
) -> Result<OwnedFd, MountError> {
    let fd = match clone_through_helper(pid, &e.mountpoint, e.root_dev) {
        Ok(fd) => fd,
        Err(err) if !has_children => {
            tracing::debug!("{err}; archiving the mount seen from criu");
            let what = || {
                format!(
                    "mount {} ({}, tmpfs): open {}",
                    e.mnt_id, e.mountpoint, e.mountpoint
                )
            };
            let root = rustix::fs::open(
                format!("/proc/{pid}/root"),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|err| MountError::rsys(what(), err))?;
            let rel = e.mountpoint.trim_start_matches('/');
            let rel = if rel.is_empty() { "." } else { rel };
            rustix::fs::openat2(
                &root,
                rel,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
            )
            .map_err(|err| MountError::rsys(what(), err))?
        }
        Err(err) => return Err(err),
    };
    let st = rustix::fs::fstat(&fd).map_err(|err| {
        MountError::rsys(
            format!("mount {} ({}, tmpfs): stat", e.mnt_id, e.mountpoint),
            err,
        )
    })?;
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
