//! Making a task or thread inside its creator (injected clone3 with the pid it had), and
//! learning criu's pid for it, which differs in a pid namespace of the tree's own.

use criu_tracee::remote::words;
use criu_tracee::Injector;

use super::rebuild::{task_err, RebuildError};

/// The parent of `pid` (as criu sees both).
pub(super) fn parent_of(pid: i32) -> Result<i32, RebuildError> {
    criu_procfs::read_stat(pid)
        .map(|s| s.ppid)
        .map_err(|e| task_err(pid, format!("cannot read its parent: {e}")))
}

/// The id criu sees the child (or, with `thread`, the thread) of `creator` by, which
/// `creator` sees as `id`: the same id when `creator` is in criu's pid namespace.
pub(super) fn host_id(creator: i32, id: i32, thread: bool) -> Result<i32, RebuildError> {
    if in_criu_pid_ns(creator) {
        return Ok(id);
    }
    match criu_procfs::task::find_seen_by(creator, id, thread) {
        Ok(Some(host)) => Ok(host),
        Ok(None) => Err(task_err(
            id,
            format!("made by {creator}, but not found in /proc"),
        )),
        Err(e) => Err(task_err(id, format!("cannot find it under {creator}: {e}"))),
    }
}

/// Injects clone3 with `set_tid` (the new task's id in its own pid namespace first, then in
/// each one above it up to the root's), or through ns_last_pid where set_tid cannot be used;
/// the creator sees the new task as `seen_as`, which clone3 must answer. The new task waits
/// in a pause loop.
pub(super) fn clone_in(
    inj: &mut Injector,
    set_tid: &[i32],
    seen_as: i32,
    flags: u64,
    exit_signal: u64,
) -> Result<(), RebuildError> {
    let data = inj.data_addr();
    let tid = set_tid.last().copied().unwrap_or(seen_as);
    let one_level = set_tid.len() == 1;
    if one_level && criu_sys::clone::pid_by_ns_last_pid() {
        inj.write_data(0, &clone_args(flags, exit_signal, 0, 0))?;
        return super::next_pid::clone_via_ns_last_pid(inj, data, tid, flags);
    }
    // struct clone_args, then the set_tid array.
    let set_tid_at = data + CLONE_ARGS_LEN;
    let mut args = clone_args(flags, exit_signal, set_tid_at, set_tid.len() as u64);
    for id in set_tid {
        args.extend_from_slice(&id.to_le_bytes());
    }
    inj.write_data(0, &args)?;
    let got = inj.clone_child(data, CLONE_ARGS_LEN)?;
    // set_tid needs CAP_CHECKPOINT_RESTORE over the pid namespace, which a creator inside a
    // joined user namespace lacks (`--join-ns user`): in criu's pid namespace criu claims
    // the pid through ns_last_pid for it instead.
    if got == -i64::from(libc::EPERM) && one_level && in_criu_pid_ns(inj.tracee().tgid()) {
        tracing::debug!("pid {tid}: clone3 set_tid refused; through ns_last_pid");
        inj.write_data(0, &clone_args(flags, exit_signal, 0, 0))?;
        return super::next_pid::clone_via_ns_last_pid(inj, data, tid, flags);
    }
    if got != i64::from(seen_as) {
        let what = if got < 0 {
            format!("clone3 with set_tid {set_tid:?}: errno {}", -got)
        } else {
            format!("clone3 asked for {set_tid:?}, got {got}")
        };
        return Err(RebuildError::Task { pid: tid, what });
    }
    Ok(())
}

fn in_criu_pid_ns(pid: i32) -> bool {
    let pid_ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    pid_ns(pid).is_some() && pid_ns(pid) == pid_ns(std::process::id() as i32)
}

/// The size of struct clone_args as clone3 is given it.
pub(super) const CLONE_ARGS_LEN: u64 = 88;

/// struct clone_args with `flags`, `exit_signal` and the set_tid array (address, length).
fn clone_args(flags: u64, exit_signal: u64, set_tid_at: u64, set_tid_size: u64) -> Vec<u8> {
    words(&[
        flags,
        0,
        0,
        0,
        exit_signal,
        0,
        0,
        0,
        set_tid_at,
        set_tid_size,
        0,
    ])
}
