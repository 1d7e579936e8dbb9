//! The owner of an open file description (F_SETOWN/F_SETOWN_EX, F_SETSIG): read with fcntl
//! through a copy of the task's fd taken with pidfd_getfd, since the owner belongs to the
//! description and the copy shares it. Kept in the FownEntry of each kind's sub-message.

use criu_proto::images::{FileEntry, FownEntry};

#[derive(Debug, thiserror::Error)]
#[error("pid {pid}: fd {fd}: file owner: {what}: {errno}")]
pub struct FownError {
    pub pid: i32,
    pub fd: i32,
    pub what: &'static str,
    pub errno: nix::errno::Errno,
}

/// The owner of `pid`'s `fd`; `flags` are its status flags (an O_PATH fd has no owner).
pub fn read(pid: i32, fd: i32, flags: u32) -> Result<FownEntry, FownError> {
    if flags & libc::O_PATH as u32 != 0 {
        return Ok(FownEntry::default());
    }
    let err = |what| {
        move |errno| FownError {
            pid,
            fd,
            what,
            errno,
        }
    };
    let copy = criu_sys::pidfd::take_fd(pid, fd).map_err(err("pidfd_getfd"))?;
    let signum = criu_sys::fown::signal(&copy).map_err(err("F_GETSIG"))?;
    let owner = criu_sys::fown::owner(&copy).map_err(err("F_GETOWN_EX"))?;
    // As CRIU: no owner, no uids; the signal is kept either way.
    if owner.pid == 0 {
        return Ok(FownEntry {
            signum: signum as u32,
            ..Default::default()
        });
    }
    let (uid, euid) = criu_sys::fown::owner_uids(&copy).map_err(err("F_GETOWNER_UIDS"))?;
    // The image holds the owner as the task sees it (in its own pid namespace, if any).
    let seen = criu_procfs::pid_seen_by(pid, owner.pid)
        .ok_or(nix::errno::Errno::ESRCH)
        .map_err(err("its owner is outside the task's pid namespace"))?;
    Ok(FownEntry {
        uid,
        euid,
        signum: signum as u32,
        pid_type: owner.kind as u32,
        pid: seen as u32,
    })
}

/// Puts `fown` in the sub-message of `entry` that carries an owner (every kind CRIU gives
/// one); false if `entry` has none of them.
pub fn set_in(entry: &mut FileEntry, fown: FownEntry) -> bool {
    let e = entry;
    let slot = if let Some(x) = e.reg.as_mut() {
        &mut x.fown
    } else if let Some(x) = e.pipe.as_mut() {
        &mut x.fown
    } else if let Some(x) = e.efd.as_mut() {
        &mut x.fown
    } else if let Some(x) = e.epfd.as_mut() {
        &mut x.fown
    } else if let Some(x) = e.sgfd.as_mut() {
        &mut x.fown
    } else if let Some(x) = e.tfd.as_mut() {
        &mut x.fown
    } else if let Some(x) = e.ify.as_mut() {
        &mut x.fown
    } else if let Some(x) = e.ffy.as_mut() {
        &mut x.fown
    } else if let Some(x) = e.tty.as_mut() {
        &mut x.fown
    } else if let Some(x) = e.memfd.as_mut() {
        &mut x.fown
    } else if let Some(x) = e.usk.as_mut() {
        &mut x.fown
    } else if let Some(x) = e.isk.as_mut() {
        &mut x.fown
    } else if let Some(x) = e.nlsk.as_mut() {
        &mut x.fown
    } else if let Some(x) = e.psk.as_mut() {
        &mut x.fown
    } else {
        return false;
    };
    *slot = fown;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn reads_the_owner_and_signal_of_a_description() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let me = std::process::id() as i32;
        let none = read(me, w.as_raw_fd(), 0).unwrap();
        assert_eq!(none, FownEntry::default());
        criu_sys::fown::set_owner(
            &r,
            criu_sys::fown::OwnerEx {
                kind: criu_sys::fown::F_OWNER_PID,
                pid: me,
            },
        )
        .unwrap();
        criu_sys::fown::set_signal(&r, libc::SIGUSR1).unwrap();
        let f = read(me, r.as_raw_fd(), 0).unwrap();
        assert_eq!(
            (f.signum, f.pid_type, f.pid),
            (
                libc::SIGUSR1 as u32,
                criu_sys::fown::F_OWNER_PID as u32,
                me as u32
            )
        );
        assert_eq!(f.euid, nix::unistd::geteuid().as_raw());
        assert_eq!(
            read(me, r.as_raw_fd(), libc::O_PATH as u32).unwrap(),
            FownEntry::default()
        );
    }

    #[test]
    fn the_owner_goes_in_the_kind_that_has_one() {
        let fown = FownEntry {
            pid: 7,
            ..Default::default()
        };
        let mut e = crate::pipes::dump::pipe_entry(1, 2, 0);
        assert!(set_in(&mut e, fown));
        assert_eq!(e.pipe.unwrap().fown.pid, 7);
        assert!(!set_in(&mut FileEntry::default(), fown));
    }
}
