//! Remapped files at restore (see dump/ghost.rs): before anything opens files, each ghost file
//! is made again from its image, at its old path or, when that is taken, at a name next to it,
//! and each link-remapped file is linked back under its old name. The file entries are pointed
//! at those names, so every opener (fds, mappings, exe, cwd) finds the same inode. Once every
//! task has opened its files the names are removed: the files are unlinked again, as they were.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use criu_proto::images::{GhostChunkEntry, GhostFileEntry, RemapFilePathEntry, RemapType};
use criu_proto::{ImageKind, ImageReader};

use criu_proto::dump_images::DumpImages;

use crate::root::FsRoot;

/// Old images marked a ghost remap by this bit of `remap_id` instead of `remap_type`.
const OLD_GHOST_BIT: u32 = 0x8000_0000;

#[derive(Debug, thiserror::Error)]
pub enum GhostError {
    #[error(transparent)]
    Image(#[from] criu_proto::Error),
    #[error("remap-fpath.img: file {0} is not a regular file in files.img")]
    NoFile(u32),
    #[error("remap-fpath.img: file {id}: remap type {kind} is not supported")]
    Kind { id: u32, kind: i32 },
    #[error("cannot make a process with pid {pid} to open /proc/{pid} again: {errno}")]
    DeadProcess { pid: i32, errno: nix::errno::Errno },
    #[error("ghost file {id} for {path}: {what}: {source}")]
    Ghost {
        id: u32,
        path: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{0}: no ghost file entry")]
    Empty(String),
    #[error("ghost file {id}: unsupported file mode {mode:o}")]
    Mode { id: u32, mode: u32 },
    #[error("cannot make room for the remapped file {path} in the tree's root: {source}")]
    Room {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot link {from} back as {to}: {source}")]
    Link {
        from: String,
        to: String,
        source: std::io::Error,
    },
}

/// Names made for the restore, removed once every task has its files.
#[derive(Debug, Default)]
pub struct Remaps {
    /// (path as criu reaches it, is a directory), in the order made.
    made: Vec<(PathBuf, bool)>,
    /// Names chosen but not made yet: the tree's own root exists only once its root task does
    /// (see `make_pending`).
    pending: Vec<Pending>,
    /// Files moved aside from a name made (as criu reaches them): (where now, where they were).
    aside: Vec<(PathBuf, PathBuf)>,
    /// Dead pids whose /proc files the tasks held: helpers hold them while criu opens those.
    dead_pids: Vec<i32>,
    helpers: super::dead_pids::DeadPids,
}

impl Remaps {
    /// Removes every name made and ends every helper process; the open files stay, unlinked
    /// (or of a dead process) as they were at dump time.
    pub fn clean(&mut self) {
        self.helpers.end();
        for (path, dir) in self.made.drain(..).rev() {
            let done = if dir {
                std::fs::remove_dir(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if let Err(e) = done {
                tracing::warn!("cannot remove remapped file {}: {e}", path.display());
            }
        }
        for (now, was) in self.aside.drain(..).rev() {
            if let Err(e) = std::fs::rename(&now, &was) {
                tracing::warn!(
                    "cannot move {} back to {}: {e}",
                    now.display(),
                    was.display()
                );
            }
        }
    }

    /// Makes room at the task's `at` (seen from `root`): its missing directories are made and
    /// whatever is there is moved aside, all undone by `clean`. Used where the name was chosen
    /// before the tree's root could be looked at.
    fn make_room(&mut self, root: &FsRoot, at: &Path) -> std::io::Result<()> {
        let at = root.resolve(at);
        let mut missing = Vec::new();
        let mut dir = at.parent();
        while let Some(d) = dir.filter(|d| std::fs::symlink_metadata(d).is_err()) {
            missing.push(d.to_path_buf());
            dir = d.parent();
        }
        for d in missing.into_iter().rev() {
            std::fs::create_dir(&d)?;
            self.made.push((d, true));
        }
        if std::fs::symlink_metadata(&at).is_ok() {
            let mut aside = at.clone().into_os_string();
            aside.push(".criu-aside");
            std::fs::rename(&at, &aside)?;
            self.aside.push((aside.into(), at));
        }
        Ok(())
    }
}

/// A remapped name to make once the tree's root exists (task paths).
#[derive(Debug)]
enum Pending {
    Ghost { id: u32, at: PathBuf },
    Link { linked: PathBuf, to: PathBuf },
}

impl Remaps {
    /// Makes the names `prepare` left for later, through the tree's `root`, and the helpers
    /// of dead pids in the pid namespace of `tree_root` (the root task, as criu sees it); `dir`:
    /// the images.
    pub fn make_pending(
        &mut self,
        dir: &Path,
        root: &FsRoot,
        tree_root: i32,
    ) -> Result<(), GhostError> {
        self.helpers = super::dead_pids::DeadPids::make(&self.dead_pids, tree_root)
            .map_err(|(pid, errno)| GhostError::DeadProcess { pid, errno })?;
        for p in std::mem::take(&mut self.pending) {
            let at = match &p {
                Pending::Ghost { at, .. } => at,
                Pending::Link { to, .. } => to,
            };
            self.make_room(root, at)
                .map_err(|source| GhostError::Room {
                    path: at.display().to_string(),
                    source,
                })?;
            match p {
                Pending::Ghost { id, at } => make_ghost(dir, id, root, &at, self)?,
                Pending::Link { linked, to } => link_back(root, &linked, &to, self)?,
            }
        }
        Ok(())
    }
}

impl Drop for Remaps {
    fn drop(&mut self) {
        self.clean();
    }
}

/// Makes every remapped file reachable again and points its file entries at it. With
/// `own_root` the tree's root is not there yet: the names are chosen without looking (the old
/// name unless a file the tree holds has it) and made later by `Remaps::make_pending`.
pub fn prepare(images: &mut DumpImages, own_root: bool) -> Result<Remaps, GhostError> {
    let mut remaps = Remaps::default();
    let Some(mut img) = ImageReader::open_if_exists(&images.dir, &ImageKind::REMAP_FPATH, None)?
    else {
        return Ok(remaps);
    };
    let entries = img.read_all::<RemapFilePathEntry>()?;
    // Names of files the tree holds that are not remapped: a remap cannot take them.
    let remapped: std::collections::HashSet<u32> = entries.iter().map(|e| e.orig_id).collect();
    let held: std::collections::HashSet<String> = images
        .files
        .values()
        .filter(|f| !remapped.contains(&f.id))
        .filter_map(|f| Some(f.reg.as_ref()?.name.clone()))
        .collect();
    // Without a look at the tree's root: the old name unless a held file has it.
    let chosen = |orig: &Path, suffix: &str| match held.contains(&*orig.to_string_lossy()) {
        true => with_suffix(orig, suffix),
        false => orig.to_path_buf(),
    };
    let mut ghosts: HashMap<u32, PathBuf> = HashMap::new();
    for e in entries {
        let (remap_id, kind) = match e.remap_type {
            Some(k) => (e.remap_id, k),
            None if e.remap_id & OLD_GHOST_BIT != 0 => {
                (e.remap_id & !OLD_GHOST_BIT, RemapType::Ghost as i32)
            }
            None => (e.remap_id, RemapType::Linked as i32),
        };
        let orig = images
            .reg_path(e.orig_id)
            .ok_or(GhostError::NoFile(e.orig_id))?
            .to_string();
        let orig = Path::new(&orig);
        let now = if kind == RemapType::Ghost as i32 {
            match ghosts.get(&remap_id) {
                Some(p) => p.clone(),
                None => {
                    let suffix = format!(".cr.{remap_id:x}.ghost");
                    let at = if own_root {
                        let at = chosen(orig, &suffix);
                        let pending = Pending::Ghost {
                            id: remap_id,
                            at: at.clone(),
                        };
                        remaps.pending.push(pending);
                        at
                    } else {
                        let at = free_name(orig, &suffix);
                        make_ghost(&images.dir, remap_id, &FsRoot::default(), &at, &mut remaps)?;
                        at
                    };
                    ghosts.insert(remap_id, at.clone());
                    at
                }
            }
        } else if kind == RemapType::Procfs as i32 {
            // One helper per dead pid, however many of its files the tasks held; made once the
            // root exists (`make_pending`).
            let pid = remap_id as i32;
            if !remaps.dead_pids.contains(&pid) {
                remaps.dead_pids.push(pid);
            }
            orig.to_path_buf()
        } else if kind == RemapType::Linked as i32 {
            let linked = PathBuf::from(
                images
                    .reg_path(remap_id)
                    .ok_or(GhostError::NoFile(remap_id))?,
            );
            if own_root {
                let to = chosen(orig, ".cr_link");
                let pending = Pending::Link {
                    linked,
                    to: to.clone(),
                };
                remaps.pending.push(pending);
                to
            } else {
                let to = free_name(orig, ".cr_link");
                link_back(&FsRoot::default(), &linked, &to, &mut remaps)?;
                to
            }
        } else {
            return Err(GhostError::Kind {
                id: e.orig_id,
                kind,
            });
        };
        if let Some(reg) = images
            .files
            .get_mut(&e.orig_id)
            .and_then(|f| f.reg.as_mut())
        {
            reg.name = now.to_string_lossy().into_owned();
        }
    }
    Ok(remaps)
}

/// `orig` with `suffix` added to its file name.
fn with_suffix(orig: &Path, suffix: &str) -> PathBuf {
    let mut name = orig.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// `orig` if that name is free, else a name next to it (in the nearest directory that exists).
fn free_name(orig: &Path, suffix: &str) -> PathBuf {
    let free = |p: &Path| std::fs::symlink_metadata(p).is_err();
    let parent_ok = orig.parent().is_some_and(Path::is_dir);
    if parent_ok && free(orig) {
        return orig.to_path_buf();
    }
    let base = orig
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut dir = orig.parent().unwrap_or(Path::new("/"));
    while !dir.is_dir() {
        dir = dir.parent().unwrap_or(Path::new("/"));
    }
    dir.join(format!("{base}{suffix}"))
}

/// Links the link-remap file `linked` back as `to` (task paths, seen from `root`); both names
/// are removed after the restore.
fn link_back(
    root: &FsRoot,
    linked: &Path,
    to: &Path,
    remaps: &mut Remaps,
) -> Result<(), GhostError> {
    let (linked, to) = (root.resolve(linked), root.resolve(to));
    std::fs::hard_link(&linked, &to).map_err(|source| GhostError::Link {
        from: linked.display().to_string(),
        to: to.display().to_string(),
        source,
    })?;
    if !remaps.made.iter().any(|(p, _)| *p == linked) {
        remaps.made.push((linked, false));
    }
    remaps.made.push((to, false));
    Ok(())
}

/// Makes ghost file `id` again from its image at `at` (a task path, seen from `root`).
fn make_ghost(
    dir: &Path,
    id: u32,
    root: &FsRoot,
    at: &Path,
    remaps: &mut Remaps,
) -> Result<(), GhostError> {
    let mut img = ImageReader::open(dir, &ImageKind::GHOST_FILE, Some(u64::from(id)))?;
    let path = img.path().to_string();
    let g: GhostFileEntry = img.read()?.ok_or(GhostError::Empty(path))?;
    let at = root.resolve(at);
    let err = |what: &'static str| {
        let p = at.display().to_string();
        move |source| GhostError::Ghost {
            id,
            path: p,
            what,
            source,
        }
    };
    let perm = g.mode & 0o7777;
    match g.mode & libc::S_IFMT {
        libc::S_IFREG => {
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(perm)
                .open(&at)
                .map_err(err("create"))?;
            remaps.made.push((at.clone(), false));
            fill(&mut img, &file, &g).map_err(err("write contents"))?;
        }
        libc::S_IFDIR => {
            std::fs::DirBuilder::new()
                .mode(perm)
                .create(&at)
                .map_err(err("mkdir"))?;
            remaps.made.push((at.clone(), true));
        }
        libc::S_IFIFO | libc::S_IFCHR | libc::S_IFBLK => {
            let kind = nix::sys::stat::SFlag::from_bits_truncate(g.mode & libc::S_IFMT);
            let mode = nix::sys::stat::Mode::from_bits_truncate(perm);
            let rdev = u64::from(g.rdev.unwrap_or(0));
            nix::sys::stat::mknod(&at, kind, mode, rdev).map_err(|e| err("mknod")(e.into()))?;
            remaps.made.push((at.clone(), false));
        }
        libc::S_IFLNK => {
            let target = g
                .symlnk_target
                .as_deref()
                .ok_or(GhostError::Mode { id, mode: g.mode })?;
            std::os::unix::fs::symlink(target, &at).map_err(err("symlink"))?;
            remaps.made.push((at.clone(), false));
        }
        mode => return Err(GhostError::Mode { id, mode }),
    }
    apply_metadata(&at, &g).map_err(err("set owner, mode and times"))?;
    Ok(())
}

/// Writes the contents that follow the entry: chunks at their offsets (holes stay holes), or
/// everything to the end of the image.
fn fill<R: std::io::Read>(
    img: &mut ImageReader<R>,
    file: &std::fs::File,
    g: &GhostFileEntry,
) -> std::io::Result<()> {
    let bad = |e: criu_proto::Error| std::io::Error::other(e.to_string());
    if g.chunks != Some(true) {
        let data = img.read_to_end().map_err(bad)?;
        return (&*file).write_all(&data);
    }
    file.set_len(g.size.unwrap_or(0))?;
    while let Some(chunk) = img.read::<GhostChunkEntry>().map_err(bad)? {
        let mut done = 0u64;
        while done < chunk.len {
            let piece = (chunk.len - done).min(1 << 20);
            let data = img.read_payload(piece).map_err(bad)?;
            file.write_all_at(&data, chunk.off + done)?;
            done += piece;
        }
    }
    Ok(())
}

fn apply_metadata(path: &Path, g: &GhostFileEntry) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::lchown(path, Some(g.uid), Some(g.gid))?;
    // After chown, which clears set-id bits. A symlink has no mode of its own (chmod would
    // follow it).
    if g.mode & libc::S_IFMT != libc::S_IFLNK {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(g.mode & 0o7777))?;
    }
    if let (Some(a), Some(m)) = (g.atim, g.mtim) {
        let ts = |t: criu_proto::images::Timeval| {
            nix::sys::time::TimeSpec::new(t.tv_sec as i64, (t.tv_usec * 1000) as i64)
        };
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            path,
            &ts(a),
            &ts(m),
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_name_keeps_a_free_path_and_avoids_a_taken_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        assert_eq!(free_name(&p, ".x"), p);
        std::fs::write(&p, b"").unwrap();
        assert_eq!(free_name(&p, ".x"), dir.path().join("f.x"));
        let gone = dir.path().join("gone/deeper/f");
        assert_eq!(free_name(&gone, ".x"), dir.path().join("f.x"));
    }
}
