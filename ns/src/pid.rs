//! pid namespaces: the root's has no image of its own (its pids are those in pstree.img, as
//! the root's namespace sees them). Namespaces nested below it, which CRIU does not dump,
//! are kept in `pid-levels.img`: every task and thread there with its ids at each level
//! below the root's, and each task whose children are born in another namespace than its own
//! (after `unshare(CLONE_NEWPID)`) with that namespace's init. The restore reads it into
//! [`criu_proto::dump_images::PidLevels`] and makes each task with clone3's `set_tid` at
//! every level.

use std::collections::BTreeMap;
use std::path::Path;

use criu_proto::images::PidLevelsEntry;
use criu_proto::{ImageKind, ImageWriter};

use crate::error::{image, NsImageError};
use crate::tree::TreeNamespaces;

const KIND: &str = "pid";

/// How a dump names a task: by its id at `depth` in the NSpid lists criu reads (the root's
/// pid namespace), and, with `nested`, also by its ids in the namespaces below.
#[derive(Debug, Clone, Copy, Default)]
pub struct PidView {
    pub depth: usize,
    /// The tree has pid namespaces nested below the root's.
    pub nested: bool,
}

impl PidView {
    /// Whether criu's pids are the tree's own (no status to read).
    pub fn is_criu_view(&self) -> bool {
        self.depth == 0 && !self.nested
    }
}

/// A task as the dump wrote it: criu's pid, its pid in the images, and each of its threads
/// (leader first) with its ids below the root's namespace (none when it lives in the root's).
pub struct DumpedPids<'a> {
    pub host: i32,
    pub pid: i32,
    pub threads: &'a [(i32, Vec<i32>)],
}

/// Writes `pid-levels.img` when the tree has nested pid namespaces; nothing otherwise.
pub fn dump_levels<'a>(
    tree: &TreeNamespaces,
    tasks: impl IntoIterator<Item = DumpedPids<'a>>,
    dir: &Path,
) -> Result<(), NsImageError> {
    let nested = tree.nested_pids();
    if nested.inits.is_empty() {
        return Ok(());
    }
    let tasks: Vec<DumpedPids> = tasks.into_iter().collect();
    let by_host: BTreeMap<i32, i32> = tasks.iter().map(|t| (t.host, t.pid)).collect();
    // Each namespace's init as the images name it.
    let init_of = |ino: u64| {
        nested
            .inits
            .get(&ino)
            .copied()
            .flatten()
            .and_then(|host| by_host.get(&host).copied())
    };
    let mut w = ImageWriter::create(dir, &ImageKind::PID_LEVELS, None).map_err(image(KIND))?;
    for t in &tasks {
        let children_of = match nested.children_in.get(&t.host) {
            Some(&ino) => Some(init_of(ino).ok_or_else(|| NsImageError::Bad {
                kind: KIND,
                what: format!(
                    "pid {}: the init of the pid namespace of its children is gone",
                    t.host
                ),
            })?),
            None => None,
        };
        for (i, (tid, inner)) in t.threads.iter().enumerate() {
            let children_of = if i == 0 { children_of } else { None };
            if inner.is_empty() && children_of.is_none() {
                continue;
            }
            w.write(&PidLevelsEntry {
                pid: *tid as u32,
                inner: inner.iter().map(|&p| p as u32).collect(),
                children_of: children_of.map(|p| p as u32),
            })
            .map_err(image(KIND))?;
        }
    }
    w.finish().map_err(image(KIND))?;
    Ok(())
}
