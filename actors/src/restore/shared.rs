//! Objects that several tasks may hold: created once by criu before the tasks are rebuilt, and
//! handed to each task that has them (the task takes its copy with pidfd_getfd).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};

use criu_proto::images::{FdTypes, PipeDataEntry};
use criu_proto::{ImageKind, ImageReader};

use super::images::DumpImages;

#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error(transparent)]
    Image(#[from] criu_proto::Error),
    #[error("pipe {pipe_id}: {what}: {errno}")]
    Pipe { pipe_id: u32, what: &'static str, errno: nix::errno::Errno },
    #[error("pipe {pipe_id}: cannot refill {len} bytes: {source}")]
    PipeData { pipe_id: u32, len: usize, source: std::io::Error },
    #[error("pipes-data.img: pipe {0} holds data but no task has it open")]
    UnknownPipe(u32),
}

/// The shared objects of one restore.
#[derive(Debug, Default)]
pub struct SharedFiles {
    /// Pipes by pipe inode id: (read end, write end).
    pipes: BTreeMap<u32, (OwnedFd, OwnedFd)>,
}

impl SharedFiles {
    /// Creates every pipe the dump names and puts back the bytes it held.
    pub fn create(images: &DumpImages) -> Result<SharedFiles, SharedError> {
        let mut shared = SharedFiles::default();
        for f in images.files.values() {
            if f.r#type != FdTypes::Pipe as i32 {
                continue;
            }
            let Some(p) = &f.pipe else { continue };
            if shared.pipes.contains_key(&p.pipe_id) {
                continue;
            }
            let ends = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|errno| SharedError::Pipe { pipe_id: p.pipe_id, what: "pipe2", errno })?;
            shared.pipes.insert(p.pipe_id, ends);
        }
        if let Some(mut img) = ImageReader::open_if_exists(&images.dir, &ImageKind::PIPES_DATA, None)? {
            while let Some(entry) = img.read::<PipeDataEntry>()? {
                let data = img.read_payload(u64::from(entry.bytes))?;
                let (_, w) = shared.pipes.get(&entry.pipe_id).ok_or(SharedError::UnknownPipe(entry.pipe_id))?;
                if let Some(size) = entry.size {
                    nix::fcntl::fcntl(w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(size as i32))
                        .map_err(|errno| SharedError::Pipe { pipe_id: entry.pipe_id, what: "F_SETPIPE_SZ", errno })?;
                }
                std::fs::File::from(w.try_clone().map_err(|source| SharedError::PipeData {
                    pipe_id: entry.pipe_id,
                    len: data.len(),
                    source,
                })?)
                .write_all(&data)
                .map_err(|source| SharedError::PipeData { pipe_id: entry.pipe_id, len: data.len(), source })?;
            }
        }
        Ok(shared)
    }

    /// criu's fd for the end of pipe `pipe_id` opened with `flags`.
    pub fn pipe_end(&self, pipe_id: u32, flags: u32) -> Option<i32> {
        let (r, w) = self.pipes.get(&pipe_id)?;
        let write = flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32;
        Some(if write { w.as_raw_fd() } else { r.as_raw_fd() })
    }
}
