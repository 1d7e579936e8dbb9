//! Children born in pid namespaces nested below the root's: a nested init is made with
//! CLONE_NEWPID, every task with its id at each level (clone3 `set_tid`), and a creator whose
//! children go to a namespace other than its own (after `unshare(CLONE_NEWPID)` and fork) has
//! its `pid_for_children` moved there by an injected setns before it makes them, and left
//! there at the end as the dump found it.

use criu_proto::dump_images::DumpImages;
use criu_tracee::Injector;

use super::rebuild::{task_err, RebuildError};

/// How `creator` makes `child`.
pub(super) struct Birth {
    pub set_tid: Vec<i32>,
    /// The id clone3 answers in the creator.
    pub seen_as: i32,
    /// The child is the init of a new pid namespace.
    pub new_pid_ns: bool,
}

/// Where a task's children are born: `None` in its own pid namespace, else in the one whose
/// init (as the images name it) is given.
pub(super) type ChildrenNs = Option<i32>;

/// Prepares `creator` (its `pid_for_children` now `current`) to make `child`.
pub(super) fn before_birth(
    inj: &mut Injector,
    images: &DumpImages,
    (creator, child): (i32, i32),
    current: &mut ChildrenNs,
) -> Result<Birth, RebuildError> {
    let pids = &images.pids;
    let depth = pids.depth(creator);
    let seen_as = pids
        .seen_at(child, depth)
        .ok_or_else(|| task_err(child, format!("it is in a pid namespace above {creator}'s")))?;
    let new_pid_ns = pids.is_init(child) && pids.depth(child) == depth + 1;
    let wanted = if new_pid_ns || pids.depth(child) == depth {
        None
    } else {
        let init = pids.children_of(creator).ok_or_else(|| {
            task_err(
                child,
                format!("it is in a pid namespace below {creator}'s whose init is not known"),
            )
        })?;
        Some(init)
    };
    move_children_ns(inj, images, creator, current, wanted)?;
    Ok(Birth {
        set_tid: pids.set_tid(child),
        seen_as,
        new_pid_ns,
    })
}

/// After `creator` made a child: its `pid_for_children` goes where the dump found it, once
/// that namespace's init exists.
pub(super) fn after_birth(
    inj: &mut Injector,
    images: &DumpImages,
    creator: i32,
    current: &mut ChildrenNs,
) -> Result<(), RebuildError> {
    let Some(init) = images.pids.children_of(creator) else {
        return Ok(());
    };
    let exists = images
        .tasks
        .iter()
        .find(|t| t.pid() == init)
        .is_some_and(|t| t.host_tids.first().is_some_and(|h| h.get().is_some()));
    if exists {
        move_children_ns(inj, images, creator, current, Some(init))?;
    }
    Ok(())
}

/// setns(pidfd, CLONE_NEWPID) in `creator` with a pidfd of `wanted`'s init (or of itself).
fn move_children_ns(
    inj: &mut Injector,
    images: &DumpImages,
    creator: i32,
    current: &mut ChildrenNs,
    wanted: ChildrenNs,
) -> Result<(), RebuildError> {
    if *current == wanted {
        return Ok(());
    }
    let target = match wanted {
        Some(init) => images.seen_by(init, creator),
        None => images.pids.own(creator),
    };
    let fail = |what: &str, ret: i64| {
        task_err(
            creator,
            format!(
                "cannot move the pid namespace of its children to {target}'s: {what}: errno {}",
                -ret
            ),
        )
    };
    let fd = inj.syscall(libc::SYS_pidfd_open, &[target as u64, 0])?;
    if fd < 0 {
        return Err(fail("pidfd_open", fd));
    }
    let ret = inj.syscall(libc::SYS_setns, &[fd as u64, libc::CLONE_NEWPID as u64])?;
    inj.syscall(libc::SYS_close, &[fd as u64])?;
    if ret < 0 {
        return Err(fail("setns", ret));
    }
    *current = wanted;
    Ok(())
}
