//! Open files of a dump: one table of file ids shared by every task (CRIU numbers all files
//! from one counter), regular files, `/dev/null` and other memory char devices as regular
//! files, and the "special" files (exe, cwd, root, mapped files), which share an id per inode.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use criu_procfs::FdTarget;
use criu_proto::images::{FdTypes, FdinfoEntry, FileEntry, FownEntry, RegFileEntry};

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("pid {pid}: cannot read {what}: {source}")]
    Proc { pid: i32, what: String, source: criu_procfs::ProcError },
    #[error("pid {pid}: cannot stat {path}: {source}")]
    Stat { pid: i32, path: String, source: std::io::Error },
    #[error("pid {pid}: fd {fd}: {kind} is not supported by this dump")]
    Unsupported { pid: i32, fd: i32, kind: String },
    #[error("pid {pid}: {what} {path} is a deleted file, which this dump does not support")]
    Deleted { pid: i32, what: String, path: String },
}

/// Char device major of /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom.
const MEM_MAJOR: u32 = 1;

/// Every file description of the dump, numbered as CRIU does (from 1).
#[derive(Debug, Default)]
pub struct FileTable {
    next_id: u32,
    special: HashMap<(u64, u64), u32>,
    entries: Vec<FileEntry>,
}

impl FileTable {
    pub fn new() -> FileTable {
        FileTable { next_id: 1, ..Default::default() }
    }

    fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The id of a file reached without an fd (exe, cwd, root, a mapping): one per inode.
    pub fn special(&mut self, path: &Path, st: FileStat) -> u32 {
        let key = (st.dev, st.ino);
        if let Some(&id) = self.special.get(&key) {
            return id;
        }
        let id = self.take_id();
        self.special.insert(key, id);
        self.entries.push(reg_entry(id, path, 0, 0, None, st));
        id
    }

    /// A regular file (or memory char device) open on an fd: a new description.
    pub fn regular(&mut self, path: &Path, flags: u32, pos: u64, mnt_id: i32, st: FileStat) -> u32 {
        let id = self.take_id();
        self.entries.push(reg_entry(id, path, flags, pos, Some(mnt_id), st));
        id
    }

    pub fn entries(&self) -> &[FileEntry] {
        &self.entries
    }
}

/// The parts of `stat` a file entry keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub size: u64,
}

impl FileStat {
    pub fn of(meta: &std::fs::Metadata) -> FileStat {
        FileStat { dev: meta.dev(), ino: meta.ino(), mode: meta.mode(), size: meta.size() }
    }
}

fn reg_entry(id: u32, path: &Path, flags: u32, pos: u64, mnt_id: Option<i32>, st: FileStat) -> FileEntry {
    let reg = RegFileEntry {
        id,
        flags,
        pos,
        fown: FownEntry::default(),
        name: path.to_string_lossy().into_owned(),
        mnt_id,
        size: Some(st.size),
        mode: Some(st.mode),
        ..Default::default()
    };
    FileEntry { r#type: FdTypes::Reg as i32, id, reg: Some(reg), ..Default::default() }
}

/// Stat of what `/proc/PID/<name>` (a magic link) points at.
pub fn proc_link_meta(pid: i32, name: &str) -> Result<(PathBuf, std::fs::Metadata), FilesError> {
    let link = PathBuf::from(format!("/proc/{pid}/{name}"));
    let shown = link.display().to_string();
    let target = std::fs::read_link(&link).map_err(|source| FilesError::Stat { pid, path: shown.clone(), source })?;
    if let Some(p) = target.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        return Err(FilesError::Deleted { pid, what: name.to_string(), path: p.to_string() });
    }
    let meta = std::fs::metadata(&link).map_err(|source| FilesError::Stat { pid, path: shown, source })?;
    Ok((target, meta))
}

/// What a task's fd table becomes: `fdinfo` entries referring to ids in the table.
pub fn dump_fds(pid: i32, table: &std::sync::Mutex<FileTable>) -> Result<Vec<FdinfoEntry>, FilesError> {
    let fds = criu_procfs::read_fds(pid).map_err(|source| FilesError::Proc { pid, what: "fd list".into(), source })?;
    let mut out = Vec::with_capacity(fds.len());
    for (fd, target) in fds {
        let path = match target {
            FdTarget::Path { deleted: true, path } => {
                return Err(FilesError::Deleted { pid, what: format!("fd {fd}"), path: path.display().to_string() })
            }
            FdTarget::Path { path, .. } => path,
            FdTarget::Pipe(ino) => return Err(FilesError::Unsupported { pid, fd, kind: format!("pipe:[{ino}]") }),
            FdTarget::Socket(ino) => return Err(FilesError::Unsupported { pid, fd, kind: format!("socket:[{ino}]") }),
            FdTarget::AnonInode(name) => return Err(FilesError::Unsupported { pid, fd, kind: format!("anon_inode:{name}") }),
            FdTarget::Typed { kind, ino } => return Err(FilesError::Unsupported { pid, fd, kind: format!("{kind}:[{ino}]") }),
            FdTarget::Other(s) => return Err(FilesError::Unsupported { pid, fd, kind: s }),
        };
        let link = format!("/proc/{pid}/fd/{fd}");
        let meta = std::fs::metadata(&link).map_err(|source| FilesError::Stat { pid, path: link.clone(), source })?;
        let ft = meta.file_type();
        let is_mem_chr = std::os::unix::fs::FileTypeExt::is_char_device(&ft) && libc::major(meta.rdev()) == MEM_MAJOR;
        if !(ft.is_file() || ft.is_dir() || is_mem_chr) {
            let kind = if std::os::unix::fs::FileTypeExt::is_char_device(&ft) {
                format!("character device {} ({}:{})", path.display(), libc::major(meta.rdev()), libc::minor(meta.rdev()))
            } else {
                format!("special file {}", path.display())
            };
            return Err(FilesError::Unsupported { pid, fd, kind });
        }
        let info = criu_procfs::read_fdinfo(pid, fd).map_err(|source| FilesError::Proc { pid, what: format!("fdinfo of fd {fd}"), source })?;
        let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
        let flags = info.flags & !(libc::O_CLOEXEC as u32);
        let id = table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .regular(&path, flags, info.pos.max(0) as u64, info.mnt_id, FileStat::of(&meta));
        out.push(FdinfoEntry {
            id,
            flags: u32::from(cloexec), // FD_CLOEXEC
            r#type: FdTypes::Reg as i32,
            fd: fd as u32,
            xattr_security_selinux: None,
        });
    }
    out.sort_by_key(|e| e.fd);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_files_share_one_id_per_inode() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"x").unwrap();
        let meta = FileStat::of(&std::fs::metadata(&a).unwrap());
        let mut t = FileTable::new();
        let id1 = t.special(&a, meta);
        let id2 = t.special(&a, meta);
        let id3 = t.regular(&a, 2, 1, 5, meta);
        assert_eq!((id1, id2, id3), (1, 1, 2));
        assert_eq!(t.entries().len(), 2);
        let reg = t.entries()[1].reg.as_ref().unwrap();
        assert_eq!((reg.flags, reg.pos, reg.mnt_id, reg.size), (2, 1, Some(5), Some(1)));
    }
}
