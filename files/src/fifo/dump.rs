//! FIFOs (named pipes) of a dump. As in CRIU, each open description gets a FIFO entry
//! (`pipe_id` = the fifo's inode) that points at a regular-file entry of its own (`regf_id`)
//! holding the path, status flags and owner; the bytes the fifo holds go to fifo-data.img,
//! laid out as pipes-data.img, once per fifo.

use std::path::Path;

use criu_proto::images::{FdTypes, FdinfoEntry, FifoEntry, FileEntry, RegFileEntry};
use criu_proto::{ImageKind, ImageWriter};

use crate::pipes::dump::{self as pipes, PipeData};
use crate::table::{fdinfo, FileStat, FileTable};

#[derive(Debug, thiserror::Error)]
pub enum FifoError {
    #[error("pid {pid}: fd {fd}: fifo {path}: cannot read fdinfo: {source}")]
    Fdinfo {
        pid: i32,
        fd: i32,
        path: String,
        source: criu_procfs::ProcError,
    },
    #[error(transparent)]
    Data(#[from] pipes::PipeError),
    #[error(transparent)]
    Fown(#[from] crate::fown::dump::FownError),
    #[error(transparent)]
    Ghost(#[from] crate::ghost::dump::GhostError),
}

/// The bytes of every fifo seen, once per fifo.
#[derive(Debug, Default)]
pub struct Fifos {
    data: Vec<PipeData>,
}

impl Fifos {
    fn missing(&self, pipe_id: u32) -> bool {
        !self.data.iter().any(|d| d.pipe_id == pipe_id)
    }

    pub fn data(&self) -> &[PipeData] {
        &self.data
    }
}

/// The fdinfo entry of `pid`'s `fd`, a fifo at `path` (`deleted`: /proc said so). A fifo
/// whose name is gone is remapped like a regular file (see `ghost`).
pub fn dump_fifo_fd(
    pid: i32,
    fd: i32,
    path: &Path,
    deleted: bool,
    meta: &std::fs::Metadata,
    table: &std::sync::Mutex<FileTable>,
) -> Result<FdinfoEntry, FifoError> {
    let info = criu_procfs::read_fdinfo(pid, fd).map_err(|source| FifoError::Fdinfo {
        pid,
        fd,
        path: path.display().to_string(),
        source,
    })?;
    let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
    let flags = info.flags & !(libc::O_CLOEXEC as u32);
    let fown = crate::fown::dump::read(pid, fd, flags)?;
    let st = FileStat::of(meta);
    let pipe_id = st.ino as u32;
    let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
    let id = t.described(pid, fd, st, |id| {
        Ok::<_, FifoError>(fifo_entry(id, pipe_id, None))
    })?;
    // A new description has no path entry yet: give it one.
    let needs_path = t
        .entry_mut(id)
        .and_then(|e| e.fifo.as_ref())
        .is_some_and(|f| f.regf_id.is_none());
    if needs_path {
        let reg = RegFileEntry {
            flags,
            pos: 0,
            fown,
            name: path.to_string_lossy().into_owned(),
            mnt_id: Some(info.mnt_id),
            size: Some(st.size),
            mode: Some(st.mode),
            ..Default::default()
        };
        let regf_id = t.add(|rid| FileEntry {
            r#type: FdTypes::Reg as i32,
            id: rid,
            reg: Some(RegFileEntry { id: rid, ..reg }),
            ..Default::default()
        });
        if let Some(f) = t.entry_mut(id).and_then(|e| e.fifo.as_mut()) {
            f.regf_id = Some(regf_id);
        }
        let origin = crate::ghost::dump::Origin {
            pid,
            what: format!("fd {fd}"),
            link: format!("/proc/{pid}/fd/{fd}").into(),
            deleted,
        };
        crate::ghost::dump::check(&mut t, regf_id, path, &origin, meta)?;
    }
    // Any end will do: the copy opens a read end of its own.
    if t.fifos.missing(pipe_id) {
        let data = pipes::read_pipe_data(pid, fd, st.ino)?;
        t.fifos.data.push(data);
    }
    Ok(fdinfo(id, fd, u32::from(cloexec), FdTypes::Fifo))
}

fn fifo_entry(id: u32, pipe_id: u32, regf_id: Option<u32>) -> FileEntry {
    FileEntry {
        r#type: FdTypes::Fifo as i32,
        id,
        fifo: Some(FifoEntry {
            id,
            pipe_id,
            regf_id,
        }),
        ..Default::default()
    }
}

/// fifo-data.img: each fifo's bytes after its entry; written even when empty, as CRIU does.
pub fn write_fifo_data(dir: &Path, fifos: &Fifos) -> Result<(), criu_proto::Error> {
    let mut w = ImageWriter::create(dir, &ImageKind::FIFO_DATA, None)?;
    for d in &fifos.data {
        w.write(&d.entry())?;
        w.write_payload(&d.bytes)?;
    }
    w.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;

    fn open(path: &Path, flags: i32) -> std::fs::File {
        let access = flags & libc::O_ACCMODE;
        std::fs::OpenOptions::new()
            .read(access != libc::O_WRONLY)
            .write(access != libc::O_RDONLY)
            .custom_flags(flags & !libc::O_ACCMODE)
            .open(path)
            .unwrap()
    }

    #[test]
    fn fifo_ends_get_a_path_entry_each_and_the_bytes_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let rw = open(&path, libc::O_RDWR);
        let r = open(&path, libc::O_RDONLY | libc::O_NONBLOCK);
        let mut w = open(&path, libc::O_WRONLY);
        w.write_all(b"in the fifo").unwrap();
        let r2 = r.try_clone().unwrap();
        let me = std::process::id() as i32;
        let table = std::sync::Mutex::new(FileTable::new(Default::default()));
        let mut ids = Vec::new();
        for f in [&rw, &r, &w, &r2] {
            let meta = std::fs::metadata(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
            let e = dump_fifo_fd(me, f.as_raw_fd(), &path, false, &meta, &table).unwrap();
            assert_eq!(e.r#type, FdTypes::Fifo as i32);
            ids.push(e.id);
        }
        assert_eq!(ids[1], ids[3], "a dup shares its description");
        assert_ne!(ids[0], ids[1]);
        let t = table.into_inner().unwrap();
        // Three descriptions, each a fifo entry and a path entry.
        assert_eq!(t.entries().len(), 6);
        for &id in &ids[..3] {
            let e = t.entries().iter().find(|e| e.id == id).unwrap();
            let f = e.fifo.as_ref().unwrap();
            let reg_id = f.regf_id.unwrap();
            let reg = t.entries().iter().find(|e| e.id == reg_id).unwrap();
            let reg = reg.reg.as_ref().unwrap();
            assert_eq!(reg.name, path.to_str().unwrap());
            assert_eq!(
                u64::from(f.pipe_id),
                std::fs::metadata(&path)
                    .map(|m| { std::os::unix::fs::MetadataExt::ino(&m) & 0xffff_ffff })
                    .unwrap()
            );
        }
        let modes: Vec<u32> = ids[..3]
            .iter()
            .map(|&id| {
                let f = t.entries().iter().find(|e| e.id == id).unwrap();
                let reg_id = f.fifo.as_ref().unwrap().regf_id.unwrap();
                let reg = t.entries().iter().find(|e| e.id == reg_id).unwrap();
                reg.reg.as_ref().unwrap().flags & libc::O_ACCMODE as u32
            })
            .collect();
        assert_eq!(
            modes,
            [
                libc::O_RDWR as u32,
                libc::O_RDONLY as u32,
                libc::O_WRONLY as u32
            ]
        );
        assert_eq!(t.fifos.data().len(), 1);
        assert_eq!(t.fifos.data()[0].bytes, b"in the fifo");
    }
}
