//! `/proc/PID/ns/*`: links like `net:[4026531833]` naming each namespace by inode.

use crate::error::{ParseError, Result};
use crate::fd::parse_typed;
use crate::read::{pid_path, read_link};
use crate::text::show;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NsKind {
    Cgroup,
    Ipc,
    Mnt,
    Net,
    Pid,
    Time,
    User,
    Uts,
}

impl NsKind {
    pub const ALL: [NsKind; 8] = [
        NsKind::Cgroup,
        NsKind::Ipc,
        NsKind::Mnt,
        NsKind::Net,
        NsKind::Pid,
        NsKind::Time,
        NsKind::User,
        NsKind::Uts,
    ];

    /// The kind as links spell it ("mnt", "net", ...); also the file name in /proc/PID/ns.
    pub fn name(self) -> &'static str {
        match self {
            NsKind::Cgroup => "cgroup",
            NsKind::Ipc => "ipc",
            NsKind::Mnt => "mnt",
            NsKind::Net => "net",
            NsKind::Pid => "pid",
            NsKind::Time => "time",
            NsKind::User => "user",
            NsKind::Uts => "uts",
        }
    }

    pub fn from_name(s: &str) -> Option<NsKind> {
        NsKind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The CLONE_NEW* flag for this kind.
    pub fn clone_flag(self) -> i32 {
        match self {
            NsKind::Cgroup => libc::CLONE_NEWCGROUP,
            NsKind::Ipc => libc::CLONE_NEWIPC,
            NsKind::Mnt => libc::CLONE_NEWNS,
            NsKind::Net => libc::CLONE_NEWNET,
            NsKind::Pid => libc::CLONE_NEWPID,
            NsKind::Time => libc::CLONE_NEWTIME,
            NsKind::User => libc::CLONE_NEWUSER,
            NsKind::Uts => libc::CLONE_NEWUTS,
        }
    }
}

/// One namespace link of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsLink {
    pub kind: NsKind,
    /// The `pid_for_children` / `time_for_children` link rather than the task's own.
    pub for_children: bool,
    pub ino: u64,
}

/// Parse a link target such as `net:[4026531833]`.
pub fn parse_ns_link(link: &Path) -> Result<(NsKind, u64), ParseError> {
    let b = link.as_os_str().as_bytes();
    let bad = || ParseError::whole(format!("bad namespace link {}", show(b)));
    let (kind, ino) = parse_typed(b).ok_or_else(bad)?;
    let kind = std::str::from_utf8(kind)
        .ok()
        .and_then(NsKind::from_name)
        .ok_or_else(bad)?;
    Ok((kind, ino))
}

/// Read one link, e.g. `/proc/PID/ns/net`.
pub fn read_ns(pid: i32, kind: NsKind) -> Result<NsLink> {
    read_one(pid, kind, false)
}

fn read_one(pid: i32, kind: NsKind, for_children: bool) -> Result<NsLink> {
    let file = if for_children {
        format!("ns/{}_for_children", kind.name())
    } else {
        format!("ns/{}", kind.name())
    };
    let path = pid_path(pid, &file);
    let (got, ino) = parse_ns_link(&read_link(&path)?).map_err(|e| e.at(&path))?;
    if got != kind {
        return Err(ParseError::whole(format!("link names a {} namespace", got.name())).at(&path));
    }
    Ok(NsLink {
        kind,
        for_children,
        ino,
    })
}

/// Every namespace link the kernel has for this task, including the `*_for_children` ones.
/// Kinds the kernel lacks (no such file) are left out.
pub fn read_ns_links(pid: i32) -> Result<Vec<NsLink>> {
    let mut out = Vec::new();
    for kind in NsKind::ALL {
        let children = matches!(kind, NsKind::Pid | NsKind::Time);
        for for_children in [false, true] {
            if for_children && !children {
                continue;
            }
            match read_one(pid, kind, for_children) {
                Ok(l) => out.push(l),
                // The kernel lacks this kind, or (for_children) no namespace was chosen yet.
                Err(e) if e.is_not_found() && std::fs::metadata(pid_path(pid, "")).is_ok() => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_captured_links() {
        let p = |s: &str| parse_ns_link(Path::new(s));
        assert_eq!(p("net:[4026531833]").unwrap(), (NsKind::Net, 4026531833));
        assert_eq!(p("mnt:[4026531832]").unwrap(), (NsKind::Mnt, 4026531832));
        assert_eq!(p("time:[4026531834]").unwrap(), (NsKind::Time, 4026531834));
        assert_eq!(
            p("cgroup:[4026531835]").unwrap(),
            (NsKind::Cgroup, 4026531835)
        );
        assert_eq!(
            p("foo:[1]").unwrap_err().to_string(),
            "bad namespace link \"foo:[1]\""
        );
        assert_eq!(
            p("net:[x]").unwrap_err().to_string(),
            "bad namespace link \"net:[x]\""
        );
        assert_eq!(NsKind::Mnt.clone_flag(), libc::CLONE_NEWNS);
        for k in NsKind::ALL {
            assert_eq!(NsKind::from_name(k.name()), Some(k));
        }
    }
}
