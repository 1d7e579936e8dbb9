//! One seized thread. A `Tracee` is `!Send`: the kernel answers ptrace requests only from the
//! thread that seized the task, so the handle cannot leave that thread.

use crate::error::{io_err, ptrace_err, Result, TraceeError};
use crate::raw;
use crate::regs::{xsave_size, Regs, SyscallRestart, Xsave};
use crate::signals::SigInfo;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

/// `PTRACE_EVENT_STOP`: the stop PTRACE_INTERRUPT and group stops report under PTRACE_SEIZE.
const PTRACE_EVENT_STOP: i32 = 128;

/// How a seized thread is stopped now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Running (seized, not stopped, or stop not yet collected).
    Running,
    /// A ptrace stop: after PTRACE_INTERRUPT, a group stop (`sig` is the stop signal) or the
    /// trap that ends an injected syscall.
    Stopped { sig: i32 },
}

/// One thread seized with PTRACE_SEIZE by the calling OS thread.
#[derive(Debug)]
pub struct Tracee {
    tid: i32,
    tgid: i32,
    stop: Stop,
    detached: bool,
    /// `*const ()` makes the handle `!Send` and `!Sync`.
    _owner_thread: PhantomData<*const ()>,
}

/// What waiting for a stop found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    Stopped,
    /// Not stopped yet (only from a non-blocking wait).
    NotYet,
    /// The thread exited or was killed.
    Gone,
}

impl Tracee {
    /// Seizes thread `tid` of process `tgid` (PTRACE_SEIZE; the thread keeps running), with
    /// its seccomp filters suspended while it is traced (PTRACE_O_SUSPEND_SECCOMP, as CRIU
    /// does: a filter or strict mode would kill or fail injected calls) where criu may ask it.
    pub fn seize(tgid: i32, tid: i32) -> Result<Tracee> {
        crate::guard::install();
        match raw::seize(tid, raw::PTRACE_O_SUSPEND_SECCOMP) {
            // Needs CAP_SYS_ADMIN, and criu itself not under seccomp.
            Err(nix::errno::Errno::EPERM) => raw::seize(tid, 0),
            other => other,
        }
        .map_err(ptrace_err(tid, "PTRACE_SEIZE"))?;
        Ok(Tracee {
            tid,
            tgid,
            stop: Stop::Running,
            detached: false,
            _owner_thread: PhantomData,
        })
    }

    /// Seizes, interrupts and waits for thread `tid` to stop.
    pub fn seize_stopped(tgid: i32, tid: i32, timeout: Duration) -> Result<Tracee> {
        let mut t = Tracee::seize(tgid, tid)?;
        t.interrupt()?;
        match t.wait_stop(Some(Instant::now() + timeout))? {
            WaitOutcome::Stopped => Ok(t),
            WaitOutcome::Gone => Err(TraceeError::Gone {
                tid,
                how: "exited while being seized".into(),
            }),
            WaitOutcome::NotYet => Err(TraceeError::Timeout {
                tid,
                secs: timeout.as_secs_f64(),
            }),
        }
    }

    pub fn tid(&self) -> i32 {
        self.tid
    }

    pub fn tgid(&self) -> i32 {
        self.tgid
    }

    pub fn stop(&self) -> Stop {
        self.stop
    }

    pub fn is_stopped(&self) -> bool {
        matches!(self.stop, Stop::Stopped { .. })
    }

    /// Asks the thread to stop (PTRACE_INTERRUPT); collect the stop with `wait_stop`.
    pub fn interrupt(&mut self) -> Result<()> {
        raw::interrupt(self.tid).map_err(ptrace_err(self.tid, "PTRACE_INTERRUPT"))
    }

    /// One look at the thread's state changes. A signal about to be delivered is passed on and
    /// the interrupt stays pending, so the thread stops right after.
    pub fn poll_stop(&mut self) -> Result<WaitOutcome> {
        self.collect(libc::WNOHANG)
    }

    /// Waits for the thread to stop, until `deadline` if given (polling) or for good.
    pub fn wait_stop(&mut self, deadline: Option<Instant>) -> Result<WaitOutcome> {
        let Some(deadline) = deadline else {
            return self.collect(0);
        };
        let mut pause = Duration::from_micros(20);
        loop {
            match self.collect(libc::WNOHANG)? {
                WaitOutcome::NotYet if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(2));
                }
                other => return Ok(other),
            }
        }
    }

    fn collect(&mut self, flags: i32) -> Result<WaitOutcome> {
        loop {
            let (pid, status) = match raw::wait_raw(self.tid, flags) {
                Ok(r) => r,
                Err(nix::errno::Errno::ECHILD) => {
                    self.detached = true;
                    return Ok(WaitOutcome::Gone);
                }
                Err(e) => return Err(ptrace_err(self.tid, "waitpid")(e)),
            };
            if pid == 0 {
                return Ok(WaitOutcome::NotYet);
            }
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                self.detached = true;
                return Ok(WaitOutcome::Gone);
            }
            if !libc::WIFSTOPPED(status) {
                continue;
            }
            let sig = libc::WSTOPSIG(status);
            if status >> 16 == PTRACE_EVENT_STOP {
                self.stop = Stop::Stopped { sig };
                return Ok(WaitOutcome::Stopped);
            }
            // A signal-delivery stop: let the signal go where it was going and wait for the
            // pending interrupt.
            if let Err(e) = raw::cont(self.tid, sig) {
                if e == nix::errno::Errno::ESRCH {
                    self.detached = true;
                    return Ok(WaitOutcome::Gone);
                }
                return Err(ptrace_err(self.tid, "PTRACE_CONT")(e));
            }
            if flags & libc::WNOHANG != 0 {
                return Ok(WaitOutcome::NotYet);
            }
        }
    }

    pub(crate) fn set_stopped(&mut self, sig: i32) {
        self.stop = Stop::Stopped { sig };
    }

    /// Resumes a stopped thread (it stays seized).
    pub fn resume(&mut self) -> Result<()> {
        raw::cont(self.tid, 0).map_err(ptrace_err(self.tid, "PTRACE_CONT"))?;
        self.stop = Stop::Running;
        Ok(())
    }

    /// Detaches: the thread goes on running as before (or stays in its group stop).
    pub fn detach(mut self) -> Result<()> {
        self.detach_inner()
    }

    fn detach_inner(&mut self) -> Result<()> {
        if self.detached {
            return Ok(());
        }
        // PTRACE_DETACH needs a stopped tracee.
        if !self.is_stopped() {
            let _ = self.interrupt();
            if self.wait_stop(Some(Instant::now() + Duration::from_secs(5)))? == WaitOutcome::Gone {
                return Ok(());
            }
        }
        self.detached = true;
        match raw::detach(self.tid, 0) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(ptrace_err(self.tid, "PTRACE_DETACH")(e)),
        }
    }

    /// Marks the thread as no longer ours without asking the kernel (it was detached or it died).
    pub(crate) fn forget(&mut self) {
        self.detached = true;
    }

    pub fn regs(&self) -> Result<Regs> {
        raw::get_regs(self.tid)
            .map(|raw| Regs { raw })
            .map_err(ptrace_err(self.tid, "PTRACE_GETREGS"))
    }

    pub fn set_regs(&mut self, regs: &Regs) -> Result<()> {
        raw::set_regs(self.tid, &regs.raw).map_err(ptrace_err(self.tid, "PTRACE_SETREGS"))
    }

    /// The full XSAVE area (NT_X86_XSTATE).
    pub fn xsave(&self) -> Result<Xsave> {
        let mut bytes = vec![0u8; xsave_size()];
        let n = raw::get_xstate(self.tid, &mut bytes)
            .map_err(ptrace_err(self.tid, "PTRACE_GETREGSET NT_X86_XSTATE"))?;
        bytes.truncate(n);
        Ok(Xsave { bytes })
    }

    pub fn set_xsave(&mut self, xsave: &Xsave) -> Result<()> {
        raw::set_xstate(self.tid, &xsave.bytes)
            .map_err(ptrace_err(self.tid, "PTRACE_SETREGSET NT_X86_XSTATE"))
    }

    /// Blocked signals (bit n-1 for signal n).
    pub fn sigmask(&self) -> Result<u64> {
        raw::get_sigmask(self.tid).map_err(ptrace_err(self.tid, "PTRACE_GETSIGMASK"))
    }

    pub fn set_sigmask(&mut self, mask: u64) -> Result<()> {
        raw::set_sigmask(self.tid, mask).map_err(ptrace_err(self.tid, "PTRACE_SETSIGMASK"))
    }

    /// Signals queued for this thread only (`shared = false`) or for its whole process.
    pub fn pending_signals(&self, shared: bool) -> Result<Vec<SigInfo>> {
        const BATCH: usize = 32;
        let mut out = Vec::new();
        let mut buf = vec![0u8; BATCH * raw::SIGINFO_SIZE];
        loop {
            let n = raw::peek_siginfo(self.tid, out.len() as u64, shared, &mut buf)
                .map_err(ptrace_err(self.tid, "PTRACE_PEEKSIGINFO"))?;
            for chunk in buf.chunks_exact(raw::SIGINFO_SIZE).take(n) {
                out.push(SigInfo::from_bytes(chunk));
            }
            if n < BATCH {
                return Ok(out);
            }
        }
    }

    /// The thread's rseq registration (pointer 0 when none).
    pub fn rseq(&self) -> Result<raw::RseqConfiguration> {
        raw::rseq_configuration(self.tid)
            .map_err(ptrace_err(self.tid, "PTRACE_GET_RSEQ_CONFIGURATION"))
    }

    /// Seccomp mode: 0 off, 1 strict, 2 filter (from /proc/TID/status).
    pub fn seccomp_mode(&self) -> Result<u32> {
        let path = format!("/proc/{}/task/{}/status", self.tgid, self.tid);
        let text = std::fs::read_to_string(&path)
            .map_err(io_err(self.tid, format!("cannot read {path}")))?;
        text.lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| TraceeError::Unexpected {
                tid: self.tid,
                what: format!("{path}: no Seccomp: line"),
            })
    }

    /// The thread's seccomp filters, most recently installed first (none unless its mode is
    /// filter: the kernel answers EINVAL then).
    pub fn seccomp_filters(&self) -> Result<Vec<crate::signals::SeccompFilter>> {
        let mut out = Vec::new();
        for index in 0.. {
            let count = match raw::seccomp_filter(self.tid, index, None) {
                Ok(n) => n,
                Err(nix::errno::Errno::ENOENT) => break,
                Err(nix::errno::Errno::EINVAL) if index == 0 => break,
                Err(e) => return Err(ptrace_err(self.tid, "PTRACE_SECCOMP_GET_FILTER")(e)),
            };
            let mut insns = vec![
                libc::sock_filter {
                    code: 0,
                    jt: 0,
                    jf: 0,
                    k: 0
                };
                count
            ];
            raw::seccomp_filter(self.tid, index, Some(&mut insns))
                .map_err(ptrace_err(self.tid, "PTRACE_SECCOMP_GET_FILTER"))?;
            let flags = raw::seccomp_flags(self.tid, index)
                .map_err(ptrace_err(self.tid, "PTRACE_SECCOMP_GET_METADATA"))?;
            let instructions = insns.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect();
            out.push(crate::signals::SeccompFilter {
                instructions,
                flags,
            });
        }
        Ok(out)
    }

    /// What the registers say about a syscall the thread is stopped in.
    pub fn syscall_restart(&self) -> Result<SyscallRestart> {
        Ok(self.regs()?.syscall_restart())
    }

    /// Reads the thread's memory (through /proc/TID/mem: works on any readable-by-force area).
    pub fn read_mem(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        raw::proc_mem(self.tid, addr, buf, false).map_err(|e| TraceeError::Ptrace {
            tid: self.tid,
            what: "read /proc/TID/mem",
            errno: e,
        })
    }

    /// Writes the thread's memory (through /proc/TID/mem: forced, works on read-only code).
    pub fn write_mem(&mut self, addr: u64, data: &[u8]) -> Result<()> {
        let mut copy = data.to_vec();
        raw::proc_mem(self.tid, addr, &mut copy, true).map_err(|e| TraceeError::Ptrace {
            tid: self.tid,
            what: "write /proc/TID/mem",
            errno: e,
        })
    }
}

impl Drop for Tracee {
    fn drop(&mut self) {
        if let Err(e) = self.detach_inner() {
            tracing::warn!("{e}");
        }
    }
}
