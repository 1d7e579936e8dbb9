//! Register sets of a stopped thread: general purpose registers, the XSAVE area, and what the
//! registers say about a system call the thread was stopped in.

use libc::user_regs_struct;

/// Number of 64-bit words in `user_regs_struct`.
pub const REGS_WORDS: usize = 27;

/// General purpose registers (`user_regs_struct`, NT_PRSTATUS).
#[derive(Clone, Copy)]
pub struct Regs {
    pub raw: user_regs_struct,
}

impl Regs {
    pub fn from_words(words: [u64; REGS_WORDS]) -> Regs {
        const _: () = assert!(std::mem::size_of::<user_regs_struct>() == REGS_WORDS * 8);
        // SAFETY: user_regs_struct is repr(C) of exactly REGS_WORDS u64 fields (checked above),
        // so every bit pattern of the array is a valid value.
        let raw = unsafe { std::mem::transmute::<[u64; REGS_WORDS], user_regs_struct>(words) };
        Regs { raw }
    }

    pub fn to_words(&self) -> [u64; REGS_WORDS] {
        // SAFETY: same layout argument as in from_words.
        unsafe { std::mem::transmute::<user_regs_struct, [u64; REGS_WORDS]>(self.raw) }
    }

    pub fn ip(&self) -> u64 {
        self.raw.rip
    }

    pub fn sp(&self) -> u64 {
        self.raw.rsp
    }

    /// Sets the registers for a system call `nr` with `args` in the kernel's order
    /// (rdi, rsi, rdx, r10, r8, r9). `orig_rax = -1` keeps the kernel from treating the stop we
    /// resume from as an interrupted syscall to restart.
    pub fn set_syscall(&mut self, nr: i64, args: &[u64; 6]) {
        self.raw.rax = nr as u64;
        self.raw.orig_rax = u64::MAX;
        self.raw.rdi = args[0];
        self.raw.rsi = args[1];
        self.raw.rdx = args[2];
        self.raw.r10 = args[3];
        self.raw.r8 = args[4];
        self.raw.r9 = args[5];
    }

    /// What the registers say about a syscall the thread was stopped in.
    pub fn syscall_restart(&self) -> SyscallRestart {
        let nr = self.raw.orig_rax as i64;
        if nr < 0 {
            return SyscallRestart::NotInSyscall;
        }
        match self.raw.rax as i64 {
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => SyscallRestart::Restart { nr },
            ERESTART_RESTARTBLOCK => SyscallRestart::RestartBlock { nr },
            _ => SyscallRestart::Finished {
                nr,
                ret: self.raw.rax as i64,
            },
        }
    }

    /// The registers a thread interrupted in a syscall must resume with when it leaves through a
    /// path that does not restart syscalls itself (e.g. a syscall-exit stop): the same fix the
    /// kernel's signal path makes. `restart_block_kept` says whether the task still has the
    /// restart block of an `ERESTART_RESTARTBLOCK` syscall (false for a restored task: such a
    /// syscall then fails with EINTR).
    /// Registers for a restored thread that will be detached from a syscall-exit stop. An
    /// interrupted syscall is left for the kernel's own exit path to restart, which also gives
    /// -EINTR instead when a signal handler runs first (re-executing it from user space would
    /// lose that handler's wake-up); a restart block does not survive a dump, so that case
    /// becomes -EINTR here.
    pub fn for_detach_at_syscall_exit(&self) -> Regs {
        let mut r = *self;
        match self.syscall_restart() {
            SyscallRestart::Restart { .. } => {}
            SyscallRestart::RestartBlock { .. } => {
                r.raw.rax = (-(libc::EINTR as i64)) as u64;
                r.raw.orig_rax = u64::MAX;
            }
            _ => {}
        }
        r
    }

    /// Registers for a thread that will go back to user space through `rt_sigreturn`, which
    /// leaves nothing for the kernel to restart: an interrupted syscall is settled as the
    /// kernel would if a signal handler ran (one may, as the thread returns). A call that fails
    /// with EINTR after a handler (ERESTARTNOHAND: pause, sigsuspend, select...) or needs its
    /// restart block, which `rt_sigreturn` drops (nanosleep, poll...), gets EINTR; the rest
    /// start again.
    pub fn for_sigreturn(&self) -> Regs {
        if let SyscallRestart::Restart { .. } = self.syscall_restart() {
            if self.raw.rax as i64 == ERESTARTNOHAND {
                let mut r = *self;
                r.raw.rax = (-(libc::EINTR as i64)) as u64;
                r.raw.orig_rax = u64::MAX;
                return r;
            }
        }
        self.with_restart_applied(false)
    }

    pub fn with_restart_applied(&self, restart_block_kept: bool) -> Regs {
        let mut r = *self;
        match self.syscall_restart() {
            SyscallRestart::Restart { .. } => {
                r.raw.rax = r.raw.orig_rax;
                r.raw.rip -= 2;
            }
            SyscallRestart::RestartBlock { .. } if restart_block_kept => {
                r.raw.rax = NR_RESTART_SYSCALL as u64;
                r.raw.rip -= 2;
            }
            SyscallRestart::RestartBlock { .. } => r.raw.rax = (-(libc::EINTR as i64)) as u64,
            _ => {}
        }
        r.raw.orig_rax = u64::MAX;
        r
    }
}

impl PartialEq for Regs {
    fn eq(&self, other: &Regs) -> bool {
        self.to_words() == other.to_words()
    }
}

impl Eq for Regs {}

impl std::fmt::Debug for Regs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.raw;
        f.debug_struct("Regs")
            .field("rip", &format_args!("{:#x}", r.rip))
            .field("rsp", &format_args!("{:#x}", r.rsp))
            .field("rax", &format_args!("{:#x}", r.rax))
            .field("orig_rax", &(r.orig_rax as i64))
            .field("rdi", &format_args!("{:#x}", r.rdi))
            .field("rsi", &format_args!("{:#x}", r.rsi))
            .field("rdx", &format_args!("{:#x}", r.rdx))
            .field("r12", &format_args!("{:#x}", r.r12))
            .field("r13", &format_args!("{:#x}", r.r13))
            .field("r14", &format_args!("{:#x}", r.r14))
            .field("r15", &format_args!("{:#x}", r.r15))
            .field("fs_base", &format_args!("{:#x}", r.fs_base))
            .finish_non_exhaustive()
    }
}

/// Kernel-internal errnos a syscall interrupted by a stop returns (never seen by programs).
pub const ERESTARTSYS: i64 = -512;
pub const ERESTARTNOINTR: i64 = -513;
pub const ERESTARTNOHAND: i64 = -514;
pub const ERESTART_RESTARTBLOCK: i64 = -516;
pub const NR_RESTART_SYSCALL: i64 = 219;

/// The syscall state of a stopped thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallRestart {
    /// Stopped in user code.
    NotInSyscall,
    /// Stopped inside syscall `nr`, which restarts from the start when resumed.
    Restart { nr: i64 },
    /// Stopped inside syscall `nr` (e.g. nanosleep), which resumes through `restart_syscall`.
    RestartBlock { nr: i64 },
    /// Stopped at the exit of syscall `nr` with its result.
    Finished { nr: i64, ret: i64 },
}

/// The XSAVE area of a thread (NT_X86_XSTATE): x87, SSE, AVX and the rest, in the kernel's
/// standard (uncompacted) layout.
#[derive(Clone, PartialEq, Eq)]
pub struct Xsave {
    pub bytes: Vec<u8>,
}

/// Offset of XMM0 in the legacy FXSAVE region.
const XMM_OFFSET: usize = 160;
/// Offset of XSTATE_BV in the XSAVE header.
const XSTATE_BV_OFFSET: usize = 512;

impl Xsave {
    /// XMM register `i` (0..16).
    pub fn xmm(&self, i: usize) -> Option<[u8; 16]> {
        self.slice(XMM_OFFSET + 16 * i, 16)
            .map(|s| s.try_into().unwrap_or([0; 16]))
    }

    pub fn set_xmm(&mut self, i: usize, value: [u8; 16]) -> bool {
        self.write(XMM_OFFSET + 16 * i, &value)
    }

    /// The upper 128 bits of YMM register `i` (AVX state component 2), if present.
    pub fn ymm_high(&self, i: usize) -> Option<[u8; 16]> {
        let off = component_offset(2)?;
        self.slice(off + 16 * i, 16)
            .map(|s| s.try_into().unwrap_or([0; 16]))
    }

    pub fn set_ymm_high(&mut self, i: usize, value: [u8; 16]) -> bool {
        match component_offset(2) {
            Some(off) => self.write(off + 16 * i, &value),
            None => false,
        }
    }

    /// Which state components the area holds (XSTATE_BV).
    pub fn xstate_bv(&self) -> u64 {
        self.slice(XSTATE_BV_OFFSET, 8)
            .map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
            .unwrap_or(0)
    }

    pub fn set_xstate_bv(&mut self, bv: u64) -> bool {
        self.write(XSTATE_BV_OFFSET, &bv.to_le_bytes())
    }

    fn slice(&self, off: usize, len: usize) -> Option<&[u8]> {
        self.bytes.get(off..off + len)
    }

    fn write(&mut self, off: usize, data: &[u8]) -> bool {
        match self.bytes.get_mut(off..off + data.len()) {
            Some(dst) => {
                dst.copy_from_slice(data);
                true
            }
            None => false,
        }
    }
}

impl std::fmt::Debug for Xsave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Xsave({} bytes, xstate_bv {:#x})",
            self.bytes.len(),
            self.xstate_bv()
        )
    }
}

/// Offset of XSAVE state component `n` in the standard layout (CPUID leaf 0xD, subleaf n).
pub fn component_offset(n: u32) -> Option<usize> {
    let leaf = criu_sys::cpuid::cpuid(0xd, n);
    (leaf.eax != 0).then_some(leaf.ebx as usize)
}

/// Where XSAVE state component `n` ends in the standard layout (offset + size).
pub fn component_end(n: u32) -> Option<usize> {
    let leaf = criu_sys::cpuid::cpuid(0xd, n);
    (leaf.eax != 0 && leaf.ebx != 0).then_some(leaf.ebx as usize + leaf.eax as usize)
}

/// The largest XSAVE area this CPU can need (CPUID leaf 0xD, subleaf 0, ECX).
pub fn xsave_size() -> usize {
    let leaf = criu_sys::cpuid::cpuid(0xd, 0);
    (leaf.ecx as usize).max(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs_in_syscall(nr: i64, rax: i64) -> Regs {
        let mut words = [0u64; REGS_WORDS];
        let mut r = Regs::from_words(words);
        r.raw.orig_rax = nr as u64;
        r.raw.rax = rax as u64;
        r.raw.rip = 0x1000;
        words = r.to_words();
        Regs::from_words(words)
    }

    #[test]
    fn restart_states() {
        assert_eq!(
            regs_in_syscall(0, ERESTARTSYS).syscall_restart(),
            SyscallRestart::Restart { nr: 0 }
        );
        assert_eq!(
            regs_in_syscall(35, ERESTART_RESTARTBLOCK).syscall_restart(),
            SyscallRestart::RestartBlock { nr: 35 }
        );
        assert_eq!(
            regs_in_syscall(-1, 5).syscall_restart(),
            SyscallRestart::NotInSyscall
        );
        assert_eq!(
            regs_in_syscall(39, 77).syscall_restart(),
            SyscallRestart::Finished { nr: 39, ret: 77 }
        );
    }

    #[test]
    fn restart_fix_matches_the_kernel() {
        let r = regs_in_syscall(0, ERESTARTSYS).with_restart_applied(true);
        assert_eq!(
            (r.raw.rax, r.raw.rip, r.raw.orig_rax as i64),
            (0, 0xffe, -1)
        );
        let r = regs_in_syscall(35, ERESTART_RESTARTBLOCK).with_restart_applied(true);
        assert_eq!((r.raw.rax, r.raw.rip), (219, 0xffe));
        let r = regs_in_syscall(35, ERESTART_RESTARTBLOCK).with_restart_applied(false);
        assert_eq!(
            (r.raw.rax as i64, r.raw.rip),
            (-(libc::EINTR as i64), 0x1000)
        );
    }

    #[test]
    fn sigreturn_settles_what_the_kernel_would_after_a_handler() {
        let eintr = (-(libc::EINTR as i64)) as u64;
        let r = regs_in_syscall(34, ERESTARTNOHAND).for_sigreturn();
        assert_eq!(
            (r.raw.rax, r.raw.rip, r.raw.orig_rax as i64),
            (eintr, 0x1000, -1)
        );
        let r = regs_in_syscall(0, ERESTARTSYS).for_sigreturn();
        assert_eq!((r.raw.rax, r.raw.rip), (0, 0xffe));
        let r = regs_in_syscall(35, ERESTART_RESTARTBLOCK).for_sigreturn();
        assert_eq!((r.raw.rax, r.raw.rip), (eintr, 0x1000));
        let r = regs_in_syscall(39, 77).for_sigreturn();
        assert_eq!((r.raw.rax, r.raw.orig_rax as i64), (77, -1));
    }

    #[test]
    fn xsave_accessors_stay_in_bounds() {
        let mut x = Xsave {
            bytes: vec![0; 576],
        };
        assert!(x.set_xmm(3, [7; 16]));
        assert_eq!(x.xmm(3), Some([7; 16]));
        assert_eq!(x.bytes[160 + 48], 7);
        assert!(x.set_xstate_bv(0b111));
        assert_eq!(x.xstate_bv(), 7);
        assert_eq!(x.xmm(40), None);
        assert!(!x.set_xmm(40, [1; 16]));
    }
}
