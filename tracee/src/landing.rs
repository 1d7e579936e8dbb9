//! The landing: what makes an injection into a live task undoable by the kernel alone, so
//! that criu killed at any moment (SIGKILL, OOM, a crash) never harms the task.
//!
//! Injected syscalls run from a few bytes of code in the unused tail of the task's vDSO page
//! (past the end of the vDSO image, which nothing executes), with the stack pointer on a
//! signal frame we wrote below the thread's stack (where a signal's frame would go) that holds
//! the thread's own registers, signal mask and XSAVE state. After the syscall the code sends
//! the thread a signal it ignores; that stop is where criu reads the result and sets up the
//! next call. If criu is gone, the kernel detaches the thread, the signal is ignored, and the
//! code unmaps the scratch area and calls `rt_sigreturn`: the thread is back where it was.
//! Nothing is ever written over the task's own code.

use crate::error::{io_err, Result, TraceeError};
use crate::regs::Regs;
use crate::sigframe;
use crate::tracee::Tracee;

/// ```text
///  0: syscall                 the injected call
///  2: mov  r15, rax           its result, for criu
///  5: mov  eax, SYS_tgkill
/// 10: mov  rdi, r12           tgid (as the task sees it)
/// 13: mov  rsi, r13           tid
/// 16: mov  rdx, r14           an ignored signal
/// 19: syscall                 criu's stop comes here (rip = 21)
/// 21: test rbx, rbx           criu gone: unmap the scratch area (rbx, rbp), or what the
/// 24: jne  29                 injected mmap just made if there is none yet
/// 26: mov  rbx, r15
/// 29: mov  rdi, rbx
/// 32: mov  rsi, rbp
/// 35: mov  eax, SYS_munmap
/// 40: syscall
/// 42: mov  eax, SYS_rt_sigreturn
/// 47: syscall                 back to the thread's own state
/// ```
const CODE: [u8; 49] = [
    0x0f, 0x05, 0x49, 0x89, 0xc7, 0xb8, 0xea, 0x00, 0x00, 0x00, 0x4c, 0x89, 0xe7, 0x4c, 0x89, 0xee,
    0x4c, 0x89, 0xf2, 0x0f, 0x05, 0x48, 0x85, 0xdb, 0x75, 0x03, 0x4c, 0x89, 0xfb, 0x48, 0x89, 0xdf,
    0x48, 0x89, 0xee, 0xb8, 0x0b, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f,
    0x05,
];
const STOP_OFFSET: u64 = 21;
const AT_SYSINFO_EHDR: u64 = 33;
const PAGE: u64 = 4096;

/// Signals ignored by default whose sending has no other effect, in order of preference.
const QUIET_SIGNALS: [i32; 3] = [libc::SIGURG, libc::SIGWINCH, libc::SIGCHLD];

/// A landing set up in one stopped thread.
pub(crate) struct Landing {
    code: u64,
    frame_sp: u64,
    signal: i32,
    tgid: u64,
    tid: u64,
}

impl Landing {
    /// Sets up a landing in stopped thread `tracee`, whose state to come back to is `resume`
    /// with `sigmask`; or says why it cannot (the injection then runs the plain way).
    pub(crate) fn prepare(tracee: &mut Tracee, resume: &Regs, sigmask: u64) -> Result<Landing> {
        let tid = tracee.tid();
        let path = format!("/proc/{}/task/{tid}/status", tracee.tgid());
        let status =
            std::fs::read_to_string(&path).map_err(io_err(tid, format!("cannot read {path}")))?;
        let fields = StatusFields::parse(&status).ok_or_else(|| unexpected(tid, "no NSpid"))?;
        if fields.shadow_stack {
            // rt_sigreturn would want a shadow stack token our frame does not have.
            return Err(unexpected(tid, "the thread uses a shadow stack"));
        }
        let signal = fields
            .quiet_signal()
            .ok_or_else(|| unexpected(tid, "every quiet signal is caught"))?;
        let code = vdso_tail(tracee)?;
        let xsave = tracee.xsave()?;
        let size = sigframe::xstate_size(&xsave)
            .ok_or_else(|| unexpected(tid, "XSAVE area larger than read"))?;
        let frame = sigframe::build(resume, sigmask, &xsave, size);
        tracee.write_mem(frame.addr, &frame.bytes)?;
        let mut now = [0u8; CODE.len()];
        tracee.read_mem(code, &mut now)?;
        if now != CODE {
            tracee.write_mem(code, &CODE)?;
        }
        Ok(Landing {
            code,
            frame_sp: frame.addr + 8,
            signal,
            tgid: fields.tgid,
            tid: fields.tid,
        })
    }

    /// Registers for syscall `nr` run from the landing, with the scratch area (address, or 0
    /// while it is being mapped, and length) to unmap if criu goes away.
    pub(crate) fn regs(&self, base: &Regs, nr: i64, args: &[u64; 6], scratch: (u64, u64)) -> Regs {
        let mut r = *base;
        r.set_syscall(nr, args);
        r.raw.rip = self.code;
        r.raw.rsp = self.frame_sp;
        r.raw.r12 = self.tgid;
        r.raw.r13 = self.tid;
        r.raw.r14 = self.signal as u64;
        r.raw.rbx = scratch.0;
        r.raw.rbp = scratch.1;
        r
    }

    pub(crate) fn stop_ip(&self) -> u64 {
        self.code + STOP_OFFSET
    }

    pub(crate) fn signal(&self) -> i32 {
        self.signal
    }
}

fn unexpected(tid: i32, what: &str) -> TraceeError {
    TraceeError::Unexpected {
        tid,
        what: format!("no landing: {what}"),
    }
}

/// The address of the unused tail of the vDSO's last page: past the end of the ELF image
/// (its section headers come last), found through the auxiliary vector.
fn vdso_tail(tracee: &Tracee) -> Result<u64> {
    let tid = tracee.tid();
    let path = format!("/proc/{}/auxv", tracee.tgid());
    let auxv = std::fs::read(&path).map_err(io_err(tid, format!("cannot read {path}")))?;
    let base = auxv
        .chunks_exact(16)
        .map(|c| (word(c, 0), word(c, 8)))
        .find(|&(key, _)| key == AT_SYSINFO_EHDR)
        .map(|(_, v)| v)
        .ok_or_else(|| unexpected(tid, "no vDSO"))?;
    let mut ehdr = [0u8; 64];
    tracee.read_mem(base, &mut ehdr)?;
    let end = elf_image_end(&ehdr).ok_or_else(|| unexpected(tid, "vDSO is not an ELF image"))?;
    let at = base + end.next_multiple_of(16);
    if at + CODE.len() as u64 > base + end.next_multiple_of(PAGE) {
        return Err(unexpected(tid, "vDSO has no room after its image"));
    }
    let mut tail = [0u8; CODE.len()];
    tracee.read_mem(at, &mut tail)?;
    if tail != CODE && tail.iter().any(|&b| b != 0) {
        return Err(unexpected(tid, "vDSO tail is not empty"));
    }
    Ok(at)
}

/// Where a 64-bit ELF image ends: after its section header table.
fn elf_image_end(ehdr: &[u8; 64]) -> Option<u64> {
    if ehdr[..5] != *b"\x7fELF\x02" {
        return None;
    }
    let shoff = word(ehdr, 0x28);
    let shentsize = u64::from(u16::from_le_bytes([ehdr[0x3a], ehdr[0x3b]]));
    let shnum = u64::from(u16::from_le_bytes([ehdr[0x3c], ehdr[0x3d]]));
    let end = shoff.checked_add(shentsize * shnum)?;
    (end < 1 << 20).then_some(end)
}

fn word(bytes: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap_or([0; 8]))
}

/// What the landing needs from /proc/TID/status.
#[derive(Debug, PartialEq, Eq)]
struct StatusFields {
    ignored: u64,
    caught: u64,
    /// The thread's ids as the task itself sees them (innermost pid namespace).
    tgid: u64,
    tid: u64,
    /// The thread runs with a CET shadow stack.
    shadow_stack: bool,
}

impl StatusFields {
    fn parse(text: &str) -> Option<StatusFields> {
        let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name));
        let mask = |name| u64::from_str_radix(field(name)?.trim(), 16).ok();
        let innermost = |name| field(name)?.split_whitespace().last()?.parse().ok();
        Some(StatusFields {
            ignored: mask("SigIgn:")?,
            caught: mask("SigCgt:")?,
            tgid: innermost("NStgid:")?,
            tid: innermost("NSpid:")?,
            shadow_stack: field("x86_Thread_features:")
                .is_some_and(|f| f.split_whitespace().any(|w| w == "shstk")),
        })
    }

    /// A signal whose delivery does nothing: one ignored by default and not caught, or one
    /// the task ignores that sending has no side effect for.
    fn quiet_signal(&self) -> Option<i32> {
        let bit = |s: i32| 1u64 << (s - 1);
        let special = [
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGCONT,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
            libc::SIGTRAP,
        ];
        QUIET_SIGNALS
            .into_iter()
            .find(|&s| self.caught & bit(s) == 0)
            .or_else(|| (1..=64).find(|&s| self.ignored & bit(s) != 0 && !special.contains(&s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tsleep\nTgid:\t4242\nPid:\t4243\nNStgid:\t4242\t7\n\
        NSpid:\t4243\t8\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000001000\n\
        SigCgt:\t0000000000400000\n";

    #[test]
    fn status_gives_the_innermost_ids_and_a_quiet_signal() {
        let f = StatusFields::parse(STATUS).unwrap();
        assert_eq!((f.tgid, f.tid), (7, 8));
        assert!(!f.shadow_stack);
        let cet = format!("{STATUS}x86_Thread_features:\tshstk wrss\n");
        assert!(StatusFields::parse(&cet).unwrap().shadow_stack);
        // SIGURG (23) is caught: SIGWINCH is next.
        assert_eq!(f.quiet_signal(), Some(libc::SIGWINCH));
        let all_caught = StatusFields {
            caught: u64::MAX,
            ..f
        };
        // SIGPIPE (13) is ignored.
        assert_eq!(all_caught.quiet_signal(), Some(libc::SIGPIPE));
        let none = StatusFields {
            ignored: 0,
            ..all_caught
        };
        assert_eq!(none.quiet_signal(), None);
        assert_eq!(StatusFields::parse("SigIgn:\t0\n"), None);
    }

    #[test]
    fn elf_end_is_after_the_section_headers() {
        let mut h = [0u8; 64];
        h[..5].copy_from_slice(b"\x7fELF\x02");
        h[0x28..0x30].copy_from_slice(&0x1000u64.to_le_bytes());
        h[0x3a] = 64;
        h[0x3c] = 10;
        assert_eq!(elf_image_end(&h), Some(0x1000 + 640));
        h[0] = 0;
        assert_eq!(elf_image_end(&h), None);
    }

    #[test]
    fn the_code_stops_where_criu_expects() {
        // The tgkill's syscall instruction ends at the stop offset.
        assert_eq!(
            &CODE[STOP_OFFSET as usize - 2..STOP_OFFSET as usize],
            &[0x0f, 0x05]
        );
        assert_eq!(&CODE[CODE.len() - 7..], &[0xb8, 0x0f, 0, 0, 0, 0x0f, 0x05]);
    }
}
