//! The tree's network namespaces at restore, by image id: a socket or tun file is made in
//! its own (`ns_id`), and a task whose namespace is not its creator's joins its own. criu
//! makes files in the tree's root namespace (the calling thread's, see
//! `criu_ns::Owned::run_in_tree_ns`); one of another namespace is made by a thread that
//! joined it.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

#[derive(Debug, Default)]
pub struct NetNamespaces {
    /// The root's namespace id.
    root: Option<u32>,
    /// Every namespace of the tree, the root's too.
    fds: BTreeMap<u32, OwnedFd>,
}

impl NetNamespaces {
    /// `root`: the root's namespace id; `fds`: every namespace of the tree (root's included).
    pub fn new(root: Option<u32>, fds: BTreeMap<u32, OwnedFd>) -> NetNamespaces {
        NetNamespaces { root, fds }
    }

    /// The namespace with id `id`, if the tree has it.
    pub fn get(&self, id: u32) -> Option<BorrowedFd<'_>> {
        self.fds.get(&id).map(|fd| fd.as_fd())
    }

    /// Runs `work` in namespace `ns_id`: on the calling thread for the root's (or no id, or
    /// one the tree does not have: an image of a tree without namespaces of its own), else on
    /// a thread that joins it.
    pub fn run<T: Send>(
        &self,
        ns_id: Option<u32>,
        work: impl FnOnce() -> T + Send,
    ) -> Result<T, String> {
        let other = ns_id
            .filter(|id| Some(*id) != self.root)
            .and_then(|id| self.fds.get(&id).map(|fd| (id, fd)));
        let Some((id, fd)) = other else {
            return Ok(work());
        };
        criu_ns::enter::in_netns(fd.as_fd(), work)
            .map_err(|e| format!("network namespace {id}: {e}"))
    }
}
