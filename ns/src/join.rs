//! Namespaces the restored tree joins instead of getting new ones: `--join-ns NS:PID|PATH`
//! (`--join-ns user:PID|PATH,UID,GID` for a user namespace), and a network namespace the dump
//! named external (`--external net[INODE]:KEY`), handed to the restore as
//! `--inherit-fd fd[N]:KEY`. net, ipc and uts are joined by criu's thread that makes the root
//! (the root is born in them); time, mnt and user by the root itself (injected setns), since a
//! multi-threaded process cannot join those. As CRIU: the user namespace is joined last, then
//! the root takes UID and GID there (default 0), and the namespaces the tree gets new are made
//! from inside it (see `Owned::clone_flags`), so that they belong to it.

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
    /// For a user namespace: the uid and gid the root takes in it.
    pub ids: Option<(u32, u32)>,
}

/// Parses `--join-ns NS:PID|PATH[,OPTIONS]`.
pub fn parse(arg: &str) -> Result<Join, String> {
    let bad = |why: &str| format!("--join-ns {arg}: {why}");
    let (kind, rest) = arg
        .split_once(':')
        .ok_or_else(|| bad("expected NS:PID|PATH"))?;
    let kind = NsKind::from_name(kind).ok_or_else(|| bad("unknown namespace kind"))?;
    if matches!(kind, NsKind::Pid | NsKind::Cgroup) {
        return Err(bad(
            "joining a pid or cgroup namespace is not supported (a pid namespace can be \
             given with --external and --inherit-fd)",
        ));
    }
    let (rest, ids) = match rest.split_once(',') {
        None => (rest, None),
        Some(_) if kind != NsKind::User => {
            return Err(bad("options are only for a user namespace"))
        }
        Some((at, opts)) => {
            let id = |s: Option<&str>| -> Result<u32, String> {
                s.and_then(|s| s.parse::<u32>().ok())
                    .ok_or_else(|| bad("expected user:PID|PATH,UID,GID"))
            };
            let mut parts = opts.split(',');
            let uid = id(parts.next())?;
            let gid = id(parts.next())?;
            if parts.next().is_some() {
                return Err(bad("expected user:PID|PATH,UID,GID"));
            }
            (at, Some((uid, gid)))
        }
    };
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
        ids,
    })
}

fn bad(kind: NsKind, what: String) -> NsImageError {
    NsImageError::Bad {
        kind: kind.name(),
        what,
    }
}

impl Join {
    pub(crate) fn open(&self) -> Result<OwnedFd, NsImageError> {
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

    /// Whether the root joins it itself (see [`Join::join_in_stub`]).
    pub fn in_stub(&self) -> bool {
        matches!(self.kind, NsKind::Time | NsKind::Mnt | NsKind::User)
    }

    /// Joins on the calling thread (net, ipc, uts): the root that thread makes is born there.
    /// setns itself refuses a namespace of another kind (EINVAL).
    pub fn join_here(&self) -> Result<(), NsImageError> {
        if self.in_stub() {
            return Ok(());
        }
        let fd = self.open()?;
        let flag = nix::sched::CloneFlags::from_bits_truncate(self.kind.clone_flag());
        nix::sched::setns(fd.as_fd(), flag)
            .map_err(|e| bad(self.kind, format!("setns into the namespace to join: {e}")))
    }

    /// Joins in the root's stub, driven through `r` (time, mnt, user; the caller joins a
    /// user namespace last, then calls [`Join::take_ids`]).
    pub fn join_in_stub(&self, r: &mut Remote) -> Result<(), NsImageError> {
        if !self.in_stub() {
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
        .map_err(|e| bad(self.kind, format!("setns into {path}: {e}")))?;
        r.close(fd).map_err(&t)
    }

    /// For a joined user namespace, once the root is in it and has made its namespaces:
    /// the uid and gid it takes there (default 0).
    pub fn take_ids(&self, r: &mut Remote) -> Result<(), NsImageError> {
        if self.kind != NsKind::User {
            return Ok(());
        }
        // gid first: once the uid is not 0 the root may no longer change it.
        let (uid, gid) = self.ids.unwrap_or((0, 0));
        for (name, nr, id) in [
            ("setresgid", libc::SYS_setresgid, gid),
            ("setresuid", libc::SYS_setresuid, uid),
        ] {
            let id = u64::from(id);
            r.call(name, nr, &[id, id, id])
                .map_err(|e| bad(self.kind, format!("{name}({id}) inside it: {e}")))?;
        }
        Ok(())
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
        let j = parse("user:7,1000,100").unwrap();
        assert_eq!(
            (j.kind, j.at, j.ids),
            (
                NsKind::User,
                Where::Path("/proc/7/ns/user".into()),
                Some((1000, 100))
            )
        );
        assert_eq!(parse("mnt:/x").unwrap().ids, None);
        for bad in [
            "net",
            "foo:1",
            "pid:1",
            "cgroup:1",
            "net:1,x",
            "ipc:",
            "user:1,2",
            "user:1,a,b",
            "user:1,2,3,4",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
