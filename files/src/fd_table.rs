//! Fd tables shared between processes (CLONE_FILES without CLONE_THREAD). As in CRIU, a
//! process may share only its parent's table: it then gets the parent's files_id, and the
//! parent alone dumps the fds; restore makes it with CLONE_FILES.

use std::collections::HashMap;

use crate::table::FilesError;

#[derive(Debug, Default)]
pub struct FdTables {
    /// One process per distinct table seen so far, with the table's files_id.
    tables: Vec<(i32, u32)>,
    /// The files_id of every process seen so far.
    files_of: HashMap<i32, u32>,
}

impl FdTables {
    /// Call for each live process, parents before children. The parent's files_id when `pid`
    /// shares the table of `parent`; None when its table is its own (it keeps `own_id`).
    pub fn shared_with_parent(
        &mut self,
        pid: i32,
        parent: Option<i32>,
        own_id: u32,
    ) -> Result<Option<u32>, FilesError> {
        for &(other, files_id) in &self.tables {
            let same =
                criu_sys::kcmp::same_fd_table(other, pid).map_err(|e| FilesError::Other {
                    pid,
                    what: format!("cannot compare its fd table with pid {other}'s (kcmp): {e}"),
                })?;
            if !same {
                continue;
            }
            let parent_id = parent.and_then(|p| self.files_of.get(&p).copied());
            if parent_id != Some(files_id) {
                return Err(FilesError::Other {
                    pid,
                    what: format!(
                        "shares its fd table with pid {other}, which is not its parent: not supported"
                    ),
                });
            }
            self.files_of.insert(pid, files_id);
            return Ok(Some(files_id));
        }
        self.tables.push((pid, own_id));
        self.files_of.insert(pid, own_id);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn_sleep() -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap()
    }

    #[test]
    fn separate_tables_keep_their_ids_and_a_shared_one_takes_the_parents() {
        let me = std::process::id() as i32;
        let mut child = spawn_sleep();
        let kid = child.id() as i32;
        let mut t = FdTables::default();
        let a = t.shared_with_parent(me, None, 1);
        let b = t.shared_with_parent(kid, Some(me), 2);
        // Our own pid again stands in for a child made with CLONE_FILES.
        let c = t.shared_with_parent(me, Some(me), 3);
        let d = t.shared_with_parent(me, Some(kid), 4);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(a.unwrap(), None);
        assert_eq!(b.unwrap(), None);
        assert_eq!(c.unwrap(), Some(1));
        let err = d.unwrap_err().to_string();
        assert!(err.contains("not its parent"), "{err}");
    }
}
