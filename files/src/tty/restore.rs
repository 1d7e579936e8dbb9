//! Shell jobs at restore (`--shell-job`). The restored tree joins criu's session (and criu's
//! process group, unless its root led a group of its own); its terminal fds become criu's own
//! terminal: every fd that had a pty slave, virtual console or serial line gets a copy of the
//! description behind the first of criu's fds 0-2 that is a terminal, taken into the task with
//! pidfd_getfd like a pipe. /dev/tty and /dev/console are opened again by path. Once every
//! task is rebuilt, the terminal gets the dumped termios and window size back and the root's
//! group becomes its foreground group, as CRIU does.
//!
//! pty pairs the tree held itself (the master among its fds) are made again whether or not
//! this is a shell job: see `pty`.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};

use criu_proto::images::{FdTypes, PstreeEntry, TermiosEntry, TtyInfoEntry, TtyType};
use criu_proto::{ImageKind, ImageReader};
use criu_sys::tty::{self as sys, KernelTermios, Winsize, KERNEL_NCCS};
use nix::errno::Errno;

use crate::registry::SharedFiles;
use criu_proto::dump_images::DumpImages;

#[derive(Debug, thiserror::Error)]
pub enum TtyError {
    #[error(transparent)]
    Image(#[from] criu_proto::Error),
    #[error("pid {pid}: fd {fd}: {what}")]
    Fd { pid: i32, fd: u32, what: String },
    #[error("shell job: {0}")]
    Session(String),
    #[error("shell job: criu's terminal: {what}: {errno}")]
    Terminal { what: String, errno: Errno },
}

/// How one terminal file of the dump comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Way {
    /// A copy of criu's terminal (the job's terminal was the shell's).
    Inherit { info_id: u32 },
    /// Opened again by path (/dev/tty, /dev/console), with these status flags.
    Reopen { path: String, flags: u32 },
}

/// What a restore with `--shell-job` does with terminals, from images read beforehand.
#[derive(Debug)]
pub struct ShellJob {
    /// Each terminal file of the dump by files.img id.
    files: BTreeMap<u32, Way>,
    /// tty-info entries of the terminals given back, by id.
    infos: BTreeMap<u32, TtyInfoEntry>,
    /// A copy of criu's terminal, when a terminal is given back.
    terminal: Option<OwnedFd>,
    /// Whether the root leads its session (then criu's terminal is not its own).
    root_leads_session: bool,
    /// pty pairs the tree holds.
    pairs: crate::tty::pty::Pairs,
}

/// Reads tty-info.img and checks every terminal fd of the dump. pty pairs the tree holds are
/// noted to be made again. Without `--shell-job` a dump with other terminals is refused; with
/// it the tree's session and group are moved to criu's (see `join_criu_session`) and the
/// terminal to give back is chosen. `None` when there is nothing to do.
pub fn prepare(
    images: &mut DumpImages,
    shell_job: bool,
    orphan_pts_master: bool,
) -> Result<Option<ShellJob>, TtyError> {
    let mut all_infos = BTreeMap::new();
    if let Some(mut img) = ImageReader::open_if_exists(&images.dir, &ImageKind::TTY_INFO, None)? {
        for info in img.read_all::<TtyInfoEntry>()? {
            all_infos.insert(info.id, info);
        }
    }
    let mut files = BTreeMap::new();
    let mut infos = BTreeMap::new();
    let mut pairs = crate::tty::pty::Pairs::default();
    // pty indexes whose master some task holds: their slaves are not the shell's terminal.
    let paired: std::collections::BTreeSet<u32> = images
        .tasks
        .iter()
        .flat_map(|t| &t.fds)
        .filter(|fd| fd.r#type == FdTypes::Tty as i32)
        .filter_map(|fd| images.files.get(&fd.id)?.tty.as_ref())
        .filter(|tty| tty.tty_info_id & 1 == 1)
        .map(|tty| tty.tty_info_id >> 1)
        .collect();
    for t in &images.tasks {
        for fd in t.fds.iter().filter(|fd| fd.r#type == FdTypes::Tty as i32) {
            let err = |what: String| TtyError::Fd {
                pid: t.pid(),
                fd: fd.fd,
                what,
            };
            let tty = images
                .files
                .get(&fd.id)
                .and_then(|f| f.tty.as_ref())
                .ok_or_else(|| err(format!("terminal file {} not in files.img", fd.id)))?;
            let path = tty
                .regf_id
                .and_then(|id| images.reg_path(id))
                .unwrap_or("a terminal")
                .to_string();
            let info = all_infos.get(&tty.tty_info_id).ok_or_else(|| {
                err(format!(
                    "{path}: tty-info {} not in tty-info.img",
                    tty.tty_info_id
                ))
            })?;
            let is_pty = TtyType::try_from(info.r#type) == Ok(TtyType::Pty);
            let index = tty.tty_info_id >> 1;
            if is_pty && !paired.contains(&index) && info.termios.is_none() {
                // A slave hung up at dump: made again from a pair whose master is closed.
                pairs.add_slave(index, fd.id, &path, tty.flags, info);
                continue;
            }
            if is_pty && !paired.contains(&index) && orphan_pts_master {
                // Its master was a runtime's console: criu makes one for the client.
                pairs.add_slave(index, fd.id, &path, tty.flags, info);
                pairs.add_orphan(index);
                continue;
            }
            if is_pty && paired.contains(&index) {
                if info.termios.is_none() {
                    return Err(err(format!(
                        "{path}: hung-up terminals are not restored yet"
                    )));
                }
                if tty.tty_info_id & 1 == 1 {
                    pairs.add_master(index, fd.id, &path, tty.flags, info);
                } else {
                    pairs.add_slave(index, fd.id, &path, tty.flags, info);
                }
                continue;
            }
            if !shell_job && TtyType::try_from(info.r#type) == Ok(TtyType::Ctty) {
                // /dev/tty of a session whose terminal is a pair the tree holds (the dump
                // checked that).
                pairs.add_ctty_file(fd.id, tty.flags, t.pstree.sid as i32, t.pid());
                continue;
            }
            let kind = TtyType::try_from(info.r#type);
            let by_path = kind == Ok(TtyType::Console) || (!shell_job && kind == Ok(TtyType::Vt));
            if by_path && tty.regf_id.is_some() {
                // A console or virtual terminal is opened again by its path, as CRIU does.
                files.insert(
                    fd.id,
                    Way::Reopen {
                        path,
                        flags: tty.flags,
                    },
                );
                continue;
            }
            if !shell_job {
                return Err(err(format!(
                    "{path} was the shell's terminal: restore it with --shell-job"
                )));
            }
            let way = match TtyType::try_from(info.r#type) {
                Ok(TtyType::Pty | TtyType::Vt | TtyType::Serial) => {
                    if info.termios.is_none() {
                        return Err(err(format!(
                            "{path}: hung-up terminals are not restored yet"
                        )));
                    }
                    infos.insert(info.id, info.clone());
                    Way::Inherit { info_id: info.id }
                }
                Ok(TtyType::Ctty) if tty.regf_id.is_some() => Way::Reopen {
                    path,
                    flags: tty.flags,
                },
                _ => {
                    return Err(err(format!(
                        "{path}: terminals of type {} are not restored yet",
                        info.r#type
                    )))
                }
            };
            files.insert(fd.id, way);
        }
    }
    if let Some(mut img) = ImageReader::open_if_exists(&images.dir, &ImageKind::TTY_DATA, None)? {
        for e in img.read_all::<criu_proto::images::TtyDataEntry>()? {
            if !pairs.add_queued(e.tty_id, &e.data) {
                tracing::warn!(
                    "tty-data.img: {} bytes of terminal {:#x}, which is no pty pair here",
                    e.data.len(),
                    e.tty_id
                );
            }
        }
    }
    if !shell_job {
        if pairs.is_empty() && files.is_empty() {
            return Ok(None);
        }
        let root = &images.root().pstree;
        return Ok(Some(ShellJob {
            files,
            infos,
            terminal: None,
            root_leads_session: root.sid == root.pid,
            pairs,
        }));
    }
    join_criu_session(
        images,
        nix::unistd::getsid(None).map_err(session_err)?.as_raw(),
        nix::unistd::getpgrp().as_raw(),
    )?;
    let terminal = if infos.is_empty() {
        None
    } else {
        Some(criu_terminal()?)
    };
    let root = &images.root().pstree;
    Ok(Some(ShellJob {
        files,
        infos,
        terminal,
        root_leads_session: root.sid == root.pid,
        pairs,
    }))
}

fn session_err(e: Errno) -> TtyError {
    TtyError::Session(format!("cannot read criu's session: {e}"))
}

/// A copy of the first of criu's fds 0-2 that is a terminal (CRIU takes stdin).
fn criu_terminal() -> Result<OwnedFd, TtyError> {
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let streams = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()];
    let fd = streams.into_iter().find(|fd| nix::unistd::isatty(fd).unwrap_or(false)).ok_or_else(|| {
        TtyError::Session("none of criu's fds 0-2 is a terminal to give the job: run criu restore from its terminal".into())
    })?;
    fd.try_clone_to_owned().map_err(|e| TtyError::Terminal {
        what: "cannot duplicate it".into(),
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
    })
}

/// As CRIU does for a shell job whose root did not lead its session: the dumped session
/// becomes criu's session (`sid`), and unless the root led its own process group, the dumped
/// group becomes criu's group (`pgid`), in every task that had them. The root then inherits
/// both from criu instead of starting a session.
pub fn join_criu_session(images: &mut DumpImages, sid: i32, pgid: i32) -> Result<(), TtyError> {
    let mut tree: Vec<PstreeEntry> = images.tasks.iter().map(|t| t.pstree.clone()).collect();
    join_entries(&mut tree, sid, pgid)?;
    for (t, p) in images.tasks.iter_mut().zip(tree) {
        t.pstree = p;
    }
    Ok(())
}

/// `join_criu_session` on the pstree entries, root first.
fn join_entries(tree: &mut [PstreeEntry], sid: i32, pgid: i32) -> Result<(), TtyError> {
    let Some(root) = tree.first().cloned() else {
        return Ok(());
    };
    if root.sid == root.pid {
        return Ok(());
    }
    let (sid, pgid) = (sid as u32, pgid as u32);
    let clash = |what: &str, id: u32, pid: u32| {
        TtyError::Session(format!("criu's {what} {id} is also pid {pid} of the dump"))
    };
    if root.sid != sid {
        for p in tree.iter() {
            if p.pid == sid {
                return Err(clash("session", sid, p.pid));
            }
            if p.sid == sid || p.pgid == sid {
                return Err(TtyError::Session(format!(
                    "criu's session {sid} is also a session or group of pid {} in the dump",
                    p.pid
                )));
            }
        }
        for p in tree.iter_mut() {
            if p.sid == root.sid {
                p.sid = sid;
            }
            if p.pgid == root.sid {
                p.pgid = sid;
            }
        }
    }
    let root_pgid = tree[0].pgid;
    if root_pgid == root.pid || root_pgid == pgid {
        return Ok(());
    }
    for p in tree.iter() {
        if p.pid == pgid {
            return Err(clash("process group", pgid, p.pid));
        }
        if pgid != sid && p.pgid == pgid {
            return Err(TtyError::Session(format!(
                "criu's process group {pgid} is also the group of pid {} in the dump",
                p.pid
            )));
        }
    }
    for p in tree.iter_mut() {
        if p.pgid == root_pgid {
            p.pgid = pgid;
        }
    }
    Ok(())
}

impl ShellJob {
    /// Gives every terminal file of the dump its description in criu, for the tasks to take.
    pub fn hand_out(&self, shared: &mut SharedFiles) -> Result<(), TtyError> {
        shared.ctty = self.pairs.open_all(shared)?;
        for (&id, way) in &self.files {
            let fd = match (way, &self.terminal) {
                (Way::Inherit { .. }, Some(term)) => {
                    term.try_clone().map_err(|e| TtyError::Terminal {
                        what: "cannot duplicate it".into(),
                        errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                    })?
                }
                (Way::Inherit { .. }, None) => {
                    return Err(TtyError::Session("no terminal to give back".into()))
                }
                (Way::Reopen { path, flags }, _) => {
                    let flags = (*flags as i32 & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC))
                        | libc::O_NOCTTY
                        | libc::O_CLOEXEC;
                    nix::fcntl::open(
                        &shared.root.resolve(path),
                        nix::fcntl::OFlag::from_bits_retain(flags),
                        nix::sys::stat::Mode::empty(),
                    )
                    .map_err(|errno| TtyError::Terminal {
                        what: format!("cannot open {path}"),
                        errno,
                    })?
                }
            };
            shared.add_description(id, fd);
        }
        Ok(())
    }

    /// Once every task is rebuilt (still stopped): the terminal gets its dumped termios and
    /// window size, and the root's process group becomes its foreground group.
    pub fn settle_terminal(&self, root: i32) -> Result<(), TtyError> {
        let Some(term) = &self.terminal else {
            return Ok(());
        };
        // criu may be in a background group: changing the terminal would stop it with SIGTTOU.
        let ttou = nix::sys::signal::SigSet::from(nix::sys::signal::Signal::SIGTTOU);
        let mut old = nix::sys::signal::SigSet::empty();
        nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_BLOCK,
            Some(&ttou),
            Some(&mut old),
        )
        .map_err(|errno| TtyError::Terminal {
            what: "cannot block SIGTTOU".into(),
            errno,
        })?;
        let result = self.settle_blocked(term, root);
        let _ = nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&old),
            None,
        );
        result
    }

    fn settle_blocked(&self, term: &OwnedFd, root: i32) -> Result<(), TtyError> {
        let fail = |what: &str| {
            let what = what.to_string();
            move |errno| TtyError::Terminal { what, errno }
        };
        for info in self.infos.values() {
            set_owner(term, info).map_err(fail("cannot give it its owner"))?;
            if let Some(t) = &info.termios_locked {
                let want = kernel_termios(t);
                if let Err(e) = sys::set_locked_termios(term, &want) {
                    // Without the privilege, an already equal lock is fine (as CRIU does).
                    if e != Errno::EPERM
                        || sys::get_locked_termios(term).map_err(fail("TIOCGLCKTRMIOS"))? != want
                    {
                        return Err(fail("cannot set its locked termios")(e));
                    }
                }
            }
            if let Some(t) = &info.termios {
                sys::set_termios(term, &kernel_termios(t))
                    .map_err(fail("cannot set its termios"))?;
            }
            if let Some(w) = &info.winsize {
                let w = Winsize {
                    ws_row: w.ws_row as u16,
                    ws_col: w.ws_col as u16,
                    ws_xpixel: w.ws_xpixel as u16,
                    ws_ypixel: w.ws_ypixel as u16,
                };
                sys::set_winsize(term, &w).map_err(fail("cannot set its window size"))?;
            }
        }
        if !self.root_leads_session {
            let pgid = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(root))).map_err(
                fail(&format!("cannot read the process group of pid {root}")),
            )?;
            nix::unistd::tcsetpgrp(term, pgid).map_err(fail(&format!(
                "cannot make process group {pgid} its foreground group"
            )))?;
        }
        Ok(())
    }
}

/// Gives a terminal the owner its info records, when it records one (the pty slaves of a
/// pair and the shell-job terminal both keep it).
pub(crate) fn set_owner(fd: impl AsFd, info: &TtyInfoEntry) -> Result<(), Errno> {
    if let (Some(uid), Some(gid)) = (info.uid, info.gid) {
        nix::unistd::fchown(
            fd,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )?;
    }
    Ok(())
}

/// The image's termios in the kernel's layout.
pub(crate) fn kernel_termios(t: &TermiosEntry) -> KernelTermios {
    let mut c_cc = [0u8; KERNEL_NCCS];
    for (dst, src) in c_cc.iter_mut().zip(&t.c_cc) {
        *dst = *src as u8;
    }
    KernelTermios {
        c_iflag: t.c_iflag,
        c_oflag: t.c_oflag,
        c_cflag: t.c_cflag,
        c_lflag: t.c_lflag,
        c_line: t.c_line as u8,
        c_cc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(pid: u32, ppid: u32, pgid: u32, sid: u32) -> PstreeEntry {
        PstreeEntry {
            pid,
            ppid,
            pgid,
            sid,
            threads: vec![pid],
        }
    }

    /// Applies `join_criu_session` to bare pstree entries.
    fn join(tree: &[PstreeEntry], sid: i32, pgid: i32) -> Result<Vec<(u32, u32)>, TtyError> {
        let mut tasks: Vec<PstreeEntry> = tree.to_vec();
        super::join_entries(&mut tasks, sid, pgid)?;
        Ok(tasks.iter().map(|p| (p.pgid, p.sid)).collect())
    }

    #[test]
    fn a_job_in_its_shells_group_moves_to_criu_session_and_group() {
        // Job 100 ran in shell 50's session and group; its child 101 too.
        let tree = [task(100, 50, 50, 50), task(101, 100, 50, 50)];
        assert_eq!(join(&tree, 7, 9).unwrap(), vec![(9, 7), (9, 7)]);
    }

    #[test]
    fn a_group_leader_keeps_its_group_and_moves_to_criu_session() {
        let tree = [
            task(100, 50, 100, 50),
            task(101, 100, 100, 50),
            task(102, 100, 102, 50),
        ];
        assert_eq!(
            join(&tree, 7, 9).unwrap(),
            vec![(100, 7), (100, 7), (102, 7)]
        );
    }

    #[test]
    fn a_session_leader_is_left_alone() {
        let tree = [task(100, 1, 100, 100)];
        assert_eq!(join(&tree, 7, 9).unwrap(), vec![(100, 100)]);
    }

    #[test]
    fn criu_session_that_is_a_pid_of_the_dump_is_refused() {
        let tree = [task(100, 50, 50, 50), task(101, 100, 50, 50)];
        let e = join(&tree, 101, 9).unwrap_err();
        assert!(e.to_string().contains("101"), "{e}");
        let e = join(&tree, 7, 101).unwrap_err();
        assert!(e.to_string().contains("process group 101"), "{e}");
    }

    #[test]
    fn termios_converts_to_the_kernel_layout() {
        let t = TermiosEntry {
            c_iflag: 1,
            c_oflag: 2,
            c_cflag: 3,
            c_lflag: 4,
            c_line: 5,
            c_ispeed: 0,
            c_ospeed: 0,
            c_cc: (0..19).collect(),
        };
        let k = kernel_termios(&t);
        assert_eq!(
            (k.c_iflag, k.c_oflag, k.c_cflag, k.c_lflag, k.c_line),
            (1, 2, 3, 4, 5)
        );
        assert_eq!(k.c_cc[18], 18);
    }
}
