//! Terminal ioctls for shell jobs and pty pairs: the kernel's own `struct termios` (TCGETS/TCSETS use it,
//! not libc's larger one), locked termios, window size, and the flag queries.

use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;

/// Control characters in the kernel's `struct termios` on x86_64.
pub const KERNEL_NCCS: usize = 19;

/// `struct termios` as the kernel lays it out for TCGETS/TCSETS.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelTermios {
    pub c_iflag: u32,
    pub c_oflag: u32,
    pub c_cflag: u32,
    pub c_lflag: u32,
    pub c_line: u8,
    pub c_cc: [u8; KERNEL_NCCS],
}

/// `struct winsize`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Winsize {
    pub ws_row: u16,
    pub ws_col: u16,
    pub ws_xpixel: u16,
    pub ws_ypixel: u16,
}

/// One ioctl whose argument is a pointer to `T`.
fn ioctl_ptr<T>(fd: impl AsFd, request: libc::Ioctl, arg: *mut T) -> Result<(), Errno> {
    // SAFETY: every caller passes a request whose argument is a `T` (a plain repr(C) struct
    // or int) and a pointer to a live, writable `T`.
    let r = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), request, arg) };
    crate::ret::check(r)?;
    Ok(())
}

pub fn get_termios(fd: impl AsFd) -> Result<KernelTermios, Errno> {
    let mut t = KernelTermios::default();
    ioctl_ptr(fd, libc::TCGETS, &mut t)?;
    Ok(t)
}

/// TCSETS: applies at once.
pub fn set_termios(fd: impl AsFd, t: &KernelTermios) -> Result<(), Errno> {
    let mut t = *t;
    ioctl_ptr(fd, libc::TCSETS, &mut t)
}

pub fn get_locked_termios(fd: impl AsFd) -> Result<KernelTermios, Errno> {
    let mut t = KernelTermios::default();
    ioctl_ptr(fd, libc::TIOCGLCKTRMIOS, &mut t)?;
    Ok(t)
}

/// Needs CAP_SYS_ADMIN.
pub fn set_locked_termios(fd: impl AsFd, t: &KernelTermios) -> Result<(), Errno> {
    let mut t = *t;
    ioctl_ptr(fd, libc::TIOCSLCKTRMIOS, &mut t)
}

pub fn get_winsize(fd: impl AsFd) -> Result<Winsize, Errno> {
    let mut w = Winsize::default();
    ioctl_ptr(fd, libc::TIOCGWINSZ, &mut w)?;
    Ok(w)
}

pub fn set_winsize(fd: impl AsFd, w: &Winsize) -> Result<(), Errno> {
    let mut w = *w;
    ioctl_ptr(fd, libc::TIOCSWINSZ, &mut w)
}

/// The int-valued terminal flags a dump records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtyFlag {
    /// TIOCGEXCL: opened in exclusive mode.
    Exclusive,
    /// TIOCGPKT: pty packet mode.
    PacketMode,
    /// TIOCGPTLCK: pty locked.
    PtyLocked,
}

pub fn get_flag(fd: impl AsFd, flag: TtyFlag) -> Result<bool, Errno> {
    let request = match flag {
        TtyFlag::Exclusive => libc::TIOCGEXCL,
        TtyFlag::PacketMode => libc::TIOCGPKT,
        TtyFlag::PtyLocked => libc::TIOCGPTLCK,
    };
    let mut v: libc::c_int = 0;
    ioctl_ptr(fd, request, &mut v)?;
    Ok(v != 0)
}

/// TIOCGPTN: the index N of a pty master's slave /dev/pts/N.
pub fn pty_number(master: impl AsFd) -> Result<u32, Errno> {
    let mut n: libc::c_uint = 0;
    ioctl_ptr(master, libc::TIOCGPTN, &mut n)?;
    Ok(n)
}

/// TIOCSPTLCK: locks or unlocks a pty master's slave (a locked slave cannot be opened).
pub fn set_pty_lock(master: impl AsFd, locked: bool) -> Result<(), Errno> {
    let mut v = libc::c_int::from(locked);
    ioctl_ptr(master, libc::TIOCSPTLCK, &mut v)
}

/// TIOCPKT: packet mode of a pty master.
pub fn set_packet_mode(master: impl AsFd, on: bool) -> Result<(), Errno> {
    let mut v = libc::c_int::from(on);
    ioctl_ptr(master, libc::TIOCPKT, &mut v)
}

/// TIOCEXCL: no further opens of the terminal (but by root).
pub fn set_exclusive(fd: impl AsFd) -> Result<(), Errno> {
    // SAFETY: TIOCEXCL takes no argument.
    let r = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCEXCL) };
    crate::ret::check(r)?;
    Ok(())
}

/// TIOCGSID and TIOCGPGRP through a pty master: the session the pair is the controlling
/// terminal of and its foreground group, or `None` when it is nobody's.
pub fn session_of(master: impl AsFd) -> Result<Option<(i32, i32)>, Errno> {
    let mut sid: libc::pid_t = 0;
    match ioctl_ptr(master.as_fd(), libc::TIOCGSID, &mut sid) {
        Err(Errno::ENOTTY) => return Ok(None),
        r => r?,
    }
    let mut pgrp: libc::pid_t = 0;
    ioctl_ptr(master, libc::TIOCGPGRP, &mut pgrp)?;
    Ok(Some((sid, pgrp)))
}

/// Puts bytes back into a pty pair's queues: `for_master` is written into the slave, to be
/// read from the master again, `for_slave` into the master, to be read from the slave again.
/// Both were already processed by the line discipline once, so while they pass again output
/// processing, echo, signals and input translation are off; the termios is put back after.
pub fn refill(
    master: impl AsFd,
    slave: impl AsFd,
    for_master: &[u8],
    for_slave: &[u8],
) -> Result<(), Errno> {
    if for_master.is_empty() && for_slave.is_empty() {
        return Ok(());
    }
    let saved = get_termios(&slave)?;
    let mut quiet = saved;
    quiet.c_oflag &= !libc::OPOST;
    quiet.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ISIG | libc::IEXTEN);
    // IXON stays: changing it would show as a status byte to a packet-mode master.
    quiet.c_iflag &= !(libc::ICRNL | libc::INLCR | libc::IGNCR | libc::ISTRIP);
    set_termios(&slave, &quiet)?;
    let result = write_all(&slave, for_master)
        .and_then(|()| write_all(&master, for_slave))
        .and_then(|()| {
            // The slave takes input in a kernel worker; polling it waits for that worker, so
            // that the bytes are processed before the termios is put back.
            let mut p = [nix::poll::PollFd::new(
                slave.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            nix::poll::poll(&mut p, 0u16).map(drop)
        });
    let back = set_termios(&slave, &saved);
    result.and(back)
}

fn write_all(fd: impl AsFd, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        let n = nix::unistd::write(&fd, bytes)?;
        if n == 0 {
            return Err(Errno::EIO);
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

/// Takes what can be read from a pty end now without waiting (in canonical mode, complete
/// lines only), at most `limit` bytes. A master in packet mode gives each read a status byte
/// first, which is dropped (and reads that carry only a status).
pub fn drain(fd: impl AsFd, packet_mode: bool, limit: usize) -> Result<Vec<u8>, Errno> {
    use nix::poll::{poll, PollFd, PollFlags};
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < limit {
        let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        if poll(&mut p, 0u16)? == 0
            || !p[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN))
        {
            break;
        }
        let n = match nix::unistd::read(fd.as_fd(), &mut buf) {
            Ok(0) | Err(Errno::EIO | Errno::EAGAIN) => break,
            Ok(n) => n,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        match (packet_mode, chunk.split_first()) {
            (false, _) => out.extend_from_slice(chunk),
            (true, Some((0, data))) => out.extend_from_slice(data),
            (true, _) => {}
        }
    }
    out.truncate(limit);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn termios_and_window_size_round_trip_on_a_pty() {
        let ws = nix::pty::Winsize {
            ws_row: 33,
            ws_col: 101,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None).unwrap();
        assert_eq!(
            get_winsize(&pty.slave).unwrap(),
            Winsize {
                ws_row: 33,
                ws_col: 101,
                ws_xpixel: 0,
                ws_ypixel: 0
            }
        );
        set_winsize(
            &pty.master,
            &Winsize {
                ws_row: 7,
                ws_col: 9,
                ws_xpixel: 1,
                ws_ypixel: 2,
            },
        )
        .unwrap();
        assert_eq!(
            get_winsize(&pty.slave).unwrap(),
            Winsize {
                ws_row: 7,
                ws_col: 9,
                ws_xpixel: 1,
                ws_ypixel: 2
            }
        );

        let mut t = get_termios(&pty.slave).unwrap();
        let libc_view = nix::sys::termios::tcgetattr(&pty.slave).unwrap();
        assert_eq!(t.c_lflag, libc::termios::from(libc_view).c_lflag);
        t.c_lflag ^= libc::ECHO;
        set_termios(&pty.slave, &t).unwrap();
        assert_eq!(get_termios(&pty.slave).unwrap(), t);
        assert!(!get_flag(&pty.slave, TtyFlag::Exclusive).unwrap());
        assert!(!get_flag(&pty.master, TtyFlag::PtyLocked).unwrap());
    }

    #[test]
    fn pty_master_index_lock_and_packet_mode() {
        use std::os::fd::AsRawFd;
        let pty = nix::pty::openpty(None, None).unwrap();
        let n = pty_number(&pty.master).unwrap();
        let path = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd())).unwrap();
        assert_eq!(path, std::path::PathBuf::from(format!("/dev/pts/{n}")));
        set_packet_mode(&pty.master, true).unwrap();
        assert!(get_flag(&pty.master, TtyFlag::PacketMode).unwrap());
        set_pty_lock(&pty.master, true).unwrap();
        assert!(get_flag(&pty.master, TtyFlag::PtyLocked).unwrap());
        set_pty_lock(&pty.master, false).unwrap();
        // Nobody's controlling terminal.
        assert_eq!(session_of(&pty.master).unwrap(), None);
        assert_eq!(pty_number(&pty.slave), Err(Errno::ENOTTY));
    }

    #[test]
    fn queued_bytes_are_drained_and_put_back_once() {
        let pty = nix::pty::openpty(None, None).unwrap();
        // Echo is on: a line typed at the master is echoed back to it.
        nix::unistd::write(&pty.master, b"ping\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let for_slave = drain(&pty.slave, false, 1 << 14).unwrap();
        let for_master = drain(&pty.master, false, 1 << 14).unwrap();
        assert_eq!(for_slave, b"ping\n");
        assert_eq!(for_master, b"ping\r\n");
        assert!(drain(&pty.slave, false, 1 << 14).unwrap().is_empty());
        let before = get_termios(&pty.slave).unwrap();
        refill(&pty.master, &pty.slave, &for_master, &for_slave).unwrap();
        assert_eq!(get_termios(&pty.slave).unwrap(), before);
        std::thread::sleep(std::time::Duration::from_millis(50));
        // The same bytes, not echoed or translated a second time.
        assert_eq!(drain(&pty.slave, false, 1 << 14).unwrap(), b"ping\n");
        assert_eq!(drain(&pty.master, false, 1 << 14).unwrap(), b"ping\r\n");
    }
}
