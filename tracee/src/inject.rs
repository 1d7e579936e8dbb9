//! Remote syscalls: run any syscall inside a stopped thread and get its result, with a scratch
//! area mapped in the task for arguments and results. The task is left exactly as it was
//! afterwards: registers, sigmask, memory (the scratch area is unmapped again).
//!
//! Into a live task (`Injector::new`) every syscall runs from a landing (`landing.rs`): if
//! criu dies at any moment, the task returns to its own state by itself. Into a task criu is
//! rebuilding (`Injector::for_restore`, whose stack and vDSO move under the injection; the
//! restore watchdog covers criu's death there), and where a landing cannot be set up: block
//! every signal but SIGTRAP; write `syscall; int3` over the code at rip through /proc/PID/mem,
//! run an `mmap` of the scratch area there, put the code back; copy `syscall; int3` to the
//! start of the scratch area; from then on each syscall sets rip to it and waits for the
//! SIGTRAP of the int3.
//!
//! `orig_rax = -1` while injecting keeps the kernel from "restarting" the syscall the thread
//! was stopped in; the saved registers, put back at the end, still carry that state, and the
//! kernel restarts the syscall normally when the thread resumes from its signal stop.

use crate::error::{ptrace_err, Result, TraceeError};
use crate::guard::{self, Record, Until, F_REGS, F_SCRATCH, F_SIGMASK, SYSCALL_INT3};
use crate::landing::Landing;
use crate::raw;
use crate::regs::Regs;
use crate::tracee::Tracee;
use nix::errno::Errno;

/// Size of the code at the start of the scratch area; data follows it.
const CODE_SIZE: u64 = 64;

/// Where `clone_child` puts its code in the scratch area.
const FORK_CODE_AT: u64 = 16;
/// `syscall; test rax,rax; jnz int3; child: mov eax,SYS_pause; syscall; jmp child; int3`.
const FORK_CODE: [u8; 17] = [
    0x0f, 0x05, // syscall
    0x48, 0x85, 0xc0, // test rax, rax
    0x75, 0x09, // jnz +9 (the int3)
    0xb8, 0x22, 0x00, 0x00, 0x00, // mov eax, 34 (pause)
    0x0f, 0x05, // syscall
    0xeb, 0xf7, // jmp -9 (mov eax)
    0xcc, // int3
];

/// An injection session on one stopped thread. Borrowing the `Tracee` mutably keeps anyone
/// else from changing its registers meanwhile.
pub struct Injector<'t> {
    tracee: &'t mut Tracee,
    saved_regs: Regs,
    saved_sigmask: u64,
    scratch: u64,
    scratch_len: u64,
    deferred: u64,
    record: Record,
    finished: bool,
    /// The thread's rseq critical section pointer, cleared for the session (address, value).
    rseq_cs: Option<(u64, u64)>,
    /// Where syscalls run from in a live task (none: the int3 way).
    landing: Option<Landing>,
}

/// Every signal blocked but SIGTRAP (blocking it would make the kernel reset its handler when
/// the int3 forces it).
const BLOCK_ALL_BUT_TRAP: u64 = !(1u64 << (libc::SIGTRAP - 1));

impl<'t> Injector<'t> {
    /// Starts injecting into a stopped thread of a live task, with `data_len` bytes of scratch
    /// for arguments. The task survives criu's death at any moment of the session.
    pub fn new(tracee: &'t mut Tracee, data_len: usize) -> Result<Injector<'t>> {
        Injector::start(tracee, data_len, true)
    }

    /// Starts injecting into a thread of a task criu is rebuilding: no landing, since the
    /// injected calls move its stack and vDSO.
    pub fn for_restore(tracee: &'t mut Tracee, data_len: usize) -> Result<Injector<'t>> {
        Injector::start(tracee, data_len, false)
    }

    fn start(tracee: &'t mut Tracee, data_len: usize, live: bool) -> Result<Injector<'t>> {
        let tid = tracee.tid();
        if !tracee.is_stopped() {
            return Err(TraceeError::Unexpected {
                tid,
                what: "cannot inject into a running thread".into(),
            });
        }
        let saved_regs = tracee.regs()?;
        let saved_sigmask = tracee.sigmask()?;
        let record = Record::claim(tid).ok_or_else(|| TraceeError::Unexpected {
            tid,
            what: "too many injections in flight".into(),
        })?;
        record.save_regs(&saved_regs);
        record.save_sigmask(saved_sigmask);
        let rseq_cs = hold_rseq_cs(tracee)?;
        let landing = if live {
            let resume = resume_regs(tracee, &saved_regs, rseq_cs);
            Landing::prepare(tracee, &resume, saved_sigmask)
                .inspect_err(|e| tracing::debug!("{e}: injecting the plain way"))
                .ok()
        } else {
            None
        };
        let page = 4096u64;
        let scratch_len = (CODE_SIZE + data_len as u64).div_ceil(page) * page;
        let mut inj = Injector {
            tracee,
            saved_regs,
            saved_sigmask,
            scratch: 0,
            scratch_len,
            deferred: 0,
            record,
            finished: false,
            rseq_cs,
            landing,
        };
        let prot = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let args = [0, scratch_len, prot, flags, u64::MAX, 0];
        let first = (inj.landing.as_ref()).map(|l| {
            let regs = l.regs(&inj.saved_regs, libc::SYS_mmap, &args, (0, scratch_len));
            (l.signal(), regs)
        });
        let addr = match first {
            Some((sig, regs)) => {
                // Registers first: from then on the thread lands back on its own state, the
                // signal mask included, whatever happens to us.
                inj.tracee.set_regs(&regs)?;
                inj.tracee.set_sigmask(!(1u64 << (sig - 1)))?;
                inj.tracee.set_stopped(sig);
                inj.run(libc::SYS_mmap, &args)
            }
            None => {
                inj.tracee.set_sigmask(BLOCK_ALL_BUT_TRAP)?;
                inj.tracee.set_stopped(libc::SIGTRAP);
                guard::syscall_at_ip(
                    tid,
                    &inj.saved_regs,
                    libc::SYS_mmap,
                    &args,
                    Some(&inj.record),
                    &mut inj.deferred,
                )
            }
        }
        .map_err(ptrace_err(tid, "injecting mmap of the scratch area"))?;
        if (-4095..0).contains(&addr) {
            return Err(TraceeError::Injected {
                tid,
                name: "mmap",
                errno: Errno::from_raw(-addr as i32),
            });
        }
        inj.scratch = addr as u64;
        inj.record.save_scratch(inj.scratch, scratch_len);
        inj.tracee.write_mem(inj.scratch, &SYSCALL_INT3)?;
        Ok(inj)
    }

    pub fn tracee(&self) -> &Tracee {
        self.tracee
    }

    /// The registers the thread had before injection (they come back at the end).
    pub fn original_regs(&self) -> &Regs {
        &self.saved_regs
    }

    pub fn original_sigmask(&self) -> u64 {
        self.saved_sigmask
    }

    /// Address of the scratch data area in the task.
    pub fn data_addr(&self) -> u64 {
        self.scratch + CODE_SIZE
    }

    pub fn data_len(&self) -> usize {
        (self.scratch_len - CODE_SIZE) as usize
    }

    /// The whole scratch mapping (address, length), code page included.
    pub fn scratch_mapping(&self) -> (u64, u64) {
        (self.scratch, self.scratch_len)
    }

    /// Copies `data` into the scratch area at `offset`; returns its address in the task.
    pub fn write_data(&mut self, offset: usize, data: &[u8]) -> Result<u64> {
        self.check_bounds(offset, data.len())?;
        let addr = self.data_addr() + offset as u64;
        self.tracee.write_mem(addr, data)?;
        Ok(addr)
    }

    pub fn read_data(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check_bounds(offset, buf.len())?;
        self.tracee.read_mem(self.data_addr() + offset as u64, buf)
    }

    fn check_bounds(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.data_len() => Ok(()),
            _ => Err(TraceeError::Unexpected {
                tid: self.tracee.tid(),
                what: format!(
                    "{len} bytes at offset {offset} do not fit the {}-byte scratch area",
                    self.data_len()
                ),
            }),
        }
    }

    /// Runs syscall `nr` with up to six arguments in the task; returns the raw result
    /// (`-errno` on failure, as the kernel returns it).
    pub fn syscall(&mut self, nr: i64, args: &[u64]) -> Result<i64> {
        let tid = self.tracee.tid();
        if self.record.released() {
            return Err(TraceeError::Gone {
                tid,
                how: "released by the emergency path".into(),
            });
        }
        let mut all = [0u64; 6];
        for (a, v) in all.iter_mut().zip(args) {
            *a = *v;
        }
        self.run(nr, &all)
            .map_err(ptrace_err(tid, "running an injected syscall"))
    }

    /// Runs syscall `nr` from the landing or from the scratch area's code.
    fn run(&mut self, nr: i64, args: &[u64; 6]) -> std::result::Result<i64, Errno> {
        let tid = self.tracee.tid();
        let (regs, until) = match &self.landing {
            Some(landing) => {
                let scratch = (self.scratch, self.scratch_len);
                let regs = landing.regs(&self.saved_regs, nr, args, scratch);
                let until = Until::Landing {
                    ip: landing.stop_ip(),
                    sig: landing.signal(),
                };
                (regs, until)
            }
            None => {
                let mut regs = self.saved_regs;
                regs.raw.rip = self.scratch;
                regs.set_syscall(nr, args);
                let ip = self.scratch + SYSCALL_INT3.len() as u64;
                (regs, Until::Int3 { ip })
            }
        };
        guard::run_to_trap(tid, &regs, until, Some(&self.record), &mut self.deferred)
    }

    /// Runs `clone3(args, size)` in the task so that the new child (or thread) does not run
    /// into our int3: it blocks in a `pause()` loop with the signal mask of the session (all
    /// blocked but SIGTRAP), untraced, until another tracer seizes it. Returns the raw result
    /// (the child's pid, or `-errno`).
    pub fn clone_child(&mut self, args_addr: u64, args_size: u64) -> Result<i64> {
        let tid = self.tracee.tid();
        let code = self.scratch + FORK_CODE_AT;
        self.tracee.write_mem(code, &FORK_CODE)?;
        let mut regs = self.saved_regs;
        regs.raw.rip = code;
        regs.set_syscall(libc::SYS_clone3, &[args_addr, args_size, 0, 0, 0, 0]);
        let trap = Until::Int3 {
            ip: code + FORK_CODE.len() as u64,
        };
        guard::run_to_trap(tid, &regs, trap, Some(&self.record), &mut self.deferred)
            .map_err(ptrace_err(tid, "running an injected clone3"))
    }

    /// Like `syscall`, but a negative result becomes an error naming the syscall.
    pub fn syscall_ok(&mut self, name: &'static str, nr: i64, args: &[u64]) -> Result<i64> {
        let r = self.syscall(nr, args)?;
        if (-4095..0).contains(&r) {
            return Err(TraceeError::Injected {
                tid: self.tracee.tid(),
                name,
                errno: Errno::from_raw(-r as i32),
            });
        }
        Ok(r)
    }

    /// Ends the session of a task that exited on purpose during it (an injected exit or
    /// fatal signal): there is nothing left to put back.
    pub fn finish_exited(mut self) {
        self.finished = true;
        self.tracee.forget();
    }

    /// Unmaps the scratch area and puts registers and sigmask back: the thread is as it was.
    pub fn finish(mut self) -> Result<()> {
        self.finish_inner()
    }

    /// Ends the session of a task rebuilt by injection, whose original code and registers are
    /// gone: unmaps the scratch area from its own code (stepping over the syscall with
    /// PTRACE_SYSCALL, since the int3 after it is unmapped too), puts back the sigmask, and
    /// leaves the thread stopped at that syscall-exit stop with registers `regs`. Resumed with
    /// PTRACE_CONT, the kernel does no syscall-restart fix from there: pass registers with it
    /// applied (`Regs::with_restart_applied`); detached, it does: pass
    /// `Regs::for_detach_at_syscall_exit`.
    pub fn finish_restored(mut self, regs: &Regs) -> Result<()> {
        self.finished = true;
        let tid = self.tracee.tid();
        if self.record.released() {
            self.tracee.forget();
            return Err(TraceeError::Gone {
                tid,
                how: "released by the emergency path".into(),
            });
        }
        let mut call = self.saved_regs;
        call.raw.rip = self.scratch;
        call.set_syscall(
            libc::SYS_munmap,
            &[self.scratch, self.scratch_len, 0, 0, 0, 0],
        );
        self.tracee.set_regs(&call)?;
        // Syscall entry, then exit.
        for stage in ["entry", "exit"] {
            raw::cont_syscall(tid, 0).map_err(ptrace_err(tid, "PTRACE_SYSCALL"))?;
            loop {
                let (_, status) = raw::wait_raw(tid, 0).map_err(ptrace_err(tid, "waitpid"))?;
                if !libc::WIFSTOPPED(status) {
                    return Err(TraceeError::Gone {
                        tid,
                        how: format!("died before the munmap {stage} stop"),
                    });
                }
                let sig = libc::WSTOPSIG(status);
                if status >> 16 == 0 && sig == libc::SIGTRAP {
                    break;
                }
                if status >> 16 == 0 {
                    self.deferred |= 1u64 << (sig - 1);
                }
                raw::cont_syscall(tid, 0).map_err(ptrace_err(tid, "PTRACE_SYSCALL"))?;
            }
        }
        let after = self.tracee.regs()?;
        if after.raw.rax != 0 {
            return Err(TraceeError::Injected {
                tid,
                name: "munmap",
                errno: Errno::from_raw(-(after.raw.rax as i64) as i32),
            });
        }
        self.record.clear(F_SCRATCH);
        self.tracee.set_sigmask(self.saved_sigmask)?;
        self.record.clear(F_SIGMASK);
        self.tracee.set_regs(regs)?;
        self.record.clear(F_REGS);
        self.resend_deferred();
        Ok(())
    }

    /// Ends the session of a task whose original code is gone but that is not done yet: keeps
    /// the scratch area mapped and leaves the thread stopped with its registers but for rip,
    /// which points at the scratch area's code, so that the next session can start there.
    /// Returns the area, for that later session to unmap.
    pub fn finish_parked(mut self) -> Result<(u64, u64)> {
        self.finished = true;
        let tid = self.tracee.tid();
        if self.record.released() {
            self.tracee.forget();
            return Err(TraceeError::Gone {
                tid,
                how: "released by the emergency path".into(),
            });
        }
        self.tracee.set_sigmask(self.saved_sigmask)?;
        self.record.clear(F_SIGMASK);
        let mut regs = self.saved_regs;
        regs.raw.rip = self.scratch;
        self.tracee.set_regs(&regs)?;
        self.record.clear(F_REGS);
        self.record.clear(F_SCRATCH);
        self.resend_deferred();
        Ok((self.scratch, self.scratch_len))
    }

    fn resend_deferred(&self) {
        for sig in 1..=64 {
            if self.deferred & (1u64 << (sig - 1)) != 0 {
                let _ = raw::tgkill(self.tracee.tgid(), self.tracee.tid(), sig);
            }
        }
    }

    fn finish_inner(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let tid = self.tracee.tid();
        if self.record.released() {
            self.tracee.forget();
            return Err(TraceeError::Gone {
                tid,
                how: "released by the emergency path".into(),
            });
        }
        let mut first_error = None;
        if self.scratch != 0 {
            match self.unmap_scratch() {
                Ok(0) => self.record.clear(F_SCRATCH),
                Ok(r) => {
                    first_error = Some(TraceeError::Injected {
                        tid,
                        name: "munmap",
                        errno: Errno::from_raw(-r as i32),
                    })
                }
                Err(e) => {
                    first_error = Some(ptrace_err(tid, "injecting munmap of the scratch area")(e))
                }
            }
        }
        // Registers last: until they are back, the thread would land on its own state (with
        // this sigmask and rseq pointer) by itself if we died.
        match raw::set_sigmask(tid, self.saved_sigmask) {
            Ok(()) => self.record.clear(F_SIGMASK),
            Err(e) => {
                first_error.get_or_insert(ptrace_err(tid, "PTRACE_SETSIGMASK (restore)")(e));
            }
        }
        if let Some((addr, value)) = self.rseq_cs.take() {
            if let Err(e) = self.tracee.write_mem(addr, &value.to_le_bytes()) {
                first_error.get_or_insert(e);
            }
        }
        match raw::set_regs(tid, &self.saved_regs.raw) {
            Ok(()) => self.record.clear(F_REGS),
            Err(e) => {
                first_error.get_or_insert(ptrace_err(tid, "PTRACE_SETREGS (restore)")(e));
            }
        }
        // Signals that arrived and could not be blocked (SIGSTOP and friends) go back in.
        self.resend_deferred();
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Injector<'_> {
    fn unmap_scratch(&mut self) -> std::result::Result<i64, Errno> {
        let args = [self.scratch, self.scratch_len, 0, 0, 0, 0];
        if self.landing.is_some() {
            return self.run(libc::SYS_munmap, &args);
        }
        guard::syscall_at_ip(
            self.tracee.tid(),
            &self.saved_regs,
            libc::SYS_munmap,
            &args,
            Some(&self.record),
            &mut self.deferred,
        )
    }
}

/// The registers the thread goes on with if we die: its own, with an interrupted syscall
/// settled as `rt_sigreturn` needs it (`Regs::for_sigreturn`) and, inside an rseq critical
/// section, at its abort handler, as the kernel would resume it.
fn resume_regs(tracee: &Tracee, saved: &Regs, rseq_cs: Option<(u64, u64)>) -> Regs {
    let mut r = saved.for_sigreturn();
    if let Some((_, cs)) = rseq_cs {
        // struct rseq_cs: version, flags (u32), start_ip, post_commit_offset, abort_ip.
        let mut raw_cs = [0u8; 32];
        if tracee.read_mem(cs, &mut raw_cs).is_ok() {
            let field =
                |i: usize| u64::from_le_bytes(raw_cs[i..i + 8].try_into().unwrap_or([0; 8]));
            let (start, len, abort) = (field(8), field(16), field(24));
            if r.raw.rip.wrapping_sub(start) < len {
                r.raw.rip = abort;
            }
        }
    }
    r
}

/// A thread stopped inside an rseq critical section would be moved to the section's abort
/// handler by the kernel as soon as it runs our injected code at its rip (inside the
/// section), so the code would never run: the section pointer (`rseq_cs`, at offset 8 of its
/// rseq area) is cleared for the session and put back at its end.
fn hold_rseq_cs(tracee: &mut Tracee) -> Result<Option<(u64, u64)>> {
    let Ok(cfg) = tracee.rseq() else {
        return Ok(None);
    };
    if cfg.rseq_abi_pointer == 0 {
        return Ok(None);
    }
    let addr = cfg.rseq_abi_pointer + 8;
    let mut word = [0u8; 8];
    if tracee.read_mem(addr, &mut word).is_err() {
        return Ok(None);
    }
    let value = u64::from_le_bytes(word);
    if value == 0 {
        return Ok(None);
    }
    tracee.write_mem(addr, &[0u8; 8])?;
    Ok(Some((addr, value)))
}

impl Drop for Injector<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.finish_inner() {
            tracing::warn!("{e}");
        }
    }
}
