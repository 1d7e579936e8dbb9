//! Pipes at restore: each pipe is made once in criu, every pipe entry gets its description
//! (with its status flags and owner), and the bytes the pipe held go back in.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};

use criu_proto::images::{FdTypes, PipeDataEntry};
use criu_proto::{ImageKind, ImageReader};

use crate::registry::{SharedError, SharedFiles};
use criu_proto::dump_images::DumpImages;

/// Creates every pipe the dump names, gives each pipe entry its description and puts back
/// the bytes each pipe held.
pub fn open_all(images: &DumpImages, shared: &mut SharedFiles) -> Result<(), SharedError> {
    let mut pipes: BTreeMap<u32, (OwnedFd, OwnedFd)> = BTreeMap::new();
    // An inherited pipe is not made again, nor refilled (CRIU leaves its bytes as they are).
    let inherited: BTreeSet<u32> = images
        .files
        .values()
        .filter(|f| shared.is_inherited(f.id))
        .filter_map(|f| f.pipe.as_ref().map(|p| p.pipe_id))
        .collect();
    for f in images.files.values() {
        if f.r#type != FdTypes::Pipe as i32 {
            continue;
        }
        let Some(p) = &f.pipe else { continue };
        if pipes.contains_key(&p.pipe_id) || inherited.contains(&p.pipe_id) {
            continue;
        }
        let ends = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|errno| {
            SharedError::Pipe {
                pipe_id: p.pipe_id,
                what: "pipe2",
                errno,
            }
        })?;
        pipes.insert(p.pipe_id, ends);
    }
    open_descriptions(images, &pipes, &inherited, shared)?;
    if let Some(mut img) = ImageReader::open_if_exists(&images.dir, &ImageKind::PIPES_DATA, None)? {
        while let Some(entry) = img.read::<PipeDataEntry>()? {
            let data = img.read_payload(u64::from(entry.bytes))?;
            if inherited.contains(&entry.pipe_id) {
                continue;
            }
            let (_, w) = pipes
                .get(&entry.pipe_id)
                .ok_or(SharedError::UnknownPipe(entry.pipe_id))?;
            if let Some(size) = entry.size {
                nix::fcntl::fcntl(w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(size as i32)).map_err(
                    |errno| SharedError::Pipe {
                        pipe_id: entry.pipe_id,
                        what: "F_SETPIPE_SZ",
                        errno,
                    },
                )?;
            }
            std::fs::File::from(w.try_clone().map_err(|source| SharedError::PipeData {
                pipe_id: entry.pipe_id,
                len: data.len(),
                source,
            })?)
            .write_all(&data)
            .map_err(|source| SharedError::PipeData {
                pipe_id: entry.pipe_id,
                len: data.len(),
                source,
            })?;
        }
    }
    Ok(())
}

/// One description per pipe entry: the first entry of each end takes the end pipe2 made,
/// later ones (the same end opened again through /proc) get a new description of it.
fn open_descriptions(
    images: &DumpImages,
    pipes: &BTreeMap<u32, (OwnedFd, OwnedFd)>,
    inherited: &BTreeSet<u32>,
    shared: &mut SharedFiles,
) -> Result<(), SharedError> {
    let mut used = std::collections::BTreeSet::new();
    for f in images.files.values() {
        let Some(p) = f.pipe.as_ref().filter(|_| f.r#type == FdTypes::Pipe as i32) else {
            continue;
        };
        if inherited.contains(&p.pipe_id) {
            continue;
        }
        let write = p.flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32;
        let (r, w) = &pipes[&p.pipe_id];
        let end = if write { w } else { r };
        let fd = if used.insert((p.pipe_id, write)) {
            end.try_clone()
        } else {
            let path = format!("/proc/self/fd/{}", end.as_raw_fd());
            let access = if write {
                libc::O_WRONLY
            } else {
                libc::O_RDONLY
            };
            nix::fcntl::open(
                path.as_str(),
                nix::fcntl::OFlag::from_bits_retain(access | libc::O_CLOEXEC),
                nix::sys::stat::Mode::empty(),
            )
            .map_err(std::io::Error::from)
        }
        .map_err(|source| SharedError::PipeData {
            pipe_id: p.pipe_id,
            len: 0,
            source,
        })?;
        let settable =
            p.flags as i32 & (libc::O_NONBLOCK | libc::O_APPEND | libc::O_ASYNC | libc::O_DIRECT);
        nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::from_bits_retain(settable)),
        )
        .map_err(|errno| SharedError::Pipe {
            pipe_id: p.pipe_id,
            what: "F_SETFL",
            errno,
        })?;
        shared.restore_fown(f.id, &fd, &p.fown)?;
        shared.add_description(f.id, fd);
    }
    Ok(())
}
