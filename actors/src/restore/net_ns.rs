//! A task in another network namespace than the task that forks it (one that unshared or
//! joined one) joins its own before it makes children, which are born in it. The namespaces
//! are made before any task but the root (see `criu_ns::net::make_below`).

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use criu_files::netns::NetNamespaces;
use criu_proto::dump_images::TaskImages;
use criu_tracee::fd_channel::FdChannel;
use criu_tracee::remote::Remote;

use super::rebuild::{task_err, RebuildError};

/// Moves task `t` (driven through `r`, taking criu's fds through `channel`) into its network
/// namespace if it is not there.
pub(super) fn join_own(
    r: &mut Remote,
    channel: &FdChannel,
    t: &TaskImages,
    netns: &NetNamespaces,
) -> Result<(), RebuildError> {
    let Some(want) = t.ids.net_ns_id.and_then(|id| netns.get(id)) else {
        return Ok(());
    };
    let pid = t.pid();
    let now = std::fs::metadata(format!("/proc/{}/ns/net", t.host_pid()))
        .map_err(|e| task_err(pid, format!("cannot read its network namespace: {e}")))?;
    let wanted = nix::sys::stat::fstat(want)
        .map_err(|e| task_err(pid, format!("cannot stat its network namespace: {e}")))?;
    if now.ino() == wanted.st_ino {
        return Ok(());
    }
    let fd = channel.take(r, want.as_raw_fd())?;
    r.call(
        "setns(CLONE_NEWNET)",
        libc::SYS_setns,
        &[fd, libc::CLONE_NEWNET as u64],
    )?;
    r.close(fd)?;
    Ok(())
}
