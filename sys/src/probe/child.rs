//! Children made for a probe. The caller may be multi-threaded, so the child only makes raw
//! syscalls (no allocation, no locks, no logging) and then stops, waits or exits.

use super::{sys, ProbeError};
use nix::errno::Errno;

/// A forked child; it is killed and reaped when dropped unless already reaped.
pub(crate) struct Child {
    pid: libc::pid_t,
    reaped: bool,
}

impl Child {
    /// Forks; the child runs `body` and then exits. `body` must only make raw syscalls.
    pub(crate) fn spawn(body: impl FnOnce()) -> Result<Child, ProbeError> {
        // SAFETY: fork has no memory-safety preconditions here; the child only runs `body`,
        // which by contract makes raw syscalls only, so no lock held by another thread of the
        // parent is ever needed in the child.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(sys("fork a probe child")(Errno::last()));
        }
        if pid == 0 {
            body();
            raw::exit(127);
        }
        Ok(Child { pid, reaped: false })
    }

    pub(crate) fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// waitpid() on the child with `flags`; returns the raw status.
    pub(crate) fn wait(&mut self, flags: libc::c_int) -> Result<libc::c_int, ProbeError> {
        let mut status = 0;
        loop {
            // SAFETY: `status` is a valid out pointer for the call.
            let ret = unsafe { libc::waitpid(self.pid, &mut status, flags | libc::__WALL) };
            if ret == self.pid {
                break;
            }
            let errno = Errno::last();
            if ret < 0 && errno == Errno::EINTR {
                continue;
            }
            return Err(sys(format!("wait for probe child {}", self.pid))(errno));
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            self.reaped = true;
        }
        Ok(status)
    }

    /// Waits until the child is stopped (job-control or ptrace stop); returns the status.
    pub(crate) fn wait_stopped(&mut self) -> Result<libc::c_int, ProbeError> {
        let status = self.wait(libc::WUNTRACED)?;
        if !libc::WIFSTOPPED(status) {
            return Err(super::missing(format!(
                "probe child {} did not stop (status {:#x})",
                self.pid, status
            )));
        }
        Ok(status)
    }

    /// Waits until the child is gone; returns the raw status.
    pub(crate) fn wait_exit(&mut self) -> Result<libc::c_int, ProbeError> {
        loop {
            let status = self.wait(0)?;
            if self.reaped {
                return Ok(status);
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: plain syscalls on our own child's pid; `status` is a valid out pointer.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            let mut status = 0;
            while libc::waitpid(self.pid, &mut status, libc::__WALL) < 0
                && Errno::last() == Errno::EINTR
            {}
        }
    }
}

/// Raw syscalls for use inside a probe child.
pub(crate) mod raw {
    /// Stops the calling process with SIGSTOP.
    pub(crate) fn stop_self() {
        // SAFETY: raw getpid/kill syscalls; no memory is touched.
        unsafe {
            let pid = libc::syscall(libc::SYS_getpid);
            libc::syscall(libc::SYS_kill, pid, libc::SIGSTOP);
        }
    }

    /// Sleeps until killed.
    pub(crate) fn pause_forever() -> ! {
        loop {
            // SAFETY: raw pause syscall; no memory is touched.
            unsafe { libc::syscall(libc::SYS_pause) };
        }
    }

    /// Ends the process with `code` without running any userspace exit code.
    pub(crate) fn exit(code: libc::c_int) -> ! {
        loop {
            // SAFETY: raw exit_group syscall; it does not return.
            unsafe { libc::syscall(libc::SYS_exit_group, code) };
        }
    }
}
