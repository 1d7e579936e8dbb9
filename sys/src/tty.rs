//! Terminal ioctls for shell jobs: the kernel's own `struct termios` (TCGETS/TCSETS use it,
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
    if r < 0 {
        return Err(Errno::last());
    }
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
}
