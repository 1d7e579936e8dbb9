//! `--inherit-fd fd[N]:RESOURCE`: a file the dump names as RESOURCE is not made again; criu's
//! own fd N (inherited from whoever started criu) stands for it. Resource names are CRIU's:
//! a regular file is its path without the leading '/' ("." for "/"), a pipe `pipe:[ID]`, a
//! unix socket `socket:[INO]`. A file or socket takes fd N's description itself; a pipe end is opened again through fd N
//! with the access mode the dump saw, and its bytes are left as the pipe holds them.

use std::os::fd::{AsRawFd, OwnedFd};

use criu_proto::images::{FdTypes, FileEntry};
use nix::fcntl::{FcntlArg, OFlag};
use nix::sys::stat::Mode;

use crate::registry::{RestoreFileOptions, SharedFiles};
use criu_proto::dump_images::DumpImages;

#[derive(Debug, thiserror::Error)]
pub enum InheritError {
    #[error("--inherit-fd fd[{fd}]:{key}: fd {fd} is not open in criu: {errno}")]
    NotOpen {
        fd: i32,
        key: String,
        errno: nix::errno::Errno,
    },
    #[error("--inherit-fd fd[{fd}]:{key}: file {id}: {what}: {errno}")]
    Take {
        fd: i32,
        key: String,
        id: u32,
        what: &'static str,
        errno: nix::errno::Errno,
    },
}

/// The name `--inherit-fd` gives the file of `entry`, for the kinds that can be inherited.
pub fn resource_name(entry: &FileEntry) -> Option<String> {
    if entry.r#type == FdTypes::Reg as i32 {
        let reg = entry.reg.as_ref()?;
        let name = reg.name.strip_prefix('/').unwrap_or(&reg.name);
        return Some(if name.is_empty() { "." } else { name }.to_string());
    }
    if entry.r#type == FdTypes::Pipe as i32 {
        return Some(format!("pipe:[{}]", entry.pipe.as_ref()?.pipe_id));
    }
    if entry.r#type == FdTypes::Unixsk as i32 {
        return Some(format!("socket:[{}]", entry.usk.as_ref()?.ino));
    }
    None
}

/// Gives every file a task holds and some `--inherit-fd` names its description from criu's fd.
pub fn take_all(
    images: &DumpImages,
    opts: &RestoreFileOptions,
    shared: &mut SharedFiles,
) -> Result<(), InheritError> {
    if opts.inherit_fds.is_empty() {
        return Ok(());
    }
    let held: std::collections::BTreeSet<u32> = images
        .tasks
        .iter()
        .flat_map(|t| &t.fds)
        .map(|fd| fd.id)
        .collect();
    let me = std::process::id() as i32;
    for (fd, key) in &opts.inherit_fds {
        let (fd, key) = (*fd, key.as_str());
        // A copy of criu's fd N (the same description); it also says whether N is open.
        let mine = criu_sys::pidfd::take_fd(me, fd).map_err(|errno| InheritError::NotOpen {
            fd,
            key: key.to_string(),
            errno,
        })?;
        for id in &held {
            let Some(entry) = images.files.get(id) else {
                continue;
            };
            if resource_name(entry).as_deref() != Some(key) {
                continue;
            }
            let made = take(&mine, entry).map_err(|(what, errno)| InheritError::Take {
                fd,
                key: key.to_string(),
                id: *id,
                what,
                errno,
            })?;
            tracing::info!("file {id} ({key}) is criu's inherited fd {fd}");
            shared.add_inherited(*id, made);
        }
    }
    Ok(())
}

/// criu's description standing for `entry`, from `mine`, a copy of the inherited fd.
fn take(mine: &OwnedFd, entry: &FileEntry) -> Result<OwnedFd, (&'static str, nix::errno::Errno)> {
    let Some(pipe) = entry
        .pipe
        .as_ref()
        .filter(|_| entry.r#type == FdTypes::Pipe as i32)
    else {
        return mine.try_clone().map_err(|e| ("dup", errno_of(&e)));
    };
    // This end of the inherited pipe, as its own description with the dumped flags.
    let write = pipe.flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32;
    let access = if write {
        OFlag::O_WRONLY
    } else {
        OFlag::O_RDONLY
    };
    let path = format!("/proc/self/fd/{}", mine.as_raw_fd());
    let end = nix::fcntl::open(path.as_str(), access | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| ("open the pipe end again", e))?;
    let settable = pipe.flags as i32 & (libc::O_NONBLOCK | libc::O_APPEND | libc::O_ASYNC);
    nix::fcntl::fcntl(&end, FcntlArg::F_SETFL(OFlag::from_bits_retain(settable)))
        .map_err(|e| ("F_SETFL", e))?;
    Ok(end)
}

fn errno_of(e: &std::io::Error) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use criu_proto::images::{PipeEntry, RegFileEntry};

    fn reg(name: &str) -> FileEntry {
        FileEntry {
            r#type: FdTypes::Reg as i32,
            id: 1,
            reg: Some(RegFileEntry {
                name: name.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn names_are_crius() {
        assert_eq!(resource_name(&reg("/tmp/log")).as_deref(), Some("tmp/log"));
        assert_eq!(resource_name(&reg("/")).as_deref(), Some("."));
        let pipe = FileEntry {
            r#type: FdTypes::Pipe as i32,
            id: 2,
            pipe: Some(PipeEntry {
                pipe_id: 4242,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(resource_name(&pipe).as_deref(), Some("pipe:[4242]"));
        let sk = FileEntry {
            r#type: FdTypes::Unixsk as i32,
            id: 3,
            usk: Some(criu_proto::images::UnixSkEntry {
                ino: 77,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(resource_name(&sk).as_deref(), Some("socket:[77]"));
        assert_eq!(resource_name(&FileEntry::default()), None);
    }

    #[test]
    fn a_pipe_end_is_opened_again_with_its_mode_and_a_file_is_shared() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        let me = std::process::id() as i32;
        let write_end = FileEntry {
            r#type: FdTypes::Pipe as i32,
            id: 3,
            pipe: Some(PipeEntry {
                pipe_id: 1,
                flags: (libc::O_WRONLY | libc::O_NONBLOCK) as u32,
                ..Default::default()
            }),
            ..Default::default()
        };
        let w2 = take(&r, &write_end).unwrap();
        let fl = nix::fcntl::fcntl(&w2, FcntlArg::F_GETFL).unwrap();
        assert_eq!(fl & libc::O_ACCMODE, libc::O_WRONLY);
        assert_ne!(fl & libc::O_NONBLOCK, 0);
        let f: OwnedFd = std::fs::File::open("/proc/self/status").unwrap().into();
        let same = take(&f, &reg("/proc/self/status")).unwrap();
        assert_eq!(
            criu_sys::kcmp::same_file(me, f.as_raw_fd(), me, same.as_raw_fd()),
            Ok(true)
        );
    }
}
