//! A namespace file at dump: the namespace's id (as `ids-*.img` numbers it), its kind as a
//! CLONE_NEW* flag, and the fd's flags.

use std::sync::Mutex;

use criu_procfs::NsKind;
use criu_proto::images::{FdTypes, FdinfoEntry, FileEntry, NsFileEntry};

use crate::eventfd::dump::lock;
use crate::table::{fdinfo, FileStat, FileTable, FilesError};

pub fn dump_ns_fd(
    pid: i32,
    fd: i32,
    kind: NsKind,
    ino: u64,
    table: &Mutex<FileTable>,
) -> Result<FdinfoEntry, FilesError> {
    let me = std::process::id() as i32;
    let unsupported = |why: &str| FilesError::Unsupported {
        pid,
        fd,
        kind: format!("{}:[{ino}] ({why})", kind.name()),
    };
    let own = criu_procfs::read_ns(me, kind).map_err(|source| FilesError::Proc {
        pid: me,
        what: format!("ns/{}", kind.name()),
        source,
    })?;
    // criu's namespace, or the task's own (every task of the tree shares the root's).
    let theirs = criu_procfs::read_ns(pid, kind).map(|l| l.ino).ok();
    let mut t = lock(table);
    // A tree may span network namespaces: each of them has its id.
    let other_net = (kind == NsKind::Net)
        .then(|| t.netns_ids.get(&ino).copied())
        .flatten();
    let ns_id = if own.ino == ino {
        criu_ns::ns_id(&t.own_ns_ids, kind)
    } else if theirs == Some(ino) {
        criu_ns::ns_id(&t.tree_ns_ids, kind)
    } else if other_net.is_some() {
        other_net
    } else {
        return Err(unsupported(
            "a namespace that is neither criu's nor the tree's",
        ));
    };
    let ns_id = ns_id.ok_or_else(|| unsupported("no id for it"))?;
    let info = criu_procfs::read_fdinfo(pid, fd).map_err(|source| FilesError::Proc {
        pid,
        what: format!("fdinfo/{fd}"),
        source,
    })?;
    let cloexec = libc::O_CLOEXEC as u32;
    let meta =
        std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).map_err(|source| FilesError::Stat {
            pid,
            path: format!("/proc/{pid}/fd/{fd}"),
            source,
        })?;
    let id = t.described(pid, fd, FileStat::of(&meta), |id| {
        Ok::<_, FilesError>(FileEntry {
            r#type: FdTypes::Ns as i32,
            id,
            nsf: Some(NsFileEntry {
                id,
                ns_id,
                ns_cflag: kind.clone_flag() as u32,
                flags: info.flags & !cloexec,
            }),
            ..Default::default()
        })
    })?;
    Ok(fdinfo(
        id,
        fd,
        u32::from(info.flags & cloexec != 0),
        FdTypes::Ns,
    ))
}
