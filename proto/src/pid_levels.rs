//! Tasks in pid namespaces nested below the root's, as a restore uses them: each one's ids at
//! every level (`pid-levels.img`, criu-rs's own; written by the ns crate's dump half). A tree
//! without nested pid namespaces has no such image, and every id is the one pstree.img gives.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::dump_images::ImagesError;
use crate::images::{PidLevelsEntry, PstreeEntry};
use crate::{ImageKind, ImageReader};

/// The ids below the root's pid namespace, by the id the images give a task or thread.
#[derive(Debug, Clone, Default)]
pub struct PidLevels {
    inner: BTreeMap<i32, Vec<i32>>,
    /// A task whose children are born in another pid namespace than its own: that one's init.
    children_of: BTreeMap<i32, i32>,
}

impl PidLevels {
    /// Reads `pid-levels.img` if the dump wrote one, checked against the tree.
    pub fn read(dir: &Path, pstree: &[PstreeEntry]) -> Result<PidLevels, ImagesError> {
        let Some(mut img) = ImageReader::open_if_exists(dir, &ImageKind::PID_LEVELS, None)? else {
            return Ok(PidLevels::default());
        };
        let entries = img.read_all::<PidLevelsEntry>()?;
        let levels = PidLevels {
            inner: entries
                .iter()
                .filter(|e| !e.inner.is_empty())
                .map(|e| (e.pid as i32, e.inner.iter().map(|&p| p as i32).collect()))
                .collect(),
            children_of: entries
                .iter()
                .filter_map(|e| Some((e.pid as i32, e.children_of? as i32)))
                .collect(),
        };
        levels.check(pstree)?;
        Ok(levels)
    }

    /// A hostile or damaged image stops here: ids in range, each naming a task or thread of
    /// the tree, threads as deep as their leader, no child above its parent, and each
    /// `children_of` naming the init of a nested namespace.
    fn check(&self, pstree: &[PstreeEntry]) -> Result<(), ImagesError> {
        let bad = |what: String| Err(ImagesError::Tree(format!("pid-levels.img: {what}")));
        let mut known = BTreeSet::new();
        for p in pstree {
            known.insert(p.pid as i32);
            known.extend(p.threads.iter().map(|&t| t as i32));
        }
        for (&pid, inner) in &self.inner {
            if !known.contains(&pid) {
                return bad(format!("{pid} is no task or thread of the tree"));
            }
            if inner
                .iter()
                .any(|&p| p < 1 || p > super::dump_images::PID_MAX_LIMIT as i32)
            {
                return bad(format!("{pid}: ids {inner:?} out of range"));
            }
        }
        for p in pstree {
            let depth = self.depth(p.pid as i32);
            if let Some(t) = p.threads.iter().find(|&&t| self.depth(t as i32) != depth) {
                return bad(format!(
                    "thread {t} of {} is not in its pid namespace",
                    p.pid
                ));
            }
            if p.ppid != 0 && depth < self.depth(p.ppid as i32) {
                return bad(format!(
                    "{} is in a pid namespace above its parent's",
                    p.pid
                ));
            }
        }
        for (&pid, &init) in &self.children_of {
            if !known.contains(&pid) || !self.is_init(init) {
                return bad(format!(
                    "{pid}: its children's namespace has no init {init}"
                ));
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty() && self.children_of.is_empty()
    }

    /// How many pid namespaces below the root's `id` lives.
    pub fn depth(&self, id: i32) -> usize {
        self.inner.get(&id).map_or(0, Vec::len)
    }

    /// The id of `id` in the namespace `depth` levels below the root's (0: the root's).
    pub fn seen_at(&self, id: i32, depth: usize) -> Option<i32> {
        match depth {
            0 => Some(id),
            d => self.inner.get(&id)?.get(d - 1).copied(),
        }
    }

    /// The id `id` sees itself by.
    pub fn own(&self, id: i32) -> i32 {
        self.inner
            .get(&id)
            .and_then(|v| v.last())
            .copied()
            .unwrap_or(id)
    }

    /// clone3's `set_tid` for `id`: its own id first, the root's namespace's last.
    pub fn set_tid(&self, id: i32) -> Vec<i32> {
        let mut ids = self.inner.get(&id).cloned().unwrap_or_default();
        ids.reverse();
        ids.push(id);
        ids
    }

    /// `id` is the init (pid 1) of a namespace nested below the root's.
    pub fn is_init(&self, id: i32) -> bool {
        self.inner.get(&id).and_then(|v| v.last()) == Some(&1)
    }

    /// The init of the pid namespace the children of `pid` are born in, if not its own.
    pub fn children_of(&self, pid: i32) -> Option<i32> {
        self.children_of.get(&pid).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(pid: u32, ppid: u32, threads: &[u32]) -> PstreeEntry {
        PstreeEntry {
            pid,
            ppid,
            pgid: pid,
            sid: pid,
            threads: threads.to_vec(),
        }
    }

    fn levels(inner: &[(i32, &[i32])], children_of: &[(i32, i32)]) -> PidLevels {
        PidLevels {
            inner: inner.iter().map(|(p, v)| (*p, v.to_vec())).collect(),
            children_of: children_of.iter().copied().collect(),
        }
    }

    #[test]
    fn ids_at_every_level_and_clone3s_order() {
        // 10 (root's namespace) made 11, init of a namespace where 12 is pid 2 with thread 13.
        let l = levels(&[(11, &[1]), (12, &[2]), (13, &[3])], &[(10, 11)]);
        let tree = [task(10, 0, &[]), task(11, 10, &[]), task(12, 10, &[12, 13])];
        l.check(&tree).unwrap();
        assert_eq!(l.set_tid(12), [2, 12]);
        assert_eq!(l.set_tid(10), [10]);
        assert_eq!((l.depth(10), l.depth(13)), (0, 1));
        assert_eq!((l.own(13), l.own(10)), (3, 10));
        assert_eq!(l.seen_at(12, 1), Some(2));
        assert_eq!(l.seen_at(12, 0), Some(12));
        assert!(l.is_init(11) && !l.is_init(12));
        assert_eq!(l.children_of(10), Some(11));
    }

    #[test]
    fn hostile_levels_are_refused() {
        let tree = [task(10, 0, &[]), task(11, 10, &[11, 12])];
        let err = |l: PidLevels| l.check(&tree).unwrap_err().to_string();
        assert!(err(levels(&[(99, &[1])], &[])).contains("99 is no task"));
        assert!(err(levels(&[(11, &[0]), (12, &[2])], &[])).contains("out of range"));
        assert!(err(levels(&[(11, &[1])], &[])).contains("thread 12 of 11"));
        assert!(err(levels(&[(10, &[1])], &[])).contains("above its parent"));
        assert!(err(levels(&[], &[(10, 11)])).contains("no init 11"));
    }
}
