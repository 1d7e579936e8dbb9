//! Regular files (and memory char devices such as /dev/null) at restore: each description a
//! task's fds name is opened once, in criu, at its offset; every holder takes a copy, so fds
//! shared by dup or fork share one offset again.

use std::os::fd::OwnedFd;

use criu_proto::images::{FdTypes, RegFileEntry};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use criu_tracee::remote::Remote;
use criu_tracee::TraceeError;

use crate::registry::{RestoreFileOptions, SharedError, SharedFiles};
use crate::root::FsRoot;
use criu_proto::dump_images::DumpImages;

/// O_TMPFILE without the O_DIRECTORY it carries.
const TMPFILE_BIT: i32 = libc::O_TMPFILE & !libc::O_DIRECTORY;

/// Flags that only mean something when a file is first created; never replayed.
const CREATION_FLAGS: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY;

pub fn open_all(
    images: &DumpImages,
    opts: &RestoreFileOptions,
    shared: &mut SharedFiles,
) -> Result<(), SharedError> {
    for (id, reg) in shared.to_make(images, FdTypes::Reg, "reg", |f| f.reg.as_ref())? {
        if in_restored_proc(images, &reg.name) {
            continue;
        }
        let fd = open(&shared.root, reg)?;
        check_unchanged(reg, &fd, opts.skip_file_rwx_check)?;
        shared.restore_fown(id, &fd, &reg.fown)?;
        shared.add_description(id, fd);
    }
    check_specials(images, opts, &shared.root)
}

/// The files tasks reach without an fd (exe, cwd, root, file mappings) are opened inside the
/// tasks later; they are checked here first, so that a changed one fails the restore before
/// any task exists.
fn check_specials(
    images: &DumpImages,
    opts: &RestoreFileOptions,
    root: &FsRoot,
) -> Result<(), SharedError> {
    use criu_memory::vma::{VMA_AREA_MEMFD, VMA_FILE_PRIVATE, VMA_FILE_SHARED};
    let mut ids = std::collections::BTreeSet::new();
    for t in images.tasks.iter().filter(|t| t.zombie.is_none()) {
        ids.extend([t.mm.exe_file_id, t.fs.cwd_id, t.fs.root_id]);
        let file_vmas = t.mm.vmas.iter().filter(|v| {
            v.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0 && v.status & VMA_AREA_MEMFD == 0
        });
        ids.extend(file_vmas.map(|v| v.shmid as u32));
    }
    for id in ids {
        let Some(reg) = images.files.get(&id).and_then(|f| f.reg.as_ref()) else {
            continue;
        };
        let fd = nix::fcntl::open(
            &root.resolve(&reg.name),
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| SharedError::File {
            id,
            path: reg.name.clone(),
            what: "open",
            errno,
        })?;
        check_unchanged(reg, &fd, opts.skip_file_rwx_check)?;
    }
    Ok(())
}

/// Whether `path` lies under /proc/PID of a task being restored: such a file cannot be opened
/// before the task exists (nor, for fdinfo, before its fds are back), so the task opens it
/// itself, after its other fds (see `open_in_task`).
pub fn in_restored_proc(images: &DumpImages, path: &str) -> bool {
    let Some(pid) = path
        .strip_prefix("/proc/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return false;
    };
    images
        .tasks
        .iter()
        .any(|t| t.pstree.pid == pid || t.pstree.threads.contains(&pid))
}

/// Opens `reg` inside the task, at its offset; returns the task's new fd.
pub fn open_in_task(r: &mut Remote, reg: &RegFileEntry) -> Result<u64, TraceeError> {
    let flags = reg.flags as i32 & !(CREATION_FLAGS | TMPFILE_BIT) | libc::O_CLOEXEC;
    let fd = r.open(&reg.name, flags)?;
    if reg.pos != 0 && reg.flags & libc::O_PATH as u32 == 0 {
        r.call(
            "lseek",
            libc::SYS_lseek,
            &[fd, reg.pos, libc::SEEK_SET as u64],
        )?;
    }
    Ok(fd)
}

/// Opens `reg` again (its name seen from `root`) with its flags and puts the offset back.
pub fn open(root: &FsRoot, reg: &RegFileEntry) -> Result<OwnedFd, SharedError> {
    let err = |what: &'static str| {
        let path = reg.name.clone();
        move |errno: nix::errno::Errno| SharedError::File {
            id: reg.id,
            path,
            what,
            errno,
        }
    };
    let mut flags = reg.flags as i32 & !CREATION_FLAGS;
    // A file made with O_TMPFILE comes back as a ghost file: opened by name like any other.
    if flags & TMPFILE_BIT != 0 {
        flags &= !(TMPFILE_BIT | libc::O_DIRECTORY);
    }
    let flags = OFlag::from_bits_retain(flags | libc::O_CLOEXEC);
    let fd =
        nix::fcntl::open(&root.resolve(&reg.name), flags, Mode::empty()).map_err(err("open"))?;
    if reg.pos != 0 && reg.flags & libc::O_PATH as u32 == 0 {
        nix::unistd::lseek(&fd, reg.pos as i64, nix::unistd::Whence::SeekSet)
            .map_err(err("lseek"))?;
    }
    Ok(fd)
}

/// As CRIU does: a regular file whose size differs from the dump's, or whose type or mode
/// differs (permission bits aside with `--skip-file-rwx-check`), is not the file the task had.
pub fn check_unchanged(
    reg: &RegFileEntry,
    fd: &OwnedFd,
    skip_rwx: bool,
) -> Result<(), SharedError> {
    let changed = |what: String| SharedError::Changed {
        id: reg.id,
        path: reg.name.clone(),
        what,
    };
    if reg.size.is_none() && reg.mode.is_none() {
        return Ok(());
    }
    let st = nix::sys::stat::fstat(fd).map_err(|errno| SharedError::File {
        id: reg.id,
        path: reg.name.clone(),
        what: "fstat",
        errno,
    })?;
    if let Some(size) = reg.size {
        if st.st_size as u64 != size {
            return Err(changed(format!(
                "its size is {} bytes, the dump had {size}",
                st.st_size
            )));
        }
    }
    if let Some(mode) = reg.mode {
        let rwx = if skip_rwx { 0o777 } else { 0 };
        if st.st_mode & !rwx != mode & !rwx {
            return Err(changed(format!(
                "its mode is {:o}, the dump had {mode:o} (--skip-file-rwx-check ignores \
                 permission bits)",
                st.st_mode
            )));
        }
    }
    Ok(())
}
