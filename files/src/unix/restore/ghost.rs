//! A socket bound to a path whose file was removed (its name is still what getsockname shows
//! and what its clients connected to): the name is made to exist just long enough to bind it
//! and connect its clients, in directories made for the moment if they are gone too, and with
//! any file now at that path moved aside meanwhile.

use std::path::{Path, PathBuf};

use criu_proto::images::UnixSkEntry;

use super::{fail, name_path, UnixRestoreError};
use crate::root::FsRoot;

/// Runs `work` (bind, refill, connects) while the removed name of `g` may be bound, then
/// removes the socket file again and puts back what was there.
pub fn bound_for_a_while(
    g: &UnixSkEntry,
    root: &FsRoot,
    work: impl FnOnce() -> Result<(), UnixRestoreError>,
) -> Result<(), UnixRestoreError> {
    let path = name_path(g).ok_or_else(|| fail(g.ino, "removed name is not a path"))?;
    // The name as criu reaches it; `work` binds the task's own.
    let path = root.resolve(path);
    let io = |what: &'static str, p: &Path| {
        let shown = p.display().to_string();
        move |err: std::io::Error| fail(g.ino, format!("{what} {shown}: {err}"))
    };
    let made_dirs = make_parents(&path).map_err(io("create the directories of", &path))?;
    let aside = path.with_extension("criu-aside");
    let moved = std::fs::symlink_metadata(&path).is_ok();
    if moved {
        std::fs::rename(&path, &aside).map_err(io("move aside", &path))?;
    }
    let done = work();
    let _ = std::fs::remove_file(&path);
    if moved {
        std::fs::rename(&aside, &path).map_err(io("put back", &path))?;
    }
    for dir in made_dirs.iter().rev() {
        let _ = std::fs::remove_dir(dir);
    }
    done
}

/// Creates the missing parents of `path`; returns those it created, outermost first.
fn make_parents(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut dir = path.parent();
    while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d.to_path_buf());
        dir = d.parent();
    }
    missing.reverse();
    for d in &missing {
        std::fs::create_dir(d)?;
    }
    Ok(missing)
}
