//! The tty images of a dump: one `tty-info.img` entry per terminal (termios, window size,
//! session and foreground group; the pty index for pairs) and the bytes queued in pairs the
//! tree holds (`tty-data.img`).

use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use criu_proto::images::{
    TermiosEntry, TtyDataEntry, TtyInfoEntry, TtyPtyEntry, TtyType, WinsizeEntry,
};
use criu_sys::tty::{self as sys, KernelTermios, TtyFlag};
use nix::errno::Errno;

use super::dump::{Driver, Terminals, TtyError, MAX_PTY_INDEX, PTY_SLAVE_MAJOR};
/// The tty-info entry of the terminal behind `pid`'s fd `fd`, read through a copy of it.
pub(crate) fn tty_info(
    pid: i32,
    fd: i32,
    path: &Path,
    meta: &std::fs::Metadata,
    driver: Driver,
    index: u32,
    info_id: u32,
) -> Result<TtyInfoEntry, TtyError> {
    let io = |what: &'static str| {
        move |errno: Errno| TtyError::Io {
            pid,
            fd,
            path: path.display().to_string(),
            what,
            errno,
        }
    };
    let copy: OwnedFd =
        criu_sys::pidfd::take_fd(pid, fd).map_err(io("cannot take a copy with pidfd_getfd"))?;
    // The session and foreground group it serves: only a task's controlling terminal has
    // them for that task (what TIOCGSID/TIOCGPGRP in the task would say).
    let stat = criu_procfs::read_stat(pid).map_err(|source| TtyError::Proc {
        pid,
        fd,
        path: path.display().to_string(),
        source,
    })?;
    let (sid, pgrp) = if stat.tty_nr as u32 == meta.rdev() as u32 {
        (stat.session, stat.tpgid.max(0))
    } else {
        (0, 0)
    };
    let hung_up = |e: Errno| match e {
        Errno::EIO => TtyError::Unsupported {
            pid,
            fd,
            path: path.display().to_string(),
            what: "a hung-up terminal".into(),
        },
        e => io("terminal ioctl")(e),
    };
    if driver == Driver::PtySlave && sys::get_termios(&copy) == Err(Errno::EIO) {
        // Its master is gone: only the hung-up husk is left, which restore makes again from a
        // new pair whose master it closes (as CRIU does).
        return Ok(TtyInfoEntry {
            id: info_id,
            r#type: TtyType::Pty as i32,
            rdev: meta.rdev() as u32,
            pty: Some(TtyPtyEntry { index }),
            dev: Some(meta.dev() as u32),
            uid: Some(meta.uid()),
            gid: Some(meta.gid()),
            ..Default::default()
        });
    }
    let flag = |f| match sys::get_flag(&copy, f) {
        Err(Errno::ENOTTY | Errno::EINVAL) => Ok(false),
        other => other.map_err(hung_up),
    };
    let is_pty = matches!(driver, Driver::PtySlave | Driver::PtyMaster);
    let exclusive = flag(TtyFlag::Exclusive)?;
    let (packet_mode, locked) = if is_pty {
        (flag(TtyFlag::PacketMode)?, flag(TtyFlag::PtyLocked)?)
    } else {
        (false, false)
    };
    // A master tells the session of its pair from anywhere.
    let (sid, pgrp) = if driver == Driver::PtyMaster {
        sys::session_of(&copy).map_err(hung_up)?.unwrap_or((0, 0))
    } else {
        (sid, pgrp)
    };
    // As the task sees them (0: outside its pid namespace).
    let (sid, pgrp) = (
        criu_procfs::pid_seen_by(pid, sid).unwrap_or(0),
        criu_procfs::pid_seen_by(pid, pgrp).unwrap_or(0),
    );
    let termios = sys::get_termios(&copy).map_err(hung_up)?;
    let termios_locked = sys::get_locked_termios(&copy).map_err(hung_up)?;
    let w = sys::get_winsize(&copy).map_err(hung_up)?;
    Ok(TtyInfoEntry {
        id: info_id,
        r#type: driver.tty_type() as i32,
        locked,
        exclusive,
        packet_mode,
        sid: sid as u32,
        pgrp: pgrp as u32,
        rdev: meta.rdev() as u32,
        termios: Some(termios_entry(&termios)),
        termios_locked: Some(termios_entry(&termios_locked)),
        winsize: Some(WinsizeEntry {
            ws_row: u32::from(w.ws_row),
            ws_col: u32::from(w.ws_col),
            ws_xpixel: u32::from(w.ws_xpixel),
            ws_ypixel: u32::from(w.ws_ypixel),
        }),
        pty: is_pty.then_some(TtyPtyEntry { index }),
        dev: Some(meta.dev() as u32),
        uid: Some(meta.uid()),
        gid: Some(meta.gid()),
    })
}

/// The index of the pair of `pid`'s pty master fd `fd`, through a copy of it.
pub(crate) fn master_index(pid: i32, fd: i32, path: &str) -> Result<u32, TtyError> {
    let io = |what: &'static str| {
        move |errno: Errno| TtyError::Io {
            pid,
            fd,
            path: path.to_string(),
            what,
            errno,
        }
    };
    let copy: OwnedFd =
        criu_sys::pidfd::take_fd(pid, fd).map_err(io("cannot take a copy with pidfd_getfd"))?;
    let index = sys::pty_number(&copy).map_err(io("TIOCGPTN"))?;
    if index > MAX_PTY_INDEX {
        return Err(TtyError::Unsupported {
            pid,
            fd,
            path: path.to_string(),
            what: format!("a pty master of index {index} (above {MAX_PTY_INDEX})"),
        });
    }
    Ok(index)
}

/// The pty index of `pid`'s controlling terminal, if it is a pty slave.
pub(crate) fn ctty_index(pid: i32) -> Option<u32> {
    pty_index_of_tty_nr(criu_procfs::read_stat(pid).ok()?.tty_nr as u32)
}

/// The pty index of a `tty_nr` of /proc/PID/stat, if it names a pty slave.
pub(crate) fn pty_index_of_tty_nr(tty_nr: u32) -> Option<u32> {
    // The kernel's old encoding: major in bits 8-15, minor in 0-7 and 20-31.
    let (major, minor) = (
        (tty_nr >> 8) & 0xfff,
        (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00),
    );
    // Slaves past index 255 take the next majors.
    (PTY_SLAVE_MAJOR..PTY_SLAVE_MAJOR + 8)
        .contains(&major)
        .then(|| (major - PTY_SLAVE_MAJOR) * 256 + minor)
}

/// The most bytes kept per pty end (as CRIU).
const QUEUED_LIMIT: usize = 16384;

/// Takes the bytes queued in each pair the tree holds (both ends) into tty-data.img, by the
/// tty-info id of the end they are read from. Reading takes them out of the pair: with
/// `write_back` (the tree runs on) they are put back.
pub fn dump_queued_data(dir: &Path, ttys: &Terminals, write_back: bool) -> Result<(), TtyError> {
    let mut entries = Vec::new();
    for (&index, seen) in &ttys.ptys {
        let (Some((_, master)), Some((_, slave))) = (&seen.master_end, &seen.slave_end) else {
            continue;
        };
        let err = |errno| TtyError::Queued { index, errno };
        let packet = ttys
            .infos
            .get(&((index << 1) | 1))
            .is_some_and(|i| i.packet_mode);
        let for_master = sys::drain(master, packet, QUEUED_LIMIT).map_err(err)?;
        let for_slave = sys::drain(slave, false, QUEUED_LIMIT).map_err(err)?;
        if write_back {
            sys::refill(master, slave, &for_master, &for_slave).map_err(err)?;
        }
        // Keyed by tty-info id, as CRIU does: the master's is index << 1 | 1, the slave's
        // index << 1.
        for (id, data) in [((index << 1) | 1, for_master), (index << 1, for_slave)] {
            if !data.is_empty() {
                entries.push(TtyDataEntry { tty_id: id, data });
            }
        }
    }
    if entries.is_empty() {
        return Ok(());
    }
    let mut w = criu_proto::ImageWriter::create(dir, &criu_proto::ImageKind::TTY_DATA, None)?;
    for e in &entries {
        w.write(e)?;
    }
    w.finish()?;
    Ok(())
}

/// The kernel's termios as the image keeps it (speeds stay 0: TCGETS has none).
pub(crate) fn termios_entry(t: &KernelTermios) -> TermiosEntry {
    TermiosEntry {
        c_iflag: t.c_iflag,
        c_oflag: t.c_oflag,
        c_cflag: t.c_cflag,
        c_lflag: t.c_lflag,
        c_line: u32::from(t.c_line),
        c_ispeed: 0,
        c_ospeed: 0,
        c_cc: t.c_cc.iter().map(|&c| u32::from(c)).collect(),
    }
}

/// Writes tty-info.img when the dump has terminals.
pub fn write_tty_info(dir: &Path, ttys: &Terminals) -> criu_proto::Result<()> {
    if ttys.infos.is_empty() {
        return Ok(());
    }
    let mut w = criu_proto::ImageWriter::create(dir, &criu_proto::ImageKind::TTY_INFO, None)?;
    for info in ttys.infos() {
        w.write(info)?;
    }
    w.finish()?;
    Ok(())
}
