//! An x86-64 signal frame built by hand: what `rt_sigreturn` reads to put a thread's registers,
//! signal mask and FPU/vector state back. The landing (see `landing.rs`) leaves one on the
//! thread's stack, so that the thread can return to its own state without us.

use crate::regs::{component_end, Regs, Xsave};

/// The ABI's red zone below the stack pointer, which a frame must not touch.
const RED_ZONE: u64 = 128;
/// `struct rt_sigframe` without the FPU state: pretcode, ucontext, siginfo.
const FRAME_SIZE: u64 = 8 + 304 + 128;
const UC_OFFSET: usize = 8;
const UC_STACK_OFFSET: usize = UC_OFFSET + 16;
const MCONTEXT_OFFSET: usize = UC_OFFSET + 40;
const SIGMASK_OFFSET: usize = MCONTEXT_OFFSET + 256;
/// UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS, as the kernel sets them.
const UC_FLAGS: u64 = 1 | 2 | 4;
/// `ss_flags` that `sigaltstack` refuses with EINVAL, an error `rt_sigreturn` ignores: the
/// thread's alternate stack, which we do not know, is left as it is.
const SS_FLAGS_LEFT_ALONE: u32 = 3;
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
/// The software-reserved bytes of the FXSAVE area, where the kernel looks for MAGIC1.
const SW_BYTES_OFFSET: usize = 464;
/// The legacy FXSAVE area and the XSAVE header.
const LEGACY_AND_HEADER: usize = 576;
/// XFEATURE_MASK_FP | XFEATURE_MASK_SSE.
const FP_SSE: u64 = 3;

/// A frame to write at `addr`; `rt_sigreturn` must run with `rsp = addr + 8`.
pub(crate) struct Sigframe {
    pub addr: u64,
    pub bytes: Vec<u8>,
}

/// How many bytes of the XSAVE area a frame must carry: up to the end of the last state
/// component in use (XSTATE_BV). The kernel refuses (and then restores x87/SSE only) an area
/// larger than the thread's own, so a component the thread has not used is left out.
pub(crate) fn xstate_size(xsave: &Xsave) -> Option<usize> {
    let bv = xsave.xstate_bv() | FP_SSE;
    let mut size = LEGACY_AND_HEADER;
    for n in 2..64 {
        if bv & (1 << n) != 0 {
            size = size.max(component_end(n)?);
        }
    }
    (size <= xsave.bytes.len()).then_some(size)
}

/// Builds the frame below `resume`'s stack pointer (and its red zone), as the kernel places
/// a signal's: the XSAVE area 64-byte aligned on top, the frame 16-byte aligned minus 8.
pub(crate) fn build(resume: &Regs, sigmask: u64, xsave: &Xsave, xstate_size: usize) -> Sigframe {
    let fp_len = xstate_size as u64 + 4;
    let fpstate = (resume.sp() - RED_ZONE - fp_len) & !63;
    let addr = ((fpstate - FRAME_SIZE) & !15) - 8;
    let mut bytes = vec![0u8; (fpstate + fp_len - addr) as usize];
    let mut put = |off: usize, v: &[u8]| bytes[off..off + v.len()].copy_from_slice(v);

    put(UC_OFFSET, &UC_FLAGS.to_le_bytes());
    put(UC_STACK_OFFSET + 8, &SS_FLAGS_LEFT_ALONE.to_le_bytes());
    let r = &resume.raw;
    let gp = [
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx,
        r.rax, r.rcx, r.rsp, r.rip, r.eflags,
    ];
    for (i, v) in gp.iter().enumerate() {
        put(MCONTEXT_OFFSET + 8 * i, &v.to_le_bytes());
    }
    // cs, gs, fs, ss (16 bits each); gs and fs are not restored on x86-64.
    put(MCONTEXT_OFFSET + 144, &(r.cs as u16).to_le_bytes());
    put(MCONTEXT_OFFSET + 150, &(r.ss as u16).to_le_bytes());
    put(MCONTEXT_OFFSET + 184, &fpstate.to_le_bytes());
    put(SIGMASK_OFFSET, &sigmask.to_le_bytes());

    let fp = (fpstate - addr) as usize;
    put(fp, &xsave.bytes[..xstate_size]);
    let mut sw = [0u8; 48];
    sw[0..4].copy_from_slice(&FP_XSTATE_MAGIC1.to_le_bytes());
    sw[4..8].copy_from_slice(&(fp_len as u32).to_le_bytes());
    sw[8..16].copy_from_slice(&(xsave.xstate_bv() | FP_SSE).to_le_bytes());
    sw[16..20].copy_from_slice(&(xstate_size as u32).to_le_bytes());
    put(fp + SW_BYTES_OFFSET, &sw);
    put(fp + xstate_size, &FP_XSTATE_MAGIC2.to_le_bytes());
    Sigframe { addr, bytes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::REGS_WORDS;

    fn word(bytes: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap())
    }

    #[test]
    fn frame_sits_below_the_red_zone_with_the_kernel_layout() {
        let mut regs = Regs::from_words([0; REGS_WORDS]);
        regs.raw.rsp = 0x7fff_0000_1008;
        regs.raw.rip = 0x40_1234;
        regs.raw.rax = 77;
        regs.raw.r15 = 15;
        regs.raw.eflags = 0x246;
        regs.raw.cs = 0x33;
        regs.raw.ss = 0x2b;
        let mut xsave = Xsave {
            bytes: vec![0xaa; 1024],
        };
        xsave.set_xstate_bv(FP_SSE);
        let f = build(&regs, 0x8000_0001, &xsave, 576);
        let fpstate = f.addr + f.bytes.len() as u64 - 580;
        assert_eq!(fpstate % 64, 0);
        assert!(fpstate + 580 <= regs.raw.rsp - RED_ZONE);
        assert_eq!((f.addr + 8) % 16, 0);
        assert!(f.addr + FRAME_SIZE <= fpstate);
        let b = &f.bytes;
        assert_eq!(word(b, 8), UC_FLAGS);
        assert_eq!(word(b, MCONTEXT_OFFSET + 7 * 8), 15, "r15");
        assert_eq!(word(b, MCONTEXT_OFFSET + 13 * 8), 77, "rax");
        assert_eq!(word(b, MCONTEXT_OFFSET + 15 * 8), regs.raw.rsp, "rsp");
        assert_eq!(word(b, MCONTEXT_OFFSET + 16 * 8), 0x40_1234, "rip");
        assert_eq!(word(b, MCONTEXT_OFFSET + 184), fpstate);
        assert_eq!(word(b, SIGMASK_OFFSET), 0x8000_0001);
        let fp = (fpstate - f.addr) as usize;
        assert_eq!(&b[fp + 464..fp + 468], &FP_XSTATE_MAGIC1.to_le_bytes());
        assert_eq!(&b[fp + 468..fp + 472], &580u32.to_le_bytes());
        assert_eq!(&b[fp + 576..fp + 580], &FP_XSTATE_MAGIC2.to_le_bytes());
        assert_eq!(b[fp + 100], 0xaa, "the XSAVE bytes are copied");
    }

    #[test]
    fn xstate_size_covers_the_components_in_use_only() {
        let mut xsave = Xsave {
            bytes: vec![0; 8192],
        };
        xsave.set_xstate_bv(FP_SSE);
        assert_eq!(xstate_size(&xsave), Some(576));
        if let Some(avx_end) = component_end(2) {
            xsave.set_xstate_bv(FP_SSE | 4);
            assert_eq!(xstate_size(&xsave), Some(avx_end.max(576)));
        }
        xsave.bytes.truncate(600);
        xsave.set_xstate_bv(1 << 9);
        if component_end(9).is_some_and(|end| end > 600) {
            assert_eq!(xstate_size(&xsave), None, "does not fit the area read");
        }
    }
}
