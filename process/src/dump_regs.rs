//! Registers of a stopped thread as `thread_info_x86`: GP registers, the FXSAVE part of the
//! XSAVE area, each extended XSAVE component CRIU keeps, and the three GDT TLS slots.

use criu_proto::images::{
    ThreadInfoX86, UserX86RegsMode, UserDescT, UserX86FpregsEntry, UserX86RegsEntry,
    UserX86XsaveEntry,
};
use criu_tracee::{Regs, Xsave};

/// First GDT slot for TLS (GDT_ENTRY_TLS_MIN on x86_64) and how many there are.
pub const GDT_ENTRY_TLS_MIN: u32 = 12;
pub const GDT_ENTRY_TLS_NUM: u32 = 3;

/// XSAVE state components CRIU stores, by component number.
const XFEATURE_YMM: u32 = 2;
const XFEATURE_BNDREGS: u32 = 3;
const XFEATURE_BNDCSR: u32 = 4;
const XFEATURE_OPMASK: u32 = 5;
const XFEATURE_ZMM_HI256: u32 = 6;
const XFEATURE_HI16_ZMM: u32 = 7;
const XFEATURE_PKRU: u32 = 9;

pub fn gpregs(regs: &Regs) -> UserX86RegsEntry {
    let r = &regs.raw;
    UserX86RegsEntry {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        bp: r.rbp,
        bx: r.rbx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        ax: r.rax,
        cx: r.rcx,
        dx: r.rdx,
        si: r.rsi,
        di: r.rdi,
        orig_ax: r.orig_rax,
        ip: r.rip,
        cs: r.cs,
        flags: r.eflags,
        sp: r.rsp,
        ss: r.ss,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        ds: r.ds,
        es: r.es,
        fs: r.fs,
        gs: r.gs,
        mode: Some(UserX86RegsMode::Native as i32),
    }
}

fn u16_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 2).map_or(0, |s| u32::from(u16::from_le_bytes([s[0], s[1]])))
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4).map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8).map_or(0, |s| {
        let mut w = [0u8; 8];
        w.copy_from_slice(s);
        u64::from_le_bytes(w)
    })
}

fn words32(b: &[u8], off: usize, n: usize) -> Vec<u32> {
    (0..n).map(|i| u32_at(b, off + 4 * i)).collect()
}

fn words64(b: &[u8], off: usize, n: usize) -> Vec<u64> {
    (0..n).map(|i| u64_at(b, off + 8 * i)).collect()
}

/// Offset and size of XSAVE component `n` in the standard layout, if this CPU has it and the
/// area holds it.
fn component(n: u32, area_len: usize) -> Option<(usize, usize)> {
    let leaf = criu_sys::cpuid::cpuid(0xd, n);
    let (size, off) = (leaf.eax as usize, leaf.ebx as usize);
    (size != 0 && off + size <= area_len).then_some((off, size))
}

/// `user_x86_fpregs_entry` from the XSAVE area: the legacy FXSAVE image (512 bytes) and the
/// extended components CRIU keeps, each only if this CPU supports it (as CRIU does).
pub fn fpregs(xsave: &Xsave) -> UserX86FpregsEntry {
    let b = &xsave.bytes;
    let mut x = UserX86XsaveEntry { xstate_bv: xsave.xstate_bv(), ..Default::default() };
    let take32 = |n: u32, expect: usize| component(n, b.len()).filter(|c| c.1 == expect).map(|(o, s)| words32(b, o, s / 4));
    let take64 = |n: u32, expect: usize| component(n, b.len()).filter(|c| c.1 == expect).map(|(o, s)| words64(b, o, s / 8));
    x.ymmh_space = take32(XFEATURE_YMM, 256).unwrap_or_default();
    x.bndreg_state = take64(XFEATURE_BNDREGS, 64).unwrap_or_default();
    x.bndcsr_state = take64(XFEATURE_BNDCSR, 64).unwrap_or_default();
    x.opmask_reg = take64(XFEATURE_OPMASK, 64).unwrap_or_default();
    x.zmm_upper = take64(XFEATURE_ZMM_HI256, 512).unwrap_or_default();
    x.hi16_zmm = take64(XFEATURE_HI16_ZMM, 1024).unwrap_or_default();
    x.pkru = take32(XFEATURE_PKRU, 8).unwrap_or_default();
    UserX86FpregsEntry {
        cwd: u16_at(b, 0),
        swd: u16_at(b, 2),
        twd: u16_at(b, 4),
        fop: u16_at(b, 6),
        rip: u64_at(b, 8),
        rdp: u64_at(b, 16),
        mxcsr: u32_at(b, 24),
        mxcsr_mask: u32_at(b, 28),
        st_space: words32(b, 32, 32),
        xmm_space: words32(b, 160, 64),
        padding: Vec::new(),
        xsave: Some(x),
    }
}

/// A `struct user_desc` as `get_thread_area` fills it (16 bytes).
pub fn user_desc_from_bytes(b: &[u8; 16]) -> UserDescT {
    let flags = u32_at(b, 12);
    let contents = (flags >> 1) & 3;
    UserDescT {
        entry_number: u32_at(b, 0),
        base_addr: u32_at(b, 4),
        limit: u32_at(b, 8),
        seg_32bit: flags & 1 != 0,
        contents_h: contents & 2 != 0,
        contents_l: contents & 1 != 0,
        read_exec_only: flags & (1 << 3) != 0,
        limit_in_pages: flags & (1 << 4) != 0,
        seg_not_present: flags & (1 << 5) != 0,
        usable: flags & (1 << 6) != 0,
    }
}

/// A TLS slot never set, as `get_thread_area` reports it.
pub fn empty_tls_slot(entry_number: u32) -> UserDescT {
    UserDescT { entry_number, read_exec_only: true, seg_not_present: true, ..Default::default() }
}

pub fn thread_info(regs: &Regs, xsave: &Xsave, clear_tid_addr: u64, tls: Vec<UserDescT>) -> ThreadInfoX86 {
    ThreadInfoX86 { clear_tid_addr, gpregs: gpregs(regs), fpregs: fpregs(xsave), tls }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fxsave_fields_land_in_their_places() {
        let mut bytes = vec![0u8; 4096];
        bytes[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        bytes[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        bytes[160..164].copy_from_slice(&0xdead_beefu32.to_le_bytes());
        bytes[512..520].copy_from_slice(&3u64.to_le_bytes());
        let f = fpregs(&Xsave { bytes });
        assert_eq!(f.cwd, 0x37f);
        assert_eq!(f.mxcsr, 0x1f80);
        assert_eq!(f.st_space.len(), 32);
        assert_eq!(f.xmm_space.len(), 64);
        assert_eq!(f.xmm_space[0], 0xdead_beef);
        assert_eq!(f.xsave.map(|x| x.xstate_bv), Some(3));
    }

    #[test]
    fn user_desc_bits() {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&12u32.to_le_bytes());
        b[4..8].copy_from_slice(&0x1234u32.to_le_bytes());
        // seg_32bit, contents = 2, limit_in_pages, usable
        b[12..16].copy_from_slice(&(1u32 | (2 << 1) | (1 << 4) | (1 << 6)).to_le_bytes());
        let d = user_desc_from_bytes(&b);
        assert_eq!((d.entry_number, d.base_addr), (12, 0x1234));
        assert!(d.seg_32bit && d.contents_h && !d.contents_l && d.limit_in_pages && d.usable);
        assert!(!d.read_exec_only && !d.seg_not_present);
    }
}
