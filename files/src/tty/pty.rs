//! pty pairs the dumped tree held itself (a /dev/ptmx master and /dev/pts/N slaves). criu
//! makes a new pair with the same index N (opening /dev/ptmx until the kernel hands out N,
//! as CRIU does: a slave's path is its index), unlocks it, opens each slave description,
//! and gives the pair its termios, window size, packet mode, lock and exclusive flags. Each
//! master and slave file of the dump becomes one description that its tasks take. A pair
//! that was a session's controlling terminal becomes it again: the session leader opens the
//! slave and takes it with TIOCSCTTY (injected), then gives it its foreground group.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};

use criu_proto::images::{TtyInfoEntry, WinsizeEntry};
use criu_sys::tty::{self as sys, Winsize};
use criu_tracee::remote::Remote;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::registry::SharedFiles;
use crate::tty::restore::{kernel_termios, set_owner, TtyError};
use crate::{task_err, InstallError};
use criu_proto::dump_images::TaskImages;

/// Flags that mean something only when a file is created; never replayed.
const CREATION_FLAGS: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC;
/// The highest pty index a dump records (as CRIU).
const MAX_PTY_INDEX: u32 = 1000;

/// One file of a pair: files.img id, path and status flags.
#[derive(Debug, Clone)]
struct PairFile {
    id: u32,
    path: String,
    flags: u32,
}

#[derive(Debug, Default)]
struct Pair {
    master: Option<(PairFile, TtyInfoEntry)>,
    slaves: Vec<PairFile>,
    slave_info: Option<TtyInfoEntry>,
    /// Bytes queued at dump: to be read from the master, and from the slave.
    for_master: Vec<u8>,
    for_slave: Vec<u8>,
}

/// The pairs of the dump, by index.
#[derive(Debug, Default)]
pub struct Pairs {
    by_index: BTreeMap<u32, Pair>,
    /// /dev/tty files: (file id, status flags, session and pid of a task holding it).
    ctty_files: Vec<(u32, u32, i32, i32)>,
    /// Indexes whose master was outside the tree (RPC `orphan_pts_master`): criu makes one,
    /// for the client.
    orphans: std::collections::BTreeSet<u32>,
}

/// Controlling terminals to give back: by session id, (slave path, foreground group).
#[derive(Debug, Default)]
pub struct Controlling {
    by_sid: BTreeMap<i32, (String, i32)>,
    /// /dev/tty files the session leader opens again once it has its terminal, with their
    /// status flags. Until then they hold a description of the slave.
    reopen: BTreeMap<u32, u32>,
    /// Masters made for pairs whose master was outside the tree, for the RPC client.
    pub orphan_masters: Vec<OwnedFd>,
}

impl Pairs {
    pub fn add_master(&mut self, index: u32, id: u32, path: &str, flags: u32, info: &TtyInfoEntry) {
        let file = PairFile {
            id,
            path: path.to_string(),
            flags,
        };
        self.by_index.entry(index).or_default().master = Some((file, info.clone()));
    }

    pub fn add_slave(&mut self, index: u32, id: u32, path: &str, flags: u32, info: &TtyInfoEntry) {
        let pair = self.by_index.entry(index).or_default();
        if pair.slaves.iter().any(|s| s.id == id) {
            return;
        }
        pair.slaves.push(PairFile {
            id,
            path: path.to_string(),
            flags,
        });
        pair.slave_info = Some(info.clone());
    }

    /// Pair `index`, whose slaves were added, had its master outside the tree: criu makes a
    /// new one and hands it to the client ([`Controlling::orphan_masters`]).
    pub fn add_orphan(&mut self, index: u32) {
        self.orphans.insert(index);
    }

    /// A /dev/tty fd of task `pid` in session `sid`.
    pub fn add_ctty_file(&mut self, id: u32, flags: u32, sid: i32, pid: i32) {
        self.ctty_files.push((id, flags, sid, pid));
    }

    /// Bytes that tty-data.img says were read from the terminal with tty-info id `tty_info_id`
    /// (index << 1, plus 1 for a master); false if no pair has it.
    pub fn add_queued(&mut self, tty_info_id: u32, data: &[u8]) -> bool {
        let Some(pair) = self.by_index.get_mut(&(tty_info_id >> 1)) else {
            return false;
        };
        if tty_info_id & 1 == 1 && pair.master.is_some() {
            pair.for_master.extend_from_slice(data);
        } else if tty_info_id & 1 == 0 && !pair.slaves.is_empty() {
            pair.for_slave.extend_from_slice(data);
        } else {
            return false;
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.by_index.is_empty() && self.ctty_files.is_empty()
    }

    /// /dev/tty files hold a description of their session's slave until the session leader
    /// opens /dev/tty again in its place (see `set_controlling`).
    fn stand_ins(&self, ctl: &mut Controlling, shared: &mut SharedFiles) -> Result<(), TtyError> {
        for &(id, flags, sid, pid) in &self.ctty_files {
            if shared.description(id).is_some() {
                continue;
            }
            let (path, _) = ctl.by_sid.get(&sid).ok_or_else(|| {
                TtyError::Session(format!(
                    "pid {pid}: /dev/tty: session {sid} has no controlling terminal to restore"
                ))
            })?;
            let open_flags = (flags as i32 & !CREATION_FLAGS) | libc::O_NOCTTY | libc::O_CLOEXEC;
            let fd = nix::fcntl::open(
                &shared.root.resolve(path),
                OFlag::from_bits_retain(open_flags),
                Mode::empty(),
            )
            .map_err(|errno| TtyError::Terminal {
                what: format!("pid {pid}: /dev/tty: cannot open {path}"),
                errno,
            })?;
            shared.add_description(id, fd);
            if pid == sid {
                ctl.reopen.insert(id, flags);
            } else {
                tracing::warn!(
                    "pid {pid}: /dev/tty comes back as {path}: only a session leader gets its controlling terminal back"
                );
            }
        }
        Ok(())
    }

    /// Makes every pair and hands out its descriptions; returns the controlling terminals.
    pub fn open_all(&self, shared: &mut SharedFiles) -> Result<Controlling, TtyError> {
        let mut ctl = Controlling::default();
        for (&index, pair) in &self.by_index {
            // The master's file and info; none for a master that was outside the tree.
            let (mfile, minfo) = match (&pair.master, &pair.slave_info) {
                (Some((mfile, minfo)), _) => (Some(mfile), minfo),
                (None, Some(info)) if self.orphans.contains(&index) => (None, info),
                (None, _) => {
                    hung_slaves(index, pair, shared)?;
                    continue;
                }
            };
            let err = |what: &str| {
                let what = format!("pty {index}: {what}");
                move |errno: Errno| TtyError::Terminal { what, errno }
            };
            // The tree's own devpts, if it has one: through its root.
            let (path, flags) = mfile.map_or(("/dev/ptmx", libc::O_RDWR as u32), |f| {
                (f.path.as_str(), f.flags)
            });
            let master = master_of(shared, index, path, flags)?;
            // termios and window size live on the slave side; a master sets them there.
            let params = pair.slave_info.as_ref().unwrap_or(minfo);
            set_params(&master, params).map_err(|(what, errno)| err(what)(errno))?;
            // An orphan's master-side state was never seen.
            let minfo = if mfile.is_some() {
                minfo
            } else {
                &TtyInfoEntry::default()
            };
            if minfo.packet_mode {
                sys::set_packet_mode(&master, true).map_err(err("cannot set packet mode"))?;
            }
            let slaves = open_slaves(index, pair, &shared.root)?;
            if let (Some(info), Some((_, fd))) = (&pair.slave_info, slaves.first()) {
                set_owner(fd, info).map_err(err("cannot give the slave its owner"))?;
                if info.exclusive {
                    sys::set_exclusive(fd).map_err(err("cannot make the slave exclusive"))?;
                }
            }
            if !pair.for_master.is_empty() || !pair.for_slave.is_empty() {
                // A pair whose slave no task holds gets one for the time it takes.
                let temporary;
                let slave = match slaves.first() {
                    Some((_, fd)) => fd,
                    None => {
                        let path = format!("/dev/pts/{index}");
                        temporary = nix::fcntl::open(
                            &shared.root.resolve(&path),
                            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
                            Mode::empty(),
                        )
                        .map_err(err(&format!("cannot open {path}")))?;
                        &temporary
                    }
                };
                // As CRIU: a terminal never promised delivery, so bytes that do not go back
                // are only reported.
                if let Err(e) = sys::refill(&master, slave, &pair.for_master, &pair.for_slave) {
                    tracing::warn!("pty {index}: cannot put its queued bytes back: {e}");
                }
            }
            if minfo.exclusive {
                sys::set_exclusive(&master).map_err(err("cannot make the master exclusive"))?;
            }
            if minfo.locked {
                sys::set_pty_lock(&master, true).map_err(err("cannot lock it"))?;
            }
            // The session it was the controlling terminal of, seen through either side.
            let (sid, pgrp) = [Some(minfo), pair.slave_info.as_ref()]
                .into_iter()
                .flatten()
                .map(|i| (i.sid as i32, i.pgrp as i32))
                .find(|&(sid, _)| sid > 0)
                .unwrap_or((0, 0));
            if sid > 0 {
                ctl.by_sid.insert(sid, (format!("/dev/pts/{index}"), pgrp));
            }
            match mfile {
                Some(mfile) => shared.add_description(mfile.id, master),
                None => ctl.orphan_masters.push(master),
            }
            for (id, fd) in slaves {
                shared.add_description(id, fd);
            }
        }
        self.stand_ins(&mut ctl, shared)?;
        Ok(ctl)
    }
}

/// Slaves hung up at dump (their master was closed): opened on a new pair of the same index
/// whose master is closed at once, which hangs them up again.
fn hung_slaves(index: u32, pair: &Pair, shared: &mut SharedFiles) -> Result<(), TtyError> {
    let master = master_of(shared, index, "/dev/ptmx", libc::O_RDWR as u32)?;
    let slaves = open_slaves(index, pair, &shared.root)?;
    drop(master);
    for (id, fd) in slaves {
        shared.add_description(id, fd);
    }
    Ok(())
}

/// Opens each slave description of pair `index` (its master must be open and unlocked),
/// with its file id; the same for a live pair and a hung-up one.
fn open_slaves(
    index: u32,
    pair: &Pair,
    root: &crate::root::FsRoot,
) -> Result<Vec<(u32, OwnedFd)>, TtyError> {
    pair.slaves
        .iter()
        .map(|s| {
            let flags = (s.flags as i32 & !CREATION_FLAGS) | libc::O_NOCTTY | libc::O_CLOEXEC;
            let fd = nix::fcntl::open(
                &root.resolve(&s.path),
                OFlag::from_bits_retain(flags),
                Mode::empty(),
            )
            .map_err(|errno| TtyError::Terminal {
                what: format!("pty {index}: cannot open {}", s.path),
                errno,
            })?;
            Ok((s.id, fd))
        })
        .collect()
}

/// The master of pair `index`, with status `flags`: the one the mount tree made for a slave
/// it binds (a container's /dev/console), else a new one from `ptmx` (through the tree's root).
fn master_of(
    shared: &mut SharedFiles,
    index: u32,
    ptmx: &str,
    flags: u32,
) -> Result<OwnedFd, TtyError> {
    let Some(held) = shared.held_ptys.remove(&index) else {
        let ptmx = shared.root.resolve(ptmx);
        return open_ptmx_index(index, &ptmx.to_string_lossy(), flags);
    };
    let status = OFlag::from_bits_truncate(flags as i32 & !CREATION_FLAGS);
    nix::fcntl::fcntl(&held, nix::fcntl::FcntlArg::F_SETFL(status)).map_err(|errno| {
        TtyError::Terminal {
            what: format!("pty {index}: cannot set the master's status flags"),
            errno,
        }
    })?;
    Ok(held)
}

/// Opens /dev/ptmx until the kernel hands out pty `index` (it gives the lowest free one);
/// the others opened on the way are closed again. The master comes back unlocked, so that
/// its slaves can be opened.
fn open_ptmx_index(index: u32, path: &str, flags: u32) -> Result<OwnedFd, TtyError> {
    let flags = (flags as i32 & !CREATION_FLAGS) | libc::O_NOCTTY | libc::O_CLOEXEC;
    let mut held = Vec::new();
    loop {
        let fd = nix::fcntl::open(path, OFlag::from_bits_retain(flags), Mode::empty()).map_err(
            |errno| TtyError::Terminal {
                what: format!("pty {index}: cannot open {path}"),
                errno,
            },
        )?;
        let got = sys::pty_number(&fd).map_err(|errno| TtyError::Terminal {
            what: format!("pty {index}: TIOCGPTN"),
            errno,
        })?;
        if got == index {
            sys::set_pty_lock(&fd, false).map_err(|errno| TtyError::Terminal {
                what: format!("pty {index}: cannot unlock it"),
                errno,
            })?;
            return Ok(fd);
        }
        if got > index || got > MAX_PTY_INDEX {
            return Err(TtyError::Terminal {
                what: format!("pty {index} is in use (the next free one is {got}): its slave path would differ"),
                errno: Errno::EBUSY,
            });
        }
        held.push(fd);
    }
}

/// Locked termios, termios and window size of a pair, set through its master.
fn set_params(fd: impl AsFd, info: &TtyInfoEntry) -> Result<(), (&'static str, Errno)> {
    if let Some(t) = &info.termios_locked {
        let want = kernel_termios(t);
        if let Err(e) = sys::set_locked_termios(&fd, &want) {
            let same = sys::get_locked_termios(&fd).is_ok_and(|have| have == want);
            if e != Errno::EPERM || !same {
                return Err(("cannot set its locked termios", e));
            }
        }
    }
    if let Some(t) = &info.termios {
        sys::set_termios(&fd, &kernel_termios(t)).map_err(|e| ("cannot set its termios", e))?;
    }
    if let Some(w) = &info.winsize {
        sys::set_winsize(&fd, &winsize(w)).map_err(|e| ("cannot set its window size", e))?;
    }
    Ok(())
}

fn winsize(w: &WinsizeEntry) -> Winsize {
    Winsize {
        ws_row: w.ws_row as u16,
        ws_col: w.ws_col as u16,
        ws_xpixel: w.ws_xpixel as u16,
        ws_ypixel: w.ws_ypixel as u16,
    }
}

/// In a session leader whose session had a pair as controlling terminal: opens the slave,
/// takes it as controlling terminal, gives it its foreground group, closes it again.
pub fn set_controlling(
    r: &mut Remote,
    ctl: &Controlling,
    t: &TaskImages,
) -> Result<(), InstallError> {
    let pid = t.pid();
    if t.pstree.sid as i32 != pid {
        return Ok(());
    }
    let Some((path, pgrp)) = ctl.by_sid.get(&pid) else {
        return Ok(());
    };
    let fd = r.open(path, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC)?;
    let what = format!("cannot take {path} as controlling terminal");
    ioctl_or_close(r, pid, fd, libc::TIOCSCTTY, 0, &what)?;
    if *pgrp > 0 {
        let at = r.arg(&pgrp.to_le_bytes())?;
        let what = format!("cannot make group {pgrp} the foreground of {path}");
        ioctl_or_close(r, pid, fd, libc::TIOCSPGRP, at, &what)?;
    }
    r.close(fd)?;
    for f in t.fds.iter() {
        let Some(&flags) = ctl.reopen.get(&f.id) else {
            continue;
        };
        let flags = (flags as i32 & !CREATION_FLAGS) | libc::O_NOCTTY | libc::O_CLOEXEC;
        let tty = r.open("/dev/tty", flags)?;
        let cloexec = if f.flags & libc::FD_CLOEXEC as u32 != 0 {
            libc::O_CLOEXEC as u64
        } else {
            0
        };
        r.call("dup3", libc::SYS_dup3, &[tty, u64::from(f.fd), cloexec])?;
        r.close(tty)?;
    }
    Ok(())
}

/// An injected ioctl on `pid`'s `fd`; when it fails the fd is closed and `what` says why.
fn ioctl_or_close(
    r: &mut Remote,
    pid: i32,
    fd: u64,
    request: u64,
    arg: u64,
    what: &str,
) -> Result<(), InstallError> {
    let ret = r.try_call(libc::SYS_ioctl, &[fd, request, arg])?;
    if ret < 0 {
        let _ = r.close(fd);
        return Err(task_err(
            pid,
            format!("pid {pid}: {what}: {}", Errno::from_raw(-ret as i32)),
        ));
    }
    Ok(())
}
