//! Taking a copy of another process's fd through a pidfd (pidfd_open + pidfd_getfd).

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;

/// A copy (same open file description) of `pid`'s fd `fd`, through a pidfd. Needs ptrace
/// access to `pid`.
pub fn take_fd(pid: i32, fd: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes only integers.
    let pidfd = crate::ret::new_fd(unsafe {
        libc::syscall(libc::SYS_pidfd_open, pid as libc::c_long, 0 as libc::c_long)
    })?;
    // SAFETY: pidfd_getfd takes only integers.
    let got = unsafe {
        libc::syscall(
            libc::SYS_pidfd_getfd,
            pidfd.as_raw_fd() as libc::c_long,
            fd as libc::c_long,
            0 as libc::c_long,
        )
    };
    // A new fd, close-on-exec as pidfd_getfd makes them.
    crate::ret::new_fd(got)
}

/// Sends `fd` over the unix datagram socket `sock` (SCM_RIGHTS, one byte of data).
pub fn send_fd(sock: &OwnedFd, fd: std::os::fd::RawFd) -> Result<(), Errno> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [fd];
    let iov = [std::io::IoSlice::new(&[0u8])];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).map(drop)
}

/// A pidfd of `pid` (pidfd_open; `flags` may be PIDFD_NONBLOCK).
pub fn open(pid: i32, flags: u32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes only integers.
    crate::ret::new_fd(unsafe {
        libc::syscall(
            libc::SYS_pidfd_open,
            pid as libc::c_long,
            flags as libc::c_long,
        )
    })
}

/// Sends `sig` to the process of `pidfd` (pidfd_send_signal: never a process that reused the
/// pid).
pub fn send_signal(pidfd: &OwnedFd, sig: i32) -> Result<(), Errno> {
    // SAFETY: a null siginfo asks the kernel to fill it in as kill(2) would.
    crate::ret::check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd() as libc::c_long,
            sig as libc::c_long,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_long,
        )
    })
    .map(drop)
}

/// pidfds of a process that is gone: a child made for this (it only waits, every signal
/// blocked), one pidfd per entry of `flags`, each its own description; then the child is
/// killed and reaped.
pub fn dead_pidfds(flags: &[u32]) -> Result<Vec<OwnedFd>, Errno> {
    // SAFETY: clone without CLONE_VM is fork; the child only makes raw syscalls (no lock, no
    // allocation) until it is killed.
    let child =
        unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0) };
    if child == 0 {
        crate::clone::block_all_signals_raw();
        loop {
            // SAFETY: pause takes no arguments.
            unsafe { libc::syscall(libc::SYS_pause) };
        }
    }
    let child = crate::ret::check(child)? as i32;
    let fds: Result<Vec<OwnedFd>, Errno> = flags.iter().map(|&f| open(child, f)).collect();
    let pid = nix::unistd::Pid::from_raw(child);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    nix::sys::wait::waitpid(pid, None)?;
    fds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_fd_is_the_same_description() {
        let me = std::process::id() as i32;
        let f = std::fs::File::open("/proc/self/status").unwrap();
        let copy = take_fd(me, f.as_raw_fd()).unwrap();
        assert_eq!(
            crate::kcmp::same_file(me, f.as_raw_fd(), me, copy.as_raw_fd()),
            Ok(true)
        );
        assert_eq!(take_fd(me, 100_000).unwrap_err(), Errno::EBADF);
    }
}
