//! Terminals in a dump. A task run from a shell has the shell's terminal (a pty slave such as
//! /dev/pts/3, a virtual console, a serial line) on its fds; with `--shell-job` such an fd is
//! recorded as CRIU records it: a regular-file entry for the device path, a TTY file entry
//! pointing at it and at one `tty-info.img` entry per terminal (termios, window size, the
//! session and foreground group it served), so that restore gives the fd criu's own terminal.
//! Without `--shell-job` the dump refuses such fds.
//!
//! pty pairs the tree holds itself (a /dev/ptmx master and its /dev/pts/N slaves) are recorded
//! the same way, the master with tty-info id `index << 1 | 1`, and restore makes a new pair
//! with the same index. Whether a slave is the shell's terminal or half of a pair the tree
//! holds is known only once every fd is seen: `verify` decides then.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use criu_proto::images::{
    FdTypes, FdinfoEntry, FileEntry, RegFileEntry, TtyFileEntry, TtyInfoEntry, TtyType,
};
use nix::errno::Errno;

use super::dump_info::{ctty_index, master_index, tty_info};
use crate::table::{fdinfo, FileTable};

#[derive(Debug, thiserror::Error)]
pub enum TtyError {
    #[error("pid {pid}: fd {fd}: {path} is a terminal: the task is attached to a shell's terminal; dump it with --shell-job")]
    NeedsShellJob { pid: i32, fd: i32, path: String },
    #[error("pid {pid}: fd {fd}: {path}: {what} is not supported by this dump")]
    Unsupported {
        pid: i32,
        fd: i32,
        path: String,
        what: String,
    },
    #[error("pid {pid}: fd {fd}: {path}: {what}: {errno}")]
    Io {
        pid: i32,
        fd: i32,
        path: String,
        what: &'static str,
        errno: Errno,
    },
    #[error("pid {pid}: fd {fd}: {path}: {source}")]
    Proc {
        pid: i32,
        fd: i32,
        path: String,
        source: criu_procfs::ProcError,
    },
    #[error("pty {index}: cannot take its queued bytes: {errno}")]
    Queued { index: u32, errno: Errno },
    #[error(transparent)]
    Image(#[from] criu_proto::Error),
    #[error("pid {pid}: fd {fd}: only one pty of a shell job can be given back at restore, and {first} is one already ({path} is another)")]
    SecondPty {
        pid: i32,
        fd: i32,
        path: String,
        first: String,
    },
    #[error(transparent)]
    Fown(#[from] crate::fown::dump::FownError),
}

/// Index numbers CRIU gives terminals that are not ptys; a tty-info id is `index << 1`, plus
/// one for a pty master.
const CONSOLE_INDEX: u32 = 1002;
const VT_INDEX: u32 = 1004;
const CTTY_INDEX: u32 = 1006;
const SERIAL_INDEX: u32 = 1010;
pub(crate) const MAX_PTY_INDEX: u32 = 1000;

/// Device majors (linux/major.h).
const TTY_MAJOR: u32 = 4;
const TTYAUX_MAJOR: u32 = 5;
const PTY_MASTER_MAJORS: std::ops::RangeInclusive<u32> = 128..=135;
pub(crate) const PTY_SLAVE_MAJOR: u32 = 136;
const USB_SERIAL_MAJOR: u32 = 188;
const LOW_DENSE_SERIAL_MAJOR: u32 = 204;

/// What kind of terminal a character device is, as CRIU tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    PtySlave,
    PtyMaster,
    Console,
    Ctty,
    Vt,
    Serial,
}

impl Driver {
    /// The terminal driver of device `rdev`, or `None` for a device that is no terminal CRIU
    /// knows.
    pub fn of(rdev: u64) -> Option<Driver> {
        let (major, minor) = (libc::major(rdev), libc::minor(rdev));
        match major {
            TTYAUX_MAJOR => match minor {
                0 => Some(Driver::Ctty),
                1 => Some(Driver::Console),
                2 => Some(Driver::PtyMaster),
                _ => None,
            },
            TTY_MAJOR if (1..=63).contains(&minor) => Some(Driver::Vt),
            USB_SERIAL_MAJOR | LOW_DENSE_SERIAL_MAJOR => Some(Driver::Serial),
            m if PTY_MASTER_MAJORS.contains(&m) => Some(Driver::PtyMaster),
            PTY_SLAVE_MAJOR => Some(Driver::PtySlave),
            _ => None,
        }
    }

    pub(crate) fn tty_type(self) -> TtyType {
        match self {
            Driver::PtySlave | Driver::PtyMaster => TtyType::Pty,
            Driver::Console => TtyType::Console,
            Driver::Ctty => TtyType::Ctty,
            Driver::Vt => TtyType::Vt,
            Driver::Serial => TtyType::Serial,
        }
    }
}

/// The terminals of one dump.
#[derive(Debug, Default)]
pub struct Terminals {
    /// `--shell-job`: terminal fds are allowed.
    pub shell_job: bool,
    /// RPC `orphan_pts_master`: one pty slave whose master the tree does not hold is allowed.
    pub orphan_pts_master: bool,
    /// tty-info entries by id.
    pub(crate) infos: BTreeMap<u32, TtyInfoEntry>,
    /// Descriptions already recorded: (pid, fd, file id), to find fds that share one.
    seen: Vec<(i32, i32, u32)>,
    /// pty indexes seen: whether the tree holds the master, and the first slave fd seen.
    pub(crate) ptys: BTreeMap<u32, PtySeen>,
    /// /dev/tty fds: (pid, fd, path, pty index of the task's controlling terminal).
    ctty_fds: Vec<(i32, i32, String, Option<u32>)>,
}

#[derive(Debug, Default)]
pub(crate) struct PtySeen {
    pub(crate) master: bool,
    /// The slave is hung up (its master was closed): not the shell's terminal either.
    pub(crate) hung: bool,
    /// (pid, fd, path) of the first slave fd seen.
    pub(crate) slave: Option<(i32, i32, String)>,
    /// criu's copies of the first master and slave descriptions, with their file ids, to take
    /// the bytes queued in the pair at the end of the dump.
    pub(crate) master_end: Option<(u32, OwnedFd)>,
    pub(crate) slave_end: Option<(u32, OwnedFd)>,
}

impl Terminals {
    /// tty-info.img entries, by id.
    pub fn infos(&self) -> impl Iterator<Item = &TtyInfoEntry> {
        self.infos.values()
    }
}

/// Whether the device `meta` is a terminal this module handles.
pub fn is_terminal(meta: &std::fs::Metadata) -> bool {
    std::os::unix::fs::FileTypeExt::is_char_device(&meta.file_type())
        && Driver::of(meta.rdev()).is_some()
}

/// The pty index of a /dev/pts/N path.
fn pty_index(path: &Path, rdev: u64) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    let index: u32 = name.parse().ok()?;
    (index <= MAX_PTY_INDEX && index == libc::minor(rdev)).then_some(index)
}

/// Records `pid`'s fd `fd`, open on terminal `path`, and returns its fdinfo entry.
/// `flags` are its status flags (no O_CLOEXEC), `fd_flags` its FD_CLOEXEC bit.
pub fn dump_tty_fd(
    pid: i32,
    fd: i32,
    path: &Path,
    meta: &std::fs::Metadata,
    (flags, fd_flags, mnt_id): (u32, u32, i32),
    table: &mut FileTable,
) -> Result<FdinfoEntry, TtyError> {
    let shown = path.display().to_string();
    let driver = Driver::of(meta.rdev()).ok_or_else(|| TtyError::Unsupported {
        pid,
        fd,
        path: shown.clone(),
        what: "this kind of terminal".into(),
    })?;
    let is_pty = matches!(driver, Driver::PtyMaster | Driver::PtySlave);
    // A pty slave may be half of a pair the tree holds, and /dev/tty may stand for one:
    // `verify` decides at the end. A console or virtual terminal is opened again by its path,
    // as CRIU does.
    let by_path = matches!(driver, Driver::Console | Driver::Vt);
    if !is_pty && !by_path && driver != Driver::Ctty && !table.ttys.shell_job {
        return Err(TtyError::NeedsShellJob {
            pid,
            fd,
            path: shown,
        });
    }
    let unsupported = |what: &str| TtyError::Unsupported {
        pid,
        fd,
        path: shown.clone(),
        what: what.into(),
    };
    let index = match driver {
        Driver::PtyMaster => master_index(pid, fd, &shown)?,
        Driver::PtySlave => pty_index(path, meta.rdev())
            .ok_or_else(|| unsupported("a pty slave outside /dev/pts or above index 1000"))?,
        Driver::Console => CONSOLE_INDEX,
        Driver::Ctty => {
            table
                .ttys
                .ctty_fds
                .push((pid, fd, shown.clone(), ctty_index(pid)));
            CTTY_INDEX
        }
        Driver::Vt => VT_INDEX,
        Driver::Serial => SERIAL_INDEX,
    };
    let fdinfo = |id| fdinfo(id, fd, fd_flags, FdTypes::Tty);

    // fds that share one open file description share one entry.
    let known = table
        .ttys
        .seen
        .iter()
        .find(|&&(p, f, _)| criu_sys::kcmp::same_file(pid, fd, p, f) == Ok(true))
        .map(|&(_, _, id)| id);
    if let Some(id) = known {
        return Ok(fdinfo(id));
    }

    let info_id = (index << 1) | u32::from(driver == Driver::PtyMaster);
    if is_pty {
        let seen = table.ttys.ptys.entry(index).or_default();
        if driver == Driver::PtyMaster {
            seen.master = true;
        } else if seen.slave.is_none() {
            seen.slave = Some((pid, fd, shown.clone()));
        }
    }
    if let std::collections::btree_map::Entry::Vacant(slot) = table.ttys.infos.entry(info_id) {
        let info = slot.insert(tty_info(pid, fd, path, meta, driver, index, info_id)?);
        if driver == Driver::PtySlave && info.termios.is_none() {
            table.ttys.ptys.entry(index).or_default().hung = true;
        }
    }

    // The owner goes in both entries, as CRIU writes them; restore uses the tty's.
    let fown = crate::fown::dump::read(pid, fd, flags)?;
    let reg = RegFileEntry {
        flags,
        pos: 0,
        fown,
        name: shown,
        mnt_id: Some(mnt_id),
        size: Some(meta.size()),
        mode: Some(meta.mode()),
        ..Default::default()
    };
    let regf_id = table.add(|id| FileEntry {
        r#type: FdTypes::Reg as i32,
        id,
        reg: Some(RegFileEntry { id, ..reg }),
        ..Default::default()
    });
    let tty = TtyFileEntry {
        id: 0,
        tty_info_id: info_id,
        flags,
        fown,
        regf_id: Some(regf_id),
    };
    let id = table.add(|id| FileEntry {
        r#type: FdTypes::Tty as i32,
        id,
        tty: Some(TtyFileEntry { id, ..tty }),
        ..Default::default()
    });
    table.ttys.seen.push((pid, fd, id));
    if is_pty {
        let seen = table.ttys.ptys.entry(index).or_default();
        let end = if driver == Driver::PtyMaster {
            &mut seen.master_end
        } else {
            &mut seen.slave_end
        };
        if end.is_none() {
            let copy = criu_sys::pidfd::take_fd(pid, fd).map_err(|errno| TtyError::Io {
                pid,
                fd,
                path: path.display().to_string(),
                what: "cannot take a copy with pidfd_getfd",
                errno,
            })?;
            *end = Some((id, copy));
        }
    }
    Ok(fdinfo(id))
}

/// Once every fd is seen: a pty slave whose master the tree does not hold is the shell's
/// terminal, which needs `--shell-job` (or, from a runtime, `orphan_pts_master`), and only
/// one such terminal can be given back. A /dev/tty fd needs `--shell-job` too unless it
/// stands for a pair the tree holds (or that orphan slave).
pub fn verify(ttys: &Terminals) -> Result<(), TtyError> {
    let held = |i: u32| {
        ttys.ptys
            .get(&i)
            .is_some_and(|s| s.master || (ttys.orphan_pts_master && s.slave.is_some()))
    };
    if !ttys.shell_job {
        for (pid, fd, path, index) in &ttys.ctty_fds {
            if !index.is_some_and(held) {
                return Err(TtyError::NeedsShellJob {
                    pid: *pid,
                    fd: *fd,
                    path: path.clone(),
                });
            }
        }
    }
    let mut inherited: Option<&(i32, i32, String)> = None;
    for seen in ttys.ptys.values().filter(|s| !s.master && !s.hung) {
        let Some(slave) = &seen.slave else { continue };
        let (pid, fd, path) = slave.clone();
        if !ttys.shell_job && !ttys.orphan_pts_master {
            return Err(TtyError::NeedsShellJob { pid, fd, path });
        }
        if let Some((_, _, first)) = inherited {
            return Err(TtyError::SecondPty {
                pid,
                fd,
                path,
                first: first.clone(),
            });
        }
        inherited = Some(slave);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tty::dump_info::pty_index_of_tty_nr;
    use criu_proto::images::TtyPtyEntry;

    #[test]
    fn drivers_are_told_apart_as_criu_does() {
        let dev = |ma, mi| libc::makedev(ma, mi);
        assert_eq!(Driver::of(dev(136, 3)), Some(Driver::PtySlave));
        assert_eq!(Driver::of(dev(5, 2)), Some(Driver::PtyMaster));
        assert_eq!(Driver::of(dev(128, 0)), Some(Driver::PtyMaster));
        assert_eq!(Driver::of(dev(5, 0)), Some(Driver::Ctty));
        assert_eq!(Driver::of(dev(5, 1)), Some(Driver::Console));
        assert_eq!(Driver::of(dev(4, 1)), Some(Driver::Vt));
        assert_eq!(Driver::of(dev(4, 64)), None);
        assert_eq!(Driver::of(dev(4, 0)), None);
        assert_eq!(Driver::of(dev(188, 0)), Some(Driver::Serial));
        assert_eq!(Driver::of(dev(1, 3)), None);
    }

    #[test]
    fn the_controlling_pty_index_is_decoded_from_tty_nr() {
        // /dev/pts/3 is 136:3; /dev/pts/300 is 137:44; /dev/tty1 is 4:1.
        assert_eq!(pty_index_of_tty_nr((136 << 8) | 3), Some(3));
        assert_eq!(pty_index_of_tty_nr((137 << 8) | 44), Some(300));
        assert_eq!(pty_index_of_tty_nr((4 << 8) | 1), None);
        assert_eq!(pty_index_of_tty_nr(0), None);
    }

    #[test]
    fn pty_index_comes_from_the_path_and_must_match_the_device() {
        let rdev = libc::makedev(136, 7);
        assert_eq!(pty_index(Path::new("/dev/pts/7"), rdev), Some(7));
        assert_eq!(pty_index(Path::new("/dev/pts/8"), rdev), None);
        assert_eq!(pty_index(Path::new("/dev/pts/x"), rdev), None);
    }

    #[test]
    fn a_pty_fd_is_recorded_with_its_termios_and_a_dup_shares_its_entry() {
        use std::os::fd::AsRawFd;
        let ws = nix::pty::Winsize {
            ws_row: 21,
            ws_col: 77,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None).unwrap();
        let me = std::process::id() as i32;
        let fd = pty.slave.as_raw_fd();
        let dup = pty.slave.try_clone().unwrap();
        let path = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let mut table = FileTable::new(Default::default());
        let a = dump_tty_fd(me, fd, &path, &meta, (2, 0, 1), &mut table).unwrap();
        // Without its master in the dump the slave is the shell's terminal.
        let refused = verify(&table.ttys).unwrap_err();
        assert!(
            matches!(refused, TtyError::NeedsShellJob { .. }),
            "{refused}"
        );
        table.ttys.shell_job = true;
        verify(&table.ttys).unwrap();
        let b = dump_tty_fd(me, dup.as_raw_fd(), &path, &meta, (2, 1, 1), &mut table).unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!((a.r#type, b.flags), (FdTypes::Tty as i32, 1));
        let entries = table.entries();
        assert_eq!(entries.len(), 2);
        let reg = entries[0].reg.as_ref().unwrap();
        assert_eq!(reg.name, path.display().to_string());
        let tty = entries[1].tty.as_ref().unwrap();
        let index = libc::minor(meta.rdev());
        assert_eq!(
            (tty.id, tty.tty_info_id, tty.regf_id),
            (a.id, index << 1, Some(reg.id))
        );
        let infos: Vec<_> = table.ttys.infos().cloned().collect();
        assert_eq!(infos.len(), 1);
        assert_eq!(infos[0].r#type, TtyType::Pty as i32);
        assert_eq!(infos[0].pty, Some(TtyPtyEntry { index }));
        assert_eq!(
            infos[0].winsize.as_ref().map(|w| (w.ws_row, w.ws_col)),
            Some((21, 77))
        );
        assert_eq!(
            infos[0].termios.as_ref().unwrap().c_cc.len(),
            criu_sys::tty::KERNEL_NCCS
        );
        // Not our controlling terminal: no session or group.
        assert_eq!((infos[0].sid, infos[0].pgrp), (0, 0));

        let other = nix::pty::openpty(None, None).unwrap();
        let ofd = other.slave.as_raw_fd();
        let opath = std::fs::read_link(format!("/proc/self/fd/{ofd}")).unwrap();
        let ometa = std::fs::metadata(&opath).unwrap();
        dump_tty_fd(me, ofd, &opath, &ometa, (2, 0, 1), &mut table).unwrap();
        let second = verify(&table.ttys).unwrap_err();
        assert!(matches!(second, TtyError::SecondPty { .. }), "{second}");
    }

    #[test]
    fn a_pair_held_by_the_tree_needs_no_shell_job() {
        use std::os::fd::AsRawFd;
        let pty = nix::pty::openpty(None, None).unwrap();
        criu_sys::tty::set_packet_mode(&pty.master, true).unwrap();
        let me = std::process::id() as i32;
        let mut table = FileTable::new(Default::default());
        let mut dump = |fd: i32| {
            let path = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
            let meta = std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap();
            dump_tty_fd(me, fd, &path, &meta, (2, 0, 1), &mut table).unwrap()
        };
        let s = dump(pty.slave.as_raw_fd());
        let m = dump(pty.master.as_raw_fd());
        assert_ne!(s.id, m.id);
        verify(&table.ttys).unwrap();
        let index = criu_sys::tty::pty_number(&pty.master).unwrap();
        let infos: Vec<_> = table.ttys.infos().cloned().collect();
        let ids: Vec<u32> = infos.iter().map(|i| i.id).collect();
        assert_eq!(ids, [index << 1, (index << 1) | 1]);
        assert_eq!(infos[1].pty, Some(TtyPtyEntry { index }));
        assert!(infos[1].packet_mode);
        let master = table.entries().iter().find(|e| e.id == m.id).unwrap();
        assert_eq!(master.tty.as_ref().unwrap().tty_info_id, (index << 1) | 1);
        let reg_id = master.tty.as_ref().unwrap().regf_id.unwrap();
        let reg = table.entries().iter().find(|e| e.id == reg_id).unwrap();
        assert_eq!(reg.reg.as_ref().unwrap().name, "/dev/ptmx");
    }
}
