//! tmpfs: its content, kept as CRIU keeps it, a gzip'ed tar archive image
//! (`tmpfs-dev-<dev>.tar.gz.img`) made and read with the `tar` command. Dump half: archive a
//! private clone of the mount (files under child mounts included); restore half: extract into
//! the new instance, then make it read-only if it was.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};

use criu_proto::images::MntEntry;
use criu_proto::ImageKind;

use rustix::mount::OpenTreeFlags;

use crate::model::MS_RDONLY;
use crate::tree::describe;
use crate::MountError;

pub(crate) fn dump(
    pid: i32,
    e: &MntEntry,
    has_children: bool,
    dir: &Path,
) -> Result<(), MountError> {
    let fd = crate::dump::open_mount(pid, e, has_children)?;
    let path = dir.join(ImageKind::TMPFS_DEV.file_name(Some(u64::from(e.root_dev))));
    let what = format!(
        "mount {} ({}, tmpfs): tar into {}",
        e.mnt_id,
        e.mountpoint,
        path.display()
    );
    let out =
        criu_proto::create_image_file(&path).map_err(|err| MountError::io(what.clone(), err))?;
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

/// A tmpfs whose superblock was read-only becomes so once it holds its content.
pub(crate) fn seal(e: &MntEntry, mnt: &OwnedFd) -> Result<(), MountError> {
    if e.sb_flags.unwrap_or(0) & MS_RDONLY == 0 {
        return Ok(());
    }
    let fail = |err| {
        MountError::rsys(
            format!("{}: make the filesystem read-only", describe(e)),
            err,
        )
    };
    let fs = rustix::mount::fspick(
        mnt,
        "",
        rustix::mount::FsPickFlags::FSPICK_EMPTY_PATH | rustix::mount::FsPickFlags::FSPICK_CLOEXEC,
    )
    .map_err(fail)?;
    rustix::mount::fsconfig_set_flag(&fs, "ro").map_err(fail)?;
    rustix::mount::fsconfig_reconfigure(&fs).map_err(fail)
}

/// Extracts the tmpfs's tar image (`tmpfs-dev-<dev>`, or the older `tmpfs-<mnt_id>`) into it.
pub(crate) fn fill(e: &MntEntry, mnt: &OwnedFd, dir: &Path) -> Result<(), MountError> {
    let by_dev = dir.join(ImageKind::TMPFS_DEV.file_name(Some(u64::from(e.root_dev))));
    let by_id = dir.join(ImageKind::TMPFS_IMG.file_name(Some(u64::from(e.mnt_id))));
    let path = [by_dev.clone(), by_id]
        .into_iter()
        .find(|p| p.metadata().is_ok_and(|m| m.len() > 0))
        .ok_or_else(|| {
            MountError::Other(format!(
                "{}: no content image {}",
                describe(e),
                by_dev.display()
            ))
        })?;
    let what = format!("{}: untar {}", describe(e), path.display());
    let here = rustix::mount::open_tree(
        mnt,
        "",
        OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_EMPTY_PATH,
    )
    .map_err(|err| MountError::rsys(what.clone(), err))?;
    let out = Command::new("tar")
        .args([
            "--extract",
            "--gzip",
            "--no-unquote",
            "--no-wildcards",
            "--file",
        ])
        .arg(&path)
        .args(["--directory", "/proc/self/fd/0"])
        .stdin(Stdio::from(here))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|err| MountError::io(what.clone(), err))?;
    if !out.status.success() {
        return Err(MountError::Other(format!(
            "{what}: tar {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
