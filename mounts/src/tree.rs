//! The mount tree of one namespace, checked, and how each mount comes back: the root (a bind
//! of `--root`), an external mount (a bind of a path given on the command line), a fresh
//! filesystem (tmpfs, proc, sysfs, devpts, mqueue...), or a bind of another mount of the tree.
//! Used by both halves: `check` refuses at dump what the restore could not build.

use crate::model::{clean_abs_path, fstype_name, strip_prefix_path};
use crate::MountError;
use criu_proto::images::{Fstype, MntEntry};
use std::collections::HashMap;
use std::path::PathBuf;

/// How one mount is rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    /// The namespace's root: a bind of `--root`.
    Root,
    /// A bind of the path the user maps this key to.
    External(String),
    /// A new instance of its filesystem.
    Fresh,
    /// Its filesystem mounted again from the block device `--external dev[KEY]:DEVICE` names.
    Device(String),
    /// A bind of `rel` inside the mount at index `from` (a primary where one holds it).
    Bind { from: usize, rel: PathBuf },
}

#[derive(Debug, Clone)]
pub struct Node {
    pub e: MntEntry,
    /// Mount point, relative to the namespace's root ("" for the root).
    pub mp: PathBuf,
    /// Path inside the filesystem, relative to its root.
    pub root: PathBuf,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    pub how: How,
}

#[derive(Debug)]
pub struct Tree {
    pub nodes: Vec<Node>,
    pub root: usize,
}

/// Filesystems mounted anew at restore (their content, where they have any, comes from an
/// image: tmpfs) when no other mount of the tree holds them. An overlay is mounted again
/// with its layers' paths as the mounter gave them (the kernel shows them so), resolved in
/// the mount helper's view: criu's mounts, before the tree's root replaces them.
pub fn fresh_fs(code: u32) -> bool {
    matches!(
        Fstype::try_from(code as i32),
        Ok(Fstype::Proc
            | Fstype::Sysfs
            | Fstype::Tmpfs
            | Fstype::Devtmpfs
            | Fstype::Devpts
            | Fstype::Mqueue
            | Fstype::Cgroup
            | Fstype::Cgroup2
            | Fstype::BinfmtMisc
            | Fstype::Debugfs
            | Fstype::Tracefs
            | Fstype::Securityfs
            | Fstype::Pstore
            | Fstype::Fusectl
            | Fstype::Overlayfs)
    )
}

pub fn describe(e: &MntEntry) -> String {
    let fs = fstype_name(e.fstype, e.fsname.as_deref()).unwrap_or("unsupported");
    format!("mount {} ({}, {})", e.mnt_id, e.mountpoint, fs)
}

fn bad(what: String) -> MountError {
    MountError::BadImage(what)
}

impl Tree {
    /// Checks the entries (paths, ids, parents, one root, no cycle) and decides how each
    /// mount is rebuilt.
    pub fn build(entries: Vec<MntEntry>) -> Result<Tree, MountError> {
        if entries.is_empty() {
            return Err(bad("no mounts".into()));
        }
        let mut by_id: HashMap<u32, usize> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            if by_id.insert(e.mnt_id, i).is_some() {
                return Err(bad(format!("mount id {} appears twice", e.mnt_id)));
            }
        }
        let mut nodes = Vec::with_capacity(entries.len());
        for e in entries {
            let mp = clean_abs_path(&e.mountpoint).ok_or_else(|| {
                bad(format!(
                    "{}: mount point is not a clean absolute path",
                    describe(&e)
                ))
            })?;
            // A root that is no path (nsfs's "net:[...]") belongs to a filesystem we
            // cannot make again: name the option that would make it external.
            let root = clean_abs_path(&e.root).ok_or_else(|| match e.ext_key {
                None if !fresh_fs(e.fstype) => MountError::Unsupported {
                    mnt_id: e.mnt_id,
                    mountpoint: e.mountpoint.clone(),
                    fstype: fs_label(&e),
                },
                _ => bad(format!(
                    "{}: root {:?} is not a clean absolute path",
                    describe(&e),
                    e.root
                )),
            })?;
            nodes.push(Node {
                e,
                mp,
                root,
                parent: None,
                children: Vec::new(),
                how: How::Fresh,
            });
        }
        let mut root = None;
        for i in 0..nodes.len() {
            match by_id.get(&nodes[i].e.parent_mnt_id) {
                Some(&p) if p != i => nodes[i].parent = Some(p),
                Some(_) => return Err(bad(format!("{} is its own parent", describe(&nodes[i].e)))),
                None => {
                    if let Some(r) = root {
                        let r: &Node = &nodes[r];
                        return Err(bad(format!(
                            "two roots: {} and {} (a parent is missing)",
                            describe(&r.e),
                            describe(&nodes[i].e)
                        )));
                    }
                    root = Some(i);
                }
            }
        }
        let root = root.ok_or_else(|| bad("no root mount: the parents form a cycle".into()))?;
        if !nodes[root].mp.as_os_str().is_empty() {
            return Err(bad(format!(
                "the root {} is not mounted at /",
                describe(&nodes[root].e)
            )));
        }
        // Every mount reaches the root (no cycle), and lies under its parent's mount point.
        for i in 0..nodes.len() {
            let mut cur = i;
            let mut steps = 0;
            while let Some(p) = nodes[cur].parent {
                steps += 1;
                if steps > nodes.len() {
                    return Err(bad(format!(
                        "{}: its parents form a cycle",
                        describe(&nodes[i].e)
                    )));
                }
                cur = p;
            }
            if let Some(p) = nodes[i].parent {
                if !nodes[i].mp.starts_with(&nodes[p].mp) {
                    return Err(bad(format!(
                        "{} is not under its parent {}",
                        describe(&nodes[i].e),
                        describe(&nodes[p].e)
                    )));
                }
            }
        }
        for i in 0..nodes.len() {
            if let Some(p) = nodes[i].parent {
                nodes[p].children.push(i);
            }
        }
        // Siblings in creation order.
        let order: Vec<Vec<usize>> = nodes
            .iter()
            .map(|n| {
                let mut c = n.children.clone();
                c.sort_by_key(|&k| nodes[k].e.mnt_id);
                c
            })
            .collect();
        for (n, c) in nodes.iter_mut().zip(order) {
            n.children = c;
        }

        // Primaries: the root, externals, and per superblock the mount with the widest root.
        nodes[root].how = How::Root;
        for n in nodes.iter_mut() {
            match n.e.ext_key.clone() {
                Some(k) if k == crate::device::EXTERNAL_DEV => {
                    n.how = How::Device(crate::device::key_of(&n.e)?);
                }
                Some(k) => n.how = How::External(k),
                None => {}
            }
        }
        nodes[root].how = How::Root;
        let is_primary = |n: &Node| matches!(n.how, How::Root | How::External(_) | How::Device(_));
        let mut tree = Tree { nodes, root };
        let n = tree.nodes.len();
        for i in 0..n {
            if is_primary(&tree.nodes[i]) {
                continue;
            }
            // The best source: a primary of the same superblock whose root holds ours.
            let me = &tree.nodes[i];
            let mut best: Option<usize> = None;
            for (j, s) in tree.nodes.iter().enumerate() {
                if j == i || s.e.root_dev != me.e.root_dev {
                    continue;
                }
                let usable = is_primary(s)
                    || (fresh_fs(s.e.fstype)
                        && s.e.ext_key.is_none()
                        && s.root.as_os_str().is_empty());
                if !usable || !me.root.starts_with(&s.root) {
                    continue;
                }
                let key = |n: &Node| (!is_primary(n), n.root.components().count(), n.e.mnt_id);
                let better = best.is_none_or(|b| key(s) < key(&tree.nodes[b]));
                if better {
                    best = Some(j);
                }
            }
            let how = match best {
                // A fresh-fs mount with the widest root of its superblock is the fresh one.
                Some(j)
                    if !is_primary(&tree.nodes[j])
                        && (
                            tree.nodes[j].root.components().count(),
                            tree.nodes[j].e.mnt_id,
                        ) >= (me.root.components().count(), me.e.mnt_id) =>
                {
                    How::Fresh
                }
                Some(j) => How::Bind {
                    from: j,
                    rel: strip_prefix_path(&me.root, &tree.nodes[j].root).unwrap_or_default(),
                },
                None if fresh_fs(me.e.fstype) && me.root.as_os_str().is_empty() => How::Fresh,
                None => {
                    return Err(MountError::Unsupported {
                        mnt_id: me.e.mnt_id,
                        mountpoint: me.e.mountpoint.clone(),
                        fstype: fs_label(&me.e),
                    })
                }
            };
            tree.nodes[i].how = how;
        }
        Ok(tree)
    }

    /// Indexes in an order that mounts parents before children and sources before binds;
    /// siblings in creation order.
    pub fn mount_order(&self) -> Vec<usize> {
        let mut preorder = Vec::with_capacity(self.nodes.len());
        let mut stack = vec![self.root];
        while let Some(i) = stack.pop() {
            preorder.push(i);
            stack.extend(self.nodes[i].children.iter().rev());
        }
        let mut done = vec![false; self.nodes.len()];
        let mut out = Vec::with_capacity(self.nodes.len());
        while out.len() < preorder.len() {
            let next = preorder.iter().copied().find(|&i| {
                !done[i]
                    && self.nodes[i].parent.is_none_or(|p| done[p])
                    && match self.nodes[i].how {
                        How::Bind { from, .. } => done[from],
                        _ => true,
                    }
            });
            match next {
                Some(i) => {
                    done[i] = true;
                    out.push(i);
                }
                // Cannot happen: a source is a primary, never a bind, and parents end at the
                // root; kept as a guard.
                None => break,
            }
        }
        out
    }
}

/// The filesystem name shown in messages: the mount's own one.
pub fn fs_label(e: &MntEntry) -> String {
    fstype_name(e.fstype, e.fsname.as_deref())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            if e.source.is_empty() {
                "unsupported".into()
            } else {
                format!("unsupported, source {}", e.source)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::entries_from_infos;
    use criu_procfs::mountinfo::parse_mountinfo;

    fn tree(text: &str) -> Result<Tree, MountError> {
        Tree::build(entries_from_infos(&parse_mountinfo(text).unwrap()))
    }

    const NS: &str = "\
470 380 254:0 /t/root / rw,relatime - ext4 /dev/vda rw
471 470 0:60 / /dev rw,relatime - tmpfs criu-test-dev rw
472 470 0:61 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
473 470 0:62 / /run rw,relatime shared:7 - tmpfs zdtm_run rw
474 471 0:63 / /dev/pts rw,relatime - devpts pts rw,mode=666,ptmxmode=666
475 473 0:62 /sub /run/b ro master:7 - tmpfs zdtm_run rw
476 470 254:0 /t/root/data /data ro - ext4 /dev/vda rw
477 470 0:62 / /run2 rw shared:7 - tmpfs zdtm_run rw
";

    #[test]
    fn decides_how_each_mount_comes_back() {
        let t = tree(NS).unwrap();
        let how = |id: u32| {
            t.nodes
                .iter()
                .find(|n| n.e.mnt_id == id)
                .unwrap()
                .how
                .clone()
        };
        assert_eq!(how(470), How::Root);
        assert_eq!(how(471), How::Fresh);
        assert_eq!(how(472), How::Fresh);
        assert_eq!(how(473), How::Fresh);
        assert_eq!(how(474), How::Fresh);
        let idx = |id: u32| t.nodes.iter().position(|n| n.e.mnt_id == id).unwrap();
        assert_eq!(
            how(475),
            How::Bind {
                from: idx(473),
                rel: "sub".into()
            }
        );
        assert_eq!(
            how(476),
            How::Bind {
                from: idx(470),
                rel: "data".into()
            }
        );
        assert_eq!(
            how(477),
            How::Bind {
                from: idx(473),
                rel: "".into()
            }
        );
        let order: Vec<u32> = t
            .mount_order()
            .iter()
            .map(|&i| t.nodes[i].e.mnt_id)
            .collect();
        assert_eq!(order, vec![470, 471, 474, 472, 473, 475, 476, 477]);
    }

    #[test]
    fn refuses_what_it_cannot_rebuild() {
        let e =
            tree("1 0 254:0 / / rw - ext4 /dev/vda rw\n2 1 254:1 / /mnt rw - ext4 /dev/vdb rw\n")
                .unwrap_err();
        assert_eq!(
            e.to_string(),
            "mount 2 (/mnt, unsupported, source /dev/vdb): cannot be restored; make it external with \
             --external mnt[/mnt]:KEY (a filesystem on a block device: --external \
             dev[MAJOR/MINOR]:KEY)"
        );
        // `ip netns add` leaves namespace files bind-mounted; their root is no path.
        let e = tree(
            "1 0 254:0 / / rw - ext4 /dev/vda rw\n2 1 0:4 net:[4026532174] /run/netns/a rw - nsfs nsfs rw\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("mount 2 (/run/netns/a, unsupported")
                && e.to_string()
                    .contains("make it external with --external mnt[/run/netns/a]:KEY"),
            "{e}"
        );
    }

    #[test]
    fn hostile_images_are_errors() {
        let base = |mp: &str, root: &str, parent: u32| {
            let mut es = entries_from_infos(
                &parse_mountinfo("1 0 254:0 / / rw - ext4 /dev/vda rw\n").unwrap(),
            );
            let mut e =
                entries_from_infos(&parse_mountinfo("2 1 0:5 / /x rw - tmpfs t rw\n").unwrap())
                    .remove(0);
            e.mountpoint = mp.into();
            e.root = root.into();
            e.parent_mnt_id = parent;
            es.push(e);
            Tree::build(es)
        };
        assert!(base("/x", "/", 1).is_ok());
        assert!(matches!(
            base("/../etc", "/", 1),
            Err(MountError::BadImage(_))
        ));
        assert!(matches!(base("x", "/", 1), Err(MountError::BadImage(_))));
        assert!(matches!(
            base("/x", "/../..", 1),
            Err(MountError::BadImage(_))
        ));
        assert!(matches!(base("/x", "/", 2), Err(MountError::BadImage(_))));
        assert!(matches!(base("/x", "/", 9), Err(MountError::BadImage(_))));
        // A cycle: 2 -> 3 -> 2 beside the root.
        let mut es = entries_from_infos(&parse_mountinfo(
            "1 0 254:0 / / rw - ext4 /dev/vda rw\n2 3 0:5 / /a rw - tmpfs t rw\n3 2 0:6 / /a/b rw - tmpfs t rw\n",
        ).unwrap());
        assert!(matches!(
            Tree::build(es.clone()),
            Err(MountError::BadImage(_))
        ));
        es.clear();
        assert!(Tree::build(es).is_err());
    }
}
