//! Pipes of a dump: one file entry per open description (`pipe_id` is the pipe's inode), and
//! the bytes each pipe holds, copied without consuming them (tee), once per pipe.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;

use criu_proto::images::{FdTypes, FileEntry, FownEntry, PipeDataEntry, PipeEntry};
use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags};

#[derive(Debug, thiserror::Error)]
#[error("pid {pid}: fd {fd}: pipe:[{ino}]: {what}: {source}")]
pub struct PipeError {
    pub pid: i32,
    pub fd: i32,
    pub ino: u64,
    pub what: &'static str,
    pub source: std::io::Error,
}

/// The bytes a pipe held at dump time, with its buffer size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeData {
    pub pipe_id: u32,
    pub size: u32,
    pub bytes: Vec<u8>,
}

impl PipeData {
    pub fn entry(&self) -> PipeDataEntry {
        PipeDataEntry {
            pipe_id: self.pipe_id,
            bytes: self.bytes.len() as u32,
            size: Some(self.size),
        }
    }
}

/// The file entry of one pipe description; `flags` as fdinfo shows them, without O_CLOEXEC.
pub fn pipe_entry(id: u32, ino: u64, flags: u32) -> FileEntry {
    let pipe = PipeEntry {
        id,
        pipe_id: ino as u32,
        flags: flags & !(libc::O_DIRECT as u32),
        fown: FownEntry::default(),
    };
    FileEntry {
        r#type: FdTypes::Pipe as i32,
        id,
        pipe: Some(pipe),
        ..Default::default()
    }
}

/// Whether a description with these flags is the read end (only a read end can be tee'd).
pub fn is_read_end(flags: u32) -> bool {
    flags & libc::O_ACCMODE as u32 != libc::O_WRONLY as u32
}

/// Copies what the pipe behind `/proc/PID/fd/FD` holds, leaving it there.
pub fn read_pipe_data(pid: i32, fd: i32, ino: u64) -> Result<PipeData, PipeError> {
    let err = |what: &'static str| {
        move |source: std::io::Error| PipeError {
            pid,
            fd,
            ino,
            what,
            source,
        }
    };
    let errno = |what: &'static str| move |e: nix::errno::Errno| err(what)(std::io::Error::from(e));
    // A new read description of the same pipe: reading through it sees the same buffer.
    let src = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(format!("/proc/{pid}/fd/{fd}"))
        .map_err(err("cannot open it again"))?;
    let size = nix::fcntl::fcntl(&src, FcntlArg::F_GETPIPE_SZ).map_err(errno("F_GETPIPE_SZ"))?;
    let (steal_r, steal_w): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(errno("pipe2"))?;
    nix::fcntl::fcntl(&steal_w, FcntlArg::F_SETPIPE_SZ(size)).map_err(errno("F_SETPIPE_SZ"))?;
    let len = match nix::fcntl::tee(
        &src,
        &steal_w,
        size as usize,
        SpliceFFlags::SPLICE_F_NONBLOCK,
    ) {
        Ok(n) => n,
        Err(nix::errno::Errno::EAGAIN) => 0,
        Err(e) => return Err(errno("tee")(e)),
    };
    drop(steal_w);
    let mut bytes = Vec::with_capacity(len);
    std::fs::File::from(steal_r)
        .read_to_end(&mut bytes)
        .map_err(err("read the copy"))?;
    Ok(PipeData {
        pipe_id: ino as u32,
        size: size as u32,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn data_is_copied_and_stays_in_the_pipe() {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        std::fs::File::from(w.try_clone().unwrap())
            .write_all(b"hello pipe")
            .unwrap();
        let me = std::process::id() as i32;
        let ino = std::fs::metadata(format!("/proc/self/fd/{}", r.as_raw_fd()))
            .unwrap()
            .ino();
        // Through the write end too: the copy opens a read end of its own.
        let d = read_pipe_data(me, w.as_raw_fd(), ino).unwrap();
        assert_eq!(d.bytes, b"hello pipe");
        assert_eq!(d.pipe_id, ino as u32);
        assert!(d.size >= 4096);
        assert_eq!(
            d.entry(),
            PipeDataEntry {
                pipe_id: ino as u32,
                bytes: 10,
                size: Some(d.size)
            }
        );
        drop(w);
        let mut left = Vec::new();
        std::fs::File::from(r).read_to_end(&mut left).unwrap();
        assert_eq!(left, b"hello pipe");
    }

    #[test]
    fn an_empty_pipe_gives_no_bytes() {
        let (r, _w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let d = read_pipe_data(std::process::id() as i32, r.as_raw_fd(), 1).unwrap();
        assert!(d.bytes.is_empty());
    }

    #[test]
    fn entries_keep_the_access_mode_and_drop_o_direct() {
        let e = pipe_entry(
            7,
            0x1_0000_0042,
            libc::O_WRONLY as u32 | libc::O_DIRECT as u32,
        );
        assert_eq!(e.r#type, FdTypes::Pipe as i32);
        let p = e.pipe.unwrap();
        assert_eq!((p.id, p.pipe_id, p.flags), (7, 0x42, libc::O_WRONLY as u32));
        assert!(is_read_end(libc::O_RDONLY as u32 | libc::O_NONBLOCK as u32));
        assert!(!is_read_end(libc::O_WRONLY as u32));
    }
}
