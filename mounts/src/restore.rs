//! Restore half: rebuilds a dumped mount tree in the current (fresh, single-threaded
//! helper's) mount namespace, then makes it the namespace's root.
//!
//! 1. Everything in the namespace is made private, so nothing propagates back to criu's
//!    (external slaves of a group outside the tree are bound just before, and turned slave).
//! 2. Every mount is made detached first (`open_tree(OPEN_TREE_CLONE)` for binds, the root and
//!    externals; `fsopen`/`fsconfig`/`fsmount` for new filesystems) and attached with
//!    `move_mount` on a target found from its parent's mount fd (`openat2` beneath it, no
//!    symlinks, no magic links), so neither an image nor the restored files can lead a mount
//!    outside the tree. A tmpfs gets its content from its tar image right after it is made.
//! 3. `pivot_root` into the tree, criu's old tree detached.
//! 4. Per-mount flags (`mount_setattr`) and propagation: peer groups joined with
//!    `MOVE_MOUNT_SET_GROUP` from the member with the widest root, slaves made by joining
//!    their master's group then turning slave.

use crate::model::{
    fstype_name, MS_NOATIME, MS_NODEV, MS_NODIRATIME, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_RELATIME,
    MS_STRICTATIME, MS_UNBINDABLE,
};
use crate::model::{MS_DIRSYNC, MS_SYNCHRONOUS};
use crate::tree::{describe, fs_label, How, Node, Tree};
use crate::{MountError, MountOptions};
use criu_proto::images::{Fstype, MntEntry};
use criu_proto::{ImageKind, ImageReader};
use criu_sys::mount as sm;
use rustix::fs::{Mode, OFlags, ResolveFlags, CWD};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags};
use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Rebuilds the tree of `mountpoints-<mnt_ns_id>.img` and pivots into it.
pub fn restore_tree(
    dir: &Path,
    mnt_ns_id: u32,
    opts: &MountOptions,
) -> Result<crate::pty::HeldPtys, MountError> {
    let entries: Vec<MntEntry> =
        ImageReader::open(dir, &ImageKind::MNTS, Some(u64::from(mnt_ns_id)))?.read_all()?;
    let tree = Tree::build(entries)?;
    // Every external key and the root are known before anything is mounted.
    let root_dir = opts.root.clone().ok_or_else(|| {
        MountError::Other(format!(
            "{}: the restore needs --root",
            describe(&tree.nodes[tree.root].e)
        ))
    })?;
    for n in &tree.nodes {
        match &n.how {
            How::Device(key) => drop(crate::device::device_for(&n.e, key, opts)?),
            How::External(key) => drop(external_path(&n.e, key, opts)?),
            _ => {}
        }
    }

    // External slaves of a group outside the tree are bound before the namespace goes
    // private, while its copy of criu's mount is still a peer of that group, and turned slave
    // at once (`--enable-external-masters`: the dump took them so).
    let mut external_slaves = BTreeMap::new();
    for (i, n) in tree.nodes.iter().enumerate() {
        if let (How::External(key), true) = (&n.how, slave_of_outside(&tree, i)) {
            let path = external_path(&n.e, key, opts)?;
            let fd = rustix::mount::open_tree(CWD, &path, clone_flags()).map_err(|e| {
                MountError::rsys(
                    format!(
                        "{}: cannot bind external {key} from {}",
                        describe(&n.e),
                        path.display()
                    ),
                    e,
                )
            })?;
            set_propagation(
                n,
                &fd,
                sm::MS_SLAVE,
                "a slave of the mount it is bound from",
            )?;
            external_slaves.insert(i, fd);
        }
    }
    make_all_private()?;
    let yard = PathBuf::from(format!("/tmp/.criu-mnt.{}", std::process::id()));
    std::fs::create_dir(&yard)
        .map_err(|e| MountError::io(format!("mkdir {}", yard.display()), e))?;
    let yard_parent = rustix::fs::open(
        "/tmp",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| MountError::rsys("open /tmp", e))?;
    let mut held = Vec::new();
    let built = build(
        &tree,
        (&root_dir, dir),
        opts,
        external_slaves,
        &yard,
        &mut held,
    );
    let fds = match built {
        Ok(fds) => fds,
        Err(e) => {
            let _ = sys_mount::unmount(&yard, sys_mount::UnmountFlags::DETACH);
            let _ = std::fs::remove_dir(&yard);
            return Err(e);
        }
    };
    pivot(&yard)?;
    let name = yard.file_name().unwrap_or_default();
    // The yard's directory in criu's tree is no mount point any more.
    if let Err(e) = rustix::fs::unlinkat(&yard_parent, name, rustix::fs::AtFlags::REMOVEDIR) {
        tracing::warn!("cannot remove {}: {e}", yard.display());
    }
    drop(yard_parent);
    for (i, n) in tree.nodes.iter().enumerate() {
        set_flags(n, &fds[i])?;
    }
    propagation(&tree, &fds)?;
    Ok(held)
}

fn make_all_private() -> Result<(), MountError> {
    sys_mount::Mount::builder()
        .fstype("")
        .flags(
            sys_mount::MountFlags::REC
                | sys_mount::MountFlags::from_bits_retain(
                    sys_mount::PropagationType::PRIVATE.bits(),
                ),
        )
        .mount("", "/")
        .map(drop)
        .map_err(|e| MountError::io("make every mount of the new namespace private", e))
}

fn clone_flags() -> OpenTreeFlags {
    OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC
}

fn beneath() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

/// Mounts every node under `yard`; gives each node's mount fd.
/// Mounts every entry in order under `yard`; a bind of a pty slave makes its pair first,
/// whose master goes to `held`.
fn build(
    tree: &Tree,
    (root_dir, dir): (&Path, &Path),
    opts: &MountOptions,
    mut external_slaves: BTreeMap<usize, OwnedFd>,
    yard: &Path,
    held: &mut crate::pty::HeldPtys,
) -> Result<Vec<OwnedFd>, MountError> {
    let mut fds: Vec<Option<OwnedFd>> = (0..tree.nodes.len()).map(|_| None).collect();
    let mut made_again = Vec::new();
    let order = tree.mount_order();
    if order.len() != tree.nodes.len() {
        return Err(MountError::BadImage(
            "the mounts cannot be put in an order".into(),
        ));
    }
    for i in order {
        let n = &tree.nodes[i];
        let fail = |what: &str, e: rustix::io::Errno| {
            MountError::rsys(format!("{}: {what}", describe(&n.e)), e)
        };
        let mnt = match &n.how {
            How::Root => bind_root(root_dir)
                .map_err(|e| fail(&format!("cannot bind --root {}", root_dir.display()), e))?,
            How::External(key) => match external_slaves.remove(&i) {
                Some(slave) => slave,
                None => {
                    let path = external_path(&n.e, key, opts)?;
                    rustix::mount::open_tree(CWD, &path, clone_flags()).map_err(|e| {
                        fail(
                            &format!("cannot bind external {key} from {}", path.display()),
                            e,
                        )
                    })?
                }
            },
            How::Bind { from, rel } => {
                let src = fds[*from].as_ref().ok_or_else(|| {
                    MountError::BadImage(format!(
                        "{}: its source is not mounted yet",
                        describe(&n.e)
                    ))
                })?;
                let devpts = tree.nodes[*from].e.fstype == Fstype::Devpts as u32;
                let slave = crate::pty::index_of(rel).filter(|_| devpts);
                let deleted = n.e.deleted == Some(true);
                let bound = match (bind_from(src, rel), slave) {
                    (Err(rustix::io::Errno::NOENT), Some(index)) => {
                        held.push((index, crate::pty::open_index(src, index)?));
                        bind_from(src, rel)
                    }
                    (Err(rustix::io::Errno::NOENT), None) if deleted => {
                        let dir = target_is_dir(tree, &fds, i)?;
                        let bound = bind_deleted(src, rel, dir);
                        made_again.push((*from, rel.clone(), dir));
                        bound
                    }
                    (other, _) => other,
                };
                bound.map_err(|e| {
                    fail(
                        &format!(
                            "cannot bind {} of mount {}",
                            n.e.root, tree.nodes[*from].e.mnt_id
                        ),
                        e,
                    )
                })?
            }
            How::Fresh => fresh(&n.e, None)?,
            How::Device(key) => fresh(&n.e, Some(crate::device::device_for(&n.e, key, opts)?))?,
        };
        match n.parent {
            None => rustix::mount::move_mount(
                &mnt,
                "",
                CWD,
                yard,
                MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
            )
            .map_err(|e| fail(&format!("cannot mount on {}", yard.display()), e))?,
            Some(p) => {
                let pfd = fds[p].as_ref().ok_or_else(|| {
                    MountError::BadImage(format!("{}: parent not mounted", describe(&n.e)))
                })?;
                let rel =
                    n.mp.strip_prefix(&tree.nodes[p].mp)
                        .unwrap_or(Path::new(""));
                attach(&mnt, pfd, rel).map_err(|e| fail("cannot mount", e))?;
            }
        }
        if n.how == How::Fresh && n.e.fstype == Fstype::Tmpfs as u32 {
            crate::tmpfs::fill(&n.e, &mnt, dir)?;
            crate::tmpfs::seal(&n.e, &mnt)?;
        }
        fds[i] = Some(mnt);
    }
    remove_made_again(&fds, &made_again)?;
    fds.into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| MountError::BadImage("a mount was left out of the order".into()))
}

/// Where external mount `e` (key `key`) is bound from: the path `--external mnt[KEY]:PATH`
/// gives, or for an autodetected one the place in criu's mounts its image names.
fn external_path(e: &MntEntry, key: &str, opts: &MountOptions) -> Result<PathBuf, MountError> {
    if key == crate::auto::AUTODETECTED {
        return crate::auto::source_of(e, opts);
    }
    opts.external_for(key).map(PathBuf::from).ok_or_else(|| {
        MountError::Other(format!(
            "{}: external mount without a path: give --external mnt[{key}]:PATH",
            describe(e)
        ))
    })
}

/// Whether node `i`'s mount point (in its parent, already mounted) is a directory.
fn target_is_dir(tree: &Tree, fds: &[Option<OwnedFd>], i: usize) -> Result<bool, MountError> {
    let n = &tree.nodes[i];
    let p = n
        .parent
        .ok_or_else(|| MountError::BadImage(format!("{}: a deleted root", describe(&n.e))))?;
    let pfd = fds[p]
        .as_ref()
        .ok_or_else(|| MountError::BadImage(format!("{}: parent not mounted", describe(&n.e))))?;
    let rel =
        n.mp.strip_prefix(&tree.nodes[p].mp)
            .unwrap_or(Path::new(""));
    let st = rustix::fs::statat(pfd, rel, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| MountError::rsys(format!("{}: stat its mount point", describe(&n.e)), e))?;
    Ok(rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory)
}

/// A bind of `rel` inside `src` that was deleted at dump (its mountinfo root ended in
/// "(deleted)"): made again (a directory or an empty file, as its mount point) and bound;
/// [`remove_made_again`] removes it once the tree is mounted, so that the mount shows as
/// deleted again, as CRIU does.
fn bind_deleted(src: &OwnedFd, rel: &Path, dir: bool) -> rustix::io::Result<OwnedFd> {
    if dir {
        rustix::fs::mkdirat(src, rel, Mode::from_raw_mode(0o700))?;
    } else {
        let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC;
        drop(rustix::fs::openat(
            src,
            rel,
            flags,
            Mode::from_raw_mode(0o600),
        )?);
    }
    bind_from(src, rel)
}

/// Removes what [`bind_deleted`] made: (source mount, path in it, a directory).
fn remove_made_again(
    fds: &[Option<OwnedFd>],
    made: &[(usize, PathBuf, bool)],
) -> Result<(), MountError> {
    for (from, rel, dir) in made {
        let Some(src) = fds[*from].as_ref() else {
            continue;
        };
        let flags = if *dir {
            rustix::fs::AtFlags::REMOVEDIR
        } else {
            rustix::fs::AtFlags::empty()
        };
        rustix::fs::unlinkat(src, rel, flags).map_err(|e| {
            MountError::rsys(
                format!("remove {} again (it was deleted)", rel.display()),
                e,
            )
        })?;
    }
    Ok(())
}

/// A detached copy of `rel` inside the mount `src` (only that mount, without its children).
/// The bind of `--root` the tree is built on. In a user namespace's copy of criu's mounts,
/// the mounts below it are locked to it (EINVAL without them): it is bound with them then,
/// as CRIU binds its root recursively, and the dumped mounts go on top.
fn bind_root(root_dir: &Path) -> rustix::io::Result<OwnedFd> {
    match rustix::mount::open_tree(CWD, root_dir, clone_flags()) {
        Err(rustix::io::Errno::INVAL) => {
            tracing::warn!(
                "--root {}: the mounts below it are locked to it: they come along",
                root_dir.display()
            );
            rustix::mount::open_tree(CWD, root_dir, clone_flags() | OpenTreeFlags::AT_RECURSIVE)
        }
        other => other,
    }
}

/// Where `src` has mounts locked to it (a user namespace's copy of criu's mounts, bound
/// recursively by [`bind_root`]), a bind of a directory they cover is refused (EINVAL): it is
/// made with them then, as they already are under the root too.
fn bind_from(src: &OwnedFd, rel: &Path) -> rustix::io::Result<OwnedFd> {
    let clone = |fd: &OwnedFd, recursive: bool| {
        let mut flags = clone_flags() | OpenTreeFlags::AT_EMPTY_PATH;
        if recursive {
            flags |= OpenTreeFlags::AT_RECURSIVE;
        }
        rustix::mount::open_tree(fd, "", flags)
    };
    let (alone, recursive) = match clone(src, false) {
        Err(rustix::io::Errno::INVAL) => (clone(src, true)?, true),
        other => (other?, false),
    };
    if rel.as_os_str().is_empty() {
        return Ok(alone);
    }
    let at = rustix::fs::openat2(
        &alone,
        rel,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        beneath(),
    )?;
    match clone(&at, recursive) {
        Err(rustix::io::Errno::INVAL) if !recursive => clone(&at, true),
        other => other,
    }
}

/// Attaches the detached mount `mnt` at `rel` beneath its parent's mount `parent`, making
/// the mount point (a directory, or a file for a file bind) when it is missing.
fn attach(mnt: &OwnedFd, parent: &OwnedFd, rel: &Path) -> rustix::io::Result<()> {
    let flags = MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH;
    if rel.as_os_str().is_empty() {
        return rustix::mount::move_mount(mnt, "", parent, "", flags);
    }
    let open = |r: ResolveFlags| {
        rustix::fs::openat2(
            parent,
            rel,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            r,
        )
    };
    let target = match open(beneath() | ResolveFlags::NO_XDEV) {
        Ok(t) => t,
        // Something of the tree is already mounted there (mounts stacked on one point).
        Err(rustix::io::Errno::XDEV) => open(beneath())?,
        Err(rustix::io::Errno::NOENT) => {
            let name = rel.file_name().ok_or(rustix::io::Errno::INVAL)?;
            let up = rel.parent().unwrap_or(Path::new(""));
            let up = if up.as_os_str().is_empty() {
                Path::new(".")
            } else {
                up
            };
            let dirfd = rustix::fs::openat2(
                parent,
                up,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                beneath() | ResolveFlags::NO_XDEV,
            )?;
            let is_dir = rustix::fs::fstat(mnt)
                .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir())?;
            if is_dir {
                rustix::fs::mkdirat(&dirfd, name, Mode::from_raw_mode(0o755))?;
            } else {
                drop(rustix::fs::openat(
                    &dirfd,
                    name,
                    OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?);
            }
            open(beneath() | ResolveFlags::NO_XDEV)?
        }
        Err(e) => return Err(e),
    };
    rustix::mount::move_mount(mnt, "", &target, "", flags)
}

/// A new instance of the entry's filesystem, its superblock options set, detached; from the
/// block device `device` when given.
fn fresh(e: &MntEntry, device: Option<&str>) -> Result<OwnedFd, MountError> {
    let name =
        fstype_name(e.fstype, e.fsname.as_deref()).ok_or_else(|| MountError::Unsupported {
            mnt_id: e.mnt_id,
            mountpoint: e.mountpoint.clone(),
            fstype: fs_label(e),
        })?;
    let fail = |what: String, err: rustix::io::Errno| {
        MountError::rsys(format!("{}: {what}", describe(e)), err)
    };
    let fs = rustix::mount::fsopen(name, FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|err| fail(format!("fsopen {name}"), err))?;
    let source = device.unwrap_or(e.source.as_str());
    if !source.is_empty() {
        rustix::mount::fsconfig_set_string(&fs, "source", source)
            .map_err(|err| fail(format!("source {source}"), err))?;
    }
    let mut sb = e.sb_flags.unwrap_or(0);
    // A tmpfs gets its content first: read-only comes after (`tmpfs::seal`).
    if e.fstype == Fstype::Tmpfs as u32 {
        sb &= !MS_RDONLY;
    }
    for (bit, flag) in [
        (MS_RDONLY, "ro"),
        (MS_SYNCHRONOUS, "sync"),
        (MS_DIRSYNC, "dirsync"),
    ] {
        if sb & bit != 0 {
            rustix::mount::fsconfig_set_flag(&fs, flag)
                .map_err(|err| fail(format!("option {flag}"), err))?;
        }
    }
    for opt in e.options.split(',').filter(|o| !o.is_empty()) {
        let res = match opt.split_once('=') {
            Some((k, v)) => rustix::mount::fsconfig_set_string(&fs, k, v),
            None => rustix::mount::fsconfig_set_flag(&fs, opt),
        };
        res.map_err(|err| fail(format!("option {opt}"), err))?;
    }
    if e.fstype == Fstype::Proc as u32 && pid_ns_differs() {
        // proc shows the pid namespace the restored tasks will live in, not the helper's.
        rustix::mount::fsconfig_set_string(&fs, "pidns", "/proc/self/ns/pid_for_children")
            .map_err(|err| {
                fail(
                    "option pidns (the pid namespace of the restored tree)".into(),
                    err,
                )
            })?;
    }
    rustix::mount::fsconfig_create(&fs)
        .map_err(|err| fail("cannot create the filesystem".into(), err))?;
    rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
        .map_err(|err| fail("cannot mount the filesystem".into(), err))
}

fn pid_ns_differs() -> bool {
    let ino = |p: &str| {
        std::fs::metadata(p)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .ok()
    };
    let (own, children) = (
        ino("/proc/self/ns/pid"),
        ino("/proc/self/ns/pid_for_children"),
    );
    own.is_some() && children.is_some() && own != children
}

/// `pivot_root` into the yard; criu's old tree is detached.
fn pivot(yard: &Path) -> Result<(), MountError> {
    nix::unistd::chdir(yard)
        .map_err(|e| MountError::sys(format!("chdir {}", yard.display()), e))?;
    nix::unistd::pivot_root(".", ".")
        .map_err(|e| MountError::sys("pivot_root into the restored tree", e))?;
    sys_mount::unmount(".", sys_mount::UnmountFlags::DETACH)
        .map_err(|e| MountError::io("detach criu's old root", e))?;
    nix::unistd::chdir("/").map_err(|e| MountError::sys("chdir /", e))
}

/// Per-mount flags: read-only, nosuid, nodev, noexec, atime.
fn set_flags(n: &Node, fd: &OwnedFd) -> Result<(), MountError> {
    let f = n.e.flags;
    let mut set = 0;
    for (ms, attr) in [
        (MS_RDONLY, sm::MOUNT_ATTR_RDONLY),
        (MS_NOSUID, sm::MOUNT_ATTR_NOSUID),
        (MS_NODEV, sm::MOUNT_ATTR_NODEV),
        (MS_NOEXEC, sm::MOUNT_ATTR_NOEXEC),
        (MS_NODIRATIME, sm::MOUNT_ATTR_NODIRATIME),
    ] {
        if f & ms != 0 {
            set |= attr;
        }
    }
    set |= if f & MS_NOATIME != 0 {
        sm::MOUNT_ATTR_NOATIME
    } else if f & MS_STRICTATIME != 0 && f & MS_RELATIME == 0 {
        sm::MOUNT_ATTR_STRICTATIME
    } else {
        sm::MOUNT_ATTR_RELATIME
    };
    let attr = sm::MountAttr {
        attr_set: set,
        attr_clr: sm::MOUNT_ATTR_RDONLY
            | sm::MOUNT_ATTR_NOSUID
            | sm::MOUNT_ATTR_NODEV
            | sm::MOUNT_ATTR_NOEXEC
            | sm::MOUNT_ATTR__ATIME
            | sm::MOUNT_ATTR_NODIRATIME,
        ..Default::default()
    };
    sm::mount_setattr(fd.as_fd(), Path::new(""), sm::AT_EMPTY_PATH, &attr).map_err(|e| {
        MountError::sys(
            format!("{}: cannot set its flags {:#x}", describe(&n.e), f),
            e,
        )
    })
}

fn set_propagation(n: &Node, fd: &OwnedFd, kind: u64, name: &str) -> Result<(), MountError> {
    let attr = sm::MountAttr {
        propagation: kind,
        ..Default::default()
    };
    sm::mount_setattr(fd.as_fd(), Path::new(""), sm::AT_EMPTY_PATH, &attr)
        .map_err(|e| MountError::sys(format!("{}: cannot make it {name}", describe(&n.e)), e))
}

fn set_group(tree: &Tree, fds: &[OwnedFd], from: usize, to: usize) -> Result<(), MountError> {
    let flags = MoveMountFlags::MOVE_MOUNT_SET_GROUP
        | MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH
        | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH;
    rustix::mount::move_mount(&fds[from], "", &fds[to], "", flags).map_err(|e| {
        MountError::rsys(
            format!(
                "{}: cannot join the peer group of mount {} (MOVE_MOUNT_SET_GROUP)",
                describe(&tree.nodes[to].e),
                tree.nodes[from].e.mnt_id
            ),
            e,
        )
    })
}

/// Among `members`, one that `MOVE_MOUNT_SET_GROUP` accepts as the source for `to`: same
/// superblock, a root that holds `to`'s; the widest first.
fn group_source(tree: &Tree, members: &[usize], to: usize) -> Option<usize> {
    let t = &tree.nodes[to];
    members
        .iter()
        .copied()
        .filter(|&m| {
            m != to
                && tree.nodes[m].e.root_dev == t.e.root_dev
                && t.root.starts_with(&tree.nodes[m].root)
        })
        .min_by_key(|&m| {
            (
                tree.nodes[m].root.components().count(),
                tree.nodes[m].e.mnt_id,
            )
        })
}

/// Shared peer groups, slaves, unbindable mounts, as dumped.
fn propagation(tree: &Tree, fds: &[OwnedFd]) -> Result<(), MountError> {
    let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, n) in tree.nodes.iter().enumerate() {
        if let Some(s) = n.e.shared_id.filter(|&s| s != 0) {
            groups.entry(s).or_default().push(i);
        }
    }
    for m in groups.values_mut() {
        m.sort_by_key(|&i| {
            (
                tree.nodes[i].root.components().count(),
                tree.nodes[i].e.mnt_id,
            )
        });
    }
    let master_of = |i: usize| tree.nodes[i].e.master_id.filter(|&m| m != 0);
    // Peer groups, each after the group it is a slave of.
    let mut done: HashMap<u32, ()> = HashMap::new();
    let mut slaved = vec![false; tree.nodes.len()];
    loop {
        let ready = groups.iter().find(|(id, members)| {
            !done.contains_key(id)
                && master_of(members[0])
                    .is_none_or(|m| done.contains_key(&m) || !groups.contains_key(&m))
        });
        let Some((&id, members)) = ready else { break };
        let leader = members[0];
        if let Some(m) = master_of(leader) {
            make_slave(tree, fds, &groups, leader, m)?;
        }
        set_propagation(&tree.nodes[leader], &fds[leader], sm::MS_SHARED, "shared")?;
        for &t in &members[1..] {
            let from = group_source(tree, members, t).ok_or_else(|| {
                MountError::Other(format!(
                    "{}: no member of peer group {id} holds its root",
                    describe(&tree.nodes[t].e)
                ))
            })?;
            set_group(tree, fds, from, t)?;
        }
        for &t in members {
            slaved[t] = true;
        }
        done.insert(id, ());
    }
    if let Some((id, _)) = groups.iter().find(|(id, _)| !done.contains_key(id)) {
        return Err(MountError::BadImage(format!(
            "peer group {id}: its masters form a cycle"
        )));
    }
    for (i, n) in tree.nodes.iter().enumerate() {
        if let Some(m) = master_of(i) {
            if !slaved[i] {
                make_slave(tree, fds, &groups, i, m)?;
            }
        }
        if n.e.flags & MS_UNBINDABLE != 0 {
            set_propagation(n, &fds[i], sm::MS_UNBINDABLE, "unbindable")?;
        }
    }
    Ok(())
}

/// Whether node `i` is a slave of a peer group no mount of the tree is in.
fn slave_of_outside(tree: &Tree, i: usize) -> bool {
    let master = tree.nodes[i].e.master_id.unwrap_or(0);
    master != 0 && !tree.nodes.iter().any(|n| n.e.shared_id == Some(master))
}

/// Makes `to` a slave of peer group `master`: it joins the group, then turns slave. An
/// external mount whose master is outside the tree is one already (see `restore_tree`); any
/// other mount with such a master is left private.
fn make_slave(
    tree: &Tree,
    fds: &[OwnedFd],
    groups: &BTreeMap<u32, Vec<usize>>,
    to: usize,
    master: u32,
) -> Result<(), MountError> {
    let Some(members) = groups.get(&master) else {
        if matches!(tree.nodes[to].how, How::External(_)) {
            return Ok(());
        }
        tracing::warn!(
            "{}: its master group {master} is outside the tree; left private",
            describe(&tree.nodes[to].e)
        );
        return Ok(());
    };
    let from = group_source(tree, members, to).ok_or_else(|| {
        MountError::Other(format!(
            "{}: no mount of its master group {master} holds its root",
            describe(&tree.nodes[to].e)
        ))
    })?;
    set_group(tree, fds, from, to)?;
    set_propagation(&tree.nodes[to], &fds[to], sm::MS_SLAVE, "a slave")
}

/// From criu (multi-threaded, which cannot join a mount namespace): runs the helper
/// (`criu __mount-helper restore`, see src/commands/mount_helper.rs) that rebuilds the tree of
/// `mountpoints-<mnt_ns_id>.img` inside the new mount namespace of `pid` and pivots into it.
pub fn restore_in_ns(
    pid: i32,
    mnt_ns_id: u32,
    dir: &Path,
    opts: &MountOptions,
) -> Result<crate::pty::HeldPtys, MountError> {
    let exe = crate::helper_exe().ok_or_else(|| {
        MountError::Other("cannot find criu's own binary for the mount helper".into())
    })?;
    let mut cmd = Command::new(&exe);
    cmd.arg("__mount-helper")
        .arg("restore")
        .arg(dir)
        .arg(mnt_ns_id.to_string())
        .arg(pid.to_string());
    if let Some(root) = &opts.root {
        cmd.arg("--root").arg(root);
    }
    for (key, path) in &opts.external {
        cmd.arg("--external").arg(format!("{key}:{path}"));
    }
    if opts.auto_external {
        cmd.arg("--auto-external").arg("yes");
    }
    for (key, device) in &opts.devices {
        cmd.arg("--device").arg(format!("{key}:{device}"));
    }
    let what = format!("the mount helper for pid {pid}");
    // The masters of bind-mounted pty slaves come back over this (see pty.rs).
    let (ours, theirs) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| MountError::Other(format!("{what}: socketpair: {e}")))?;
    let inherit = nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty());
    nix::fcntl::fcntl(&theirs, inherit)
        .map_err(|e| MountError::Other(format!("{what}: fcntl: {e}")))?;
    cmd.arg("--ptys-fd")
        .arg(std::os::fd::AsRawFd::as_raw_fd(&theirs).to_string());
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| MountError::io(what.clone(), e))?;
    drop(theirs);
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        return Err(MountError::Other(format!("{what}: {}", said.trim())));
    }
    crate::pty::receive(&ours)
}
