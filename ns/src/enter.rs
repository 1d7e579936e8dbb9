//! Work done inside a task's namespaces from criu itself: a fresh thread of criu joins them
//! with setns and runs the work there. uts, ipc, net and cgroup namespaces can be joined by
//! one thread of a multi-threaded process (mnt, user and time cannot: those need a helper,
//! design.md section 3); the thread is thrown away afterwards, so criu's other threads and
//! its own namespaces are never touched.

use std::os::fd::AsFd;

use criu_procfs::NsKind;

#[derive(Debug, thiserror::Error)]
pub enum EnterError {
    #[error("cannot open /proc/{pid}/ns/{kind}: {source}")]
    Open {
        pid: i32,
        kind: &'static str,
        source: std::io::Error,
    },
    #[error("cannot join the {kind} namespace of pid {pid}: {source}")]
    Setns {
        pid: i32,
        kind: &'static str,
        source: nix::errno::Errno,
    },
    #[error("the {0} namespace cannot be joined by one thread of criu")]
    NotPerThread(&'static str),
    #[error("the thread working in the namespaces of pid {0} died")]
    Died(i32),
    #[error("cannot join a network namespace of the tree: {0}")]
    SetnsNet(nix::errno::Errno),
    #[error("the thread working in a network namespace of the tree died")]
    DiedInNet,
}

/// Runs `work` in a new thread that first joins the network namespace `ns`.
pub fn in_netns<T: Send>(
    ns: std::os::fd::BorrowedFd<'_>,
    work: impl FnOnce() -> T + Send,
) -> Result<T, EnterError> {
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(EnterError::SetnsNet)?;
            Ok(work())
        })
        .join()
        .map_err(|_| EnterError::DiedInNet)?
    })
}

/// Runs `work` in a new thread that first joins the `kinds` namespaces of `pid` (as the
/// caller sees pids), and returns what it returns.
pub fn in_namespaces_of<T: Send>(
    pid: i32,
    kinds: &[NsKind],
    work: impl FnOnce() -> T + Send,
) -> Result<T, EnterError> {
    for &kind in kinds {
        if matches!(
            kind,
            NsKind::Mnt | NsKind::User | NsKind::Time | NsKind::Pid
        ) {
            return Err(EnterError::NotPerThread(kind.name()));
        }
    }
    // Opened before the thread starts, so that a task that dies meanwhile fails here.
    let mut fds = Vec::with_capacity(kinds.len());
    for &kind in kinds {
        let path = format!("/proc/{pid}/ns/{}", kind.name());
        let fd = std::fs::File::open(&path).map_err(|source| EnterError::Open {
            pid,
            kind: kind.name(),
            source,
        })?;
        fds.push((kind, fd));
    }
    std::thread::scope(|s| {
        s.spawn(move || {
            for (kind, fd) in &fds {
                let flag = nix::sched::CloneFlags::from_bits_truncate(kind.clone_flag());
                nix::sched::setns(fd.as_fd(), flag).map_err(|source| EnterError::Setns {
                    pid,
                    kind: kind.name(),
                    source,
                })?;
            }
            Ok(work())
        })
        .join()
        .map_err(|_| EnterError::Died(pid))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hostname() -> String {
        nix::unistd::gethostname()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn work_runs_in_the_task_namespace_and_ours_is_untouched() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("needs root: skipped");
            return;
        }
        // A child in its own uts namespace with another hostname.
        let mut child = std::process::Command::new("unshare")
            .args([
                "--uts",
                "sh",
                "-c",
                "hostname ns-enter-test && exec sleep 30",
            ])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut tries = 0;
        let target = loop {
            tries += 1;
            assert!(tries < 500, "the child never got its own hostname");
            // unshare execs sh in place: wait until its uts link differs from ours.
            let theirs = criu_procfs::read_ns(pid, NsKind::Uts).unwrap().ino;
            let ours = criu_procfs::read_ns(std::process::id() as i32, NsKind::Uts)
                .unwrap()
                .ino;
            let inside = in_namespaces_of(pid, &[NsKind::Uts], hostname).unwrap();
            if theirs != ours && inside == "ns-enter-test" {
                break inside;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(target, "ns-enter-test");
        assert_ne!(hostname(), "ns-enter-test");
    }

    #[test]
    fn mount_and_user_namespaces_are_refused() {
        let me = std::process::id() as i32;
        let err = in_namespaces_of(me, &[NsKind::Mnt], || ()).unwrap_err();
        assert!(err.to_string().contains("mnt namespace cannot"), "{err}");
    }
}
