//! A cgroup criu froze must not stay frozen when criu dies: its tasks would stay stopped for
//! good, and no signal handler runs on SIGKILL. Before freezing, criu forks a keeper (a
//! process of its own group, deaf to the terminal's signals) holding the cgroup's control
//! file and the read end of a pipe whose write end only criu holds. Dismissed, it exits; at
//! end of input without a word (criu is gone) it thaws the cgroup first.

use criu_cgroups::freezer::Freezer;
use nix::errno::Errno;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Dropped once criu has thawed the cgroup itself (or frozen it again on purpose): the keeper
/// then exits without touching it.
pub struct ThawKeeper {
    pid: libc::pid_t,
    pipe: Option<OwnedFd>,
}

impl ThawKeeper {
    /// Forks the keeper of `freezer`'s cgroup, before it is frozen.
    pub fn start(freezer: &Freezer) -> std::io::Result<ThawKeeper> {
        let path = freezer.control_file();
        let control = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
            })?;
        let fork_err = |errno: Errno| {
            std::io::Error::other(format!(
                "cannot fork the thaw keeper of {}: {errno}",
                path.display()
            ))
        };
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two fds into the array it is given.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(fork_err(Errno::last()));
        }
        // SAFETY: both fds were just made by pipe2 and are owned here only.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the child runs only raw syscalls on memory it already has (no allocation, no
        // locks another thread of criu may hold) and ends with _exit.
        match unsafe { libc::fork() } {
            0 => keep(
                read.as_raw_fd(),
                write.as_raw_fd(),
                control.as_raw_fd(),
                freezer.thaw_value(),
            ),
            -1 => Err(fork_err(Errno::last())),
            pid => Ok(ThawKeeper {
                pid,
                pipe: Some(write),
            }),
        }
    }
}

impl Drop for ThawKeeper {
    fn drop(&mut self) {
        if let Some(pipe) = self.pipe.take() {
            // SAFETY: writes one byte from a live buffer to an fd we own.
            unsafe { libc::write(pipe.as_raw_fd(), b"x".as_ptr().cast(), 1) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child; status is a live int.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
    }
}

/// The keeper's life: wait for criu's word or its end, thaw in the second case.
fn keep(read: RawFd, write: RawFd, control: RawFd, thaw: &[u8]) -> ! {
    // SAFETY: plain syscalls on fds this process holds and on `thaw`, a live 'static buffer;
    // nothing here allocates or locks.
    unsafe {
        libc::close(write);
        libc::setpgid(0, 0);
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGPIPE,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        let mut byte = 0u8;
        let n = loop {
            let n = libc::read(read, (&mut byte as *mut u8).cast(), 1);
            if n >= 0 || Errno::last() != Errno::EINTR {
                break n;
            }
        };
        if n <= 0 {
            libc::pwrite(control, thaw.as_ptr().cast(), thaw.len(), 0);
        }
        libc::_exit(0)
    }
}
