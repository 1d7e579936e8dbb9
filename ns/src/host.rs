//! The rule that stands until namespaces are dumped: a task must share every namespace with
//! criu, as CRIU refuses namespaces it does not handle.

use std::collections::BTreeSet;

use criu_procfs::{read_ns_links, NsLink};

#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("pid {pid}: cannot read its namespaces: {source}")]
    Read {
        pid: i32,
        source: criu_procfs::ProcError,
    },
    #[error(
        "pid {pid}: {what} is not criu's ({theirs} vs {ours}); dumping namespaces is not \
         supported yet"
    )]
    Foreign {
        pid: i32,
        what: String,
        theirs: String,
        ours: String,
    },
}

/// criu's own namespaces, read once, and the tasks already found to share them.
#[derive(Debug)]
pub struct HostNamespaces {
    ours: Vec<NsLink>,
    checked: BTreeSet<i32>,
}

impl HostNamespaces {
    pub fn read() -> Result<HostNamespaces, NsError> {
        let me = std::process::id() as i32;
        let ours = read_ns_links(me).map_err(|source| NsError::Read { pid: me, source })?;
        Ok(HostNamespaces {
            ours,
            checked: BTreeSet::new(),
        })
    }

    /// Fails naming the first namespace of `pid` that is not criu's own. A `*_for_children`
    /// link counts too: the task's future children would live in that namespace. Links the
    /// kernel does not show (a zombie's, a kind this kernel lacks) are not compared, nor a
    /// task that is gone; a task already checked is not read again.
    pub fn refuse_foreign(&mut self, pid: i32) -> Result<(), NsError> {
        if self.checked.contains(&pid) {
            return Ok(());
        }
        let theirs = match read_ns_links(pid) {
            Ok(links) => links,
            // Gone meanwhile (a tree that forks and exits): nothing of it is dumped.
            Err(_) if !std::path::Path::new(&format!("/proc/{pid}")).exists() => return Ok(()),
            Err(source) => return Err(NsError::Read { pid, source }),
        };
        compare(pid, &theirs, &self.ours)?;
        self.checked.insert(pid);
        Ok(())
    }
}

fn compare(pid: i32, theirs: &[NsLink], ours: &[NsLink]) -> Result<(), NsError> {
    for t in theirs {
        let mine = ours
            .iter()
            .find(|o| o.kind == t.kind && o.for_children == t.for_children);
        // criu's own *_for_children link is absent until it unshares: its own then stands.
        let mine = mine.or_else(|| {
            ours.iter()
                .find(|o| o.kind == t.kind && !o.for_children)
                .filter(|_| t.for_children)
        });
        let Some(mine) = mine else { continue };
        if mine.ino != t.ino {
            let kind = t.kind.name();
            let what = if t.for_children {
                format!("the {kind} namespace of its children ({kind}_for_children)")
            } else {
                format!("its {kind} namespace")
            };
            return Err(NsError::Foreign {
                pid,
                what,
                theirs: format!("{kind}:[{}]", t.ino),
                ours: format!("{kind}:[{}]", mine.ino),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use criu_procfs::NsKind;

    fn link(kind: NsKind, for_children: bool, ino: u64) -> NsLink {
        NsLink {
            kind,
            for_children,
            ino,
        }
    }

    #[test]
    fn same_namespaces_pass_and_a_different_one_is_named() {
        let ours = [link(NsKind::Uts, false, 1), link(NsKind::Pid, false, 2)];
        assert!(compare(7, &ours, &ours).is_ok());
        let theirs = [link(NsKind::Uts, false, 9), link(NsKind::Pid, false, 2)];
        let err = compare(7, &theirs, &ours).unwrap_err().to_string();
        assert!(err.starts_with("pid 7: its uts namespace"), "{err}");
        assert!(err.contains("uts:[9] vs uts:[1]"), "{err}");
    }

    #[test]
    fn a_pid_namespace_for_children_counts() {
        let ours = [link(NsKind::Pid, false, 2)];
        let same = [link(NsKind::Pid, false, 2), link(NsKind::Pid, true, 2)];
        assert!(compare(7, &same, &ours).is_ok());
        let unshared = [link(NsKind::Pid, false, 2), link(NsKind::Pid, true, 5)];
        let err = compare(7, &unshared, &ours).unwrap_err().to_string();
        assert!(err.contains("pid_for_children"), "{err}");
    }

    #[test]
    fn our_own_process_is_in_our_namespaces_and_a_gone_one_is_no_error() {
        let mut host = HostNamespaces::read().unwrap();
        host.refuse_foreign(std::process::id() as i32).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        host.refuse_foreign(pid).unwrap();
    }
}
