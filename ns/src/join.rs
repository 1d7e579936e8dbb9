//! Namespaces the restored tree joins instead of getting new ones: `--join-ns NS:PID|PATH`,
//! and a network namespace the dump named external (`--external net[INODE]:KEY`), handed to
//! the restore as `--inherit-fd fd[N]:KEY`. net, ipc and uts are joined by criu's thread that
//! makes the root (the root is born in them); time by the root itself (injected setns), since
//! a multi-threaded process cannot join one.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use criu_procfs::NsKind;
use criu_tracee::remote::Remote;

use crate::error::{tracee, NsImageError};

/// Where a joined namespace is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Where {
    Path(PathBuf),
    /// An fd of criu's (from `--inherit-fd`).
    Fd(i32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    pub kind: NsKind,
    pub at: Where,
}

/// Parses `--join-ns NS:PID|PATH[,OPTIONS]`.
pub fn parse(arg: &str) -> Result<Join, String> {
    let bad = |why: &str| format!("--join-ns {arg}: {why}");
    let (kind, rest) = arg
        .split_once(':')
        .ok_or_else(|| bad("expected NS:PID|PATH"))?;
    let kind = NsKind::from_name(kind).ok_or_else(|| bad("unknown namespace kind"))?;
    if !matches!(kind, NsKind::Net | NsKind::Ipc | NsKind::Uts | NsKind::Time) {
        return Err(bad(
            "joining a user, mount, pid or cgroup namespace is not supported yet",
        ));
    }
    if rest.contains(',') {
        return Err(bad("options are only for a user namespace"));
    }
    if rest.is_empty() {
        return Err(bad("expected NS:PID|PATH"));
    }
    let path = match rest.parse::<i32>() {
        Ok(pid) if pid > 0 => PathBuf::from(format!("/proc/{pid}/ns/{}", kind.name())),
        _ => PathBuf::from(rest),
    };
    Ok(Join {
        kind,
        at: Where::Path(path),
    })
}

fn bad(kind: NsKind, what: String) -> NsImageError {
    NsImageError::Bad {
        kind: kind.name(),
        what,
    }
}

impl Join {
    fn open(&self) -> Result<OwnedFd, NsImageError> {
        let fd = match &self.at {
            Where::Path(p) => std::fs::File::open(p)
                .map(OwnedFd::from)
                .map_err(|e| bad(self.kind, format!("cannot open {}: {e}", p.display())))?,
            // Opened again through criu's fd table: the same namespace.
            Where::Fd(n) => std::fs::File::open(format!("/proc/self/fd/{n}"))
                .map(OwnedFd::from)
                .map_err(|e| bad(self.kind, format!("inherited fd {n}: {e}")))?,
        };
        Ok(fd)
    }

    /// Joins on the calling thread (net, ipc, uts): the root that thread makes is born there.
    /// setns itself refuses a namespace of another kind (EINVAL).
    pub fn join_here(&self) -> Result<(), NsImageError> {
        if self.kind == NsKind::Time {
            return Ok(());
        }
        let fd = self.open()?;
        let flag = nix::sched::CloneFlags::from_bits_truncate(self.kind.clone_flag());
        nix::sched::setns(fd.as_fd(), flag)
            .map_err(|e| bad(self.kind, format!("setns into the namespace to join: {e}")))
    }

    /// Joins in the root's stub, driven through `r` (time).
    pub fn join_in_stub(&self, r: &mut Remote) -> Result<(), NsImageError> {
        if self.kind != NsKind::Time {
            return Ok(());
        }
        let Where::Path(p) = &self.at else {
            return Err(bad(
                self.kind,
                "only a path can be joined from inside".into(),
            ));
        };
        let t = tracee(self.kind.name());
        let path = p
            .to_str()
            .ok_or_else(|| bad(self.kind, "path is not UTF-8".into()))?;
        let fd = r.open(path, libc::O_RDONLY | libc::O_CLOEXEC).map_err(&t)?;
        r.call(
            "setns",
            libc::SYS_setns,
            &[fd, self.kind.clone_flag() as u64],
        )
        .map_err(&t)?;
        r.close(fd).map_err(&t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_ns_takes_a_pid_or_a_path_of_a_kind_it_can_join() {
        let j = parse("net:42").unwrap();
        assert_eq!(
            (j.kind, j.at),
            (NsKind::Net, Where::Path("/proc/42/ns/net".into()))
        );
        let j = parse("uts:/run/netns/x").unwrap();
        assert_eq!(j.at, Where::Path("/run/netns/x".into()));
        for bad in ["net", "foo:1", "user:1", "mnt:/x", "net:1,x", "ipc:"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
