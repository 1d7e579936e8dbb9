//! Registers between the tracee engine and `core-*.img`: GP registers as
//! `user_x86_regs_entry`, the XSAVE area as `user_x86_fpregs_entry` (legacy FXSAVE fields plus
//! one array per extended component, each only when this CPU has that component, as CRIU
//! does). Shared by dump and restore so both read the layout the same way.

use criu_proto::images::{UserX86FpregsEntry, UserX86RegsEntry, UserX86XsaveEntry};
use criu_tracee::regs::component_offset;
use criu_tracee::{Regs, Xsave};

pub fn gpregs_to_entry(r: &Regs) -> UserX86RegsEntry {
    let r = &r.raw;
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
        mode: Some(criu_proto::images::UserX86RegsMode::Native as i32),
    }
}

pub fn entry_to_gpregs(e: &UserX86RegsEntry) -> Regs {
    let mut regs = Regs::from_words([0; criu_tracee::regs::REGS_WORDS]);
    let r = &mut regs.raw;
    r.r15 = e.r15;
    r.r14 = e.r14;
    r.r13 = e.r13;
    r.r12 = e.r12;
    r.rbp = e.bp;
    r.rbx = e.bx;
    r.r11 = e.r11;
    r.r10 = e.r10;
    r.r9 = e.r9;
    r.r8 = e.r8;
    r.rax = e.ax;
    r.rcx = e.cx;
    r.rdx = e.dx;
    r.rsi = e.si;
    r.rdi = e.di;
    r.orig_rax = e.orig_ax;
    r.rip = e.ip;
    r.cs = e.cs;
    r.eflags = e.flags;
    r.rsp = e.sp;
    r.ss = e.ss;
    r.fs_base = e.fs_base;
    r.gs_base = e.gs_base;
    r.ds = e.ds;
    r.es = e.es;
    r.fs = e.fs;
    r.gs = e.gs;
    regs
}

/// Extended XSAVE components CRIU stores, with their size in bytes.
const COMPONENTS: [(u32, usize); 7] = [
    (2, 256),
    (3, 64),
    (4, 64),
    (5, 64),
    (6, 512),
    (7, 1024),
    (9, 8),
];

/// Components this CPU implements (CPUID 0xD.0 EAX:EDX).
fn cpu_components() -> u64 {
    let leaf = criu_sys::cpuid::cpuid(0xd, 0);
    u64::from(leaf.eax) | (u64::from(leaf.edx) << 32)
}

fn le_u16(b: &[u8], off: usize) -> u32 {
    u32::from(u16::from_le_bytes([b[off], b[off + 1]]))
}

fn le_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap_or([0; 4]))
}

fn le_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap_or([0; 8]))
}

fn u32s(b: &[u8], off: usize, n: usize) -> Vec<u32> {
    (0..n).map(|i| le_u32(b, off + 4 * i)).collect()
}

fn u64s(b: &[u8], off: usize, n: usize) -> Vec<u64> {
    (0..n).map(|i| le_u64(b, off + 8 * i)).collect()
}

/// Legacy region (512) + XSAVE header (64).
const LEGACY_AND_HEADER: usize = 576;

pub fn xsave_to_entry(x: &Xsave) -> UserX86FpregsEntry {
    let mut b = x.bytes.clone();
    if b.len() < LEGACY_AND_HEADER {
        b.resize(LEGACY_AND_HEADER, 0);
    }
    let mut xsave = UserX86XsaveEntry {
        xstate_bv: le_u64(&b, 512),
        ..Default::default()
    };
    let cpu = cpu_components();
    for (n, size) in COMPONENTS {
        let Some(off) = component_offset(n).filter(|o| cpu & (1 << n) != 0 && o + size <= b.len())
        else {
            continue;
        };
        match n {
            2 => xsave.ymmh_space = u32s(&b, off, size / 4),
            3 => xsave.bndreg_state = u64s(&b, off, size / 8),
            4 => xsave.bndcsr_state = u64s(&b, off, size / 8),
            5 => xsave.opmask_reg = u64s(&b, off, size / 8),
            6 => xsave.zmm_upper = u64s(&b, off, size / 8),
            7 => xsave.hi16_zmm = u64s(&b, off, size / 8),
            _ => xsave.pkru = u32s(&b, off, size / 4),
        }
    }
    UserX86FpregsEntry {
        cwd: le_u16(&b, 0),
        swd: le_u16(&b, 2),
        twd: le_u16(&b, 4),
        fop: le_u16(&b, 6),
        rip: le_u64(&b, 8),
        rdp: le_u64(&b, 16),
        mxcsr: le_u32(&b, 24),
        mxcsr_mask: le_u32(&b, 28),
        st_space: u32s(&b, 32, 32),
        xmm_space: u32s(&b, 160, 64),
        // CRIU leaves the reserved tail of the legacy area out.
        padding: Vec::new(),
        xsave: Some(xsave),
    }
}

/// Builds an XSAVE area of `size` bytes from the image entry.
pub fn entry_to_xsave(e: &UserX86FpregsEntry, size: usize) -> Xsave {
    let mut b = vec![0u8; size.max(LEGACY_AND_HEADER)];
    let put = |b: &mut Vec<u8>, off: usize, bytes: &[u8]| {
        if off + bytes.len() <= b.len() {
            b[off..off + bytes.len()].copy_from_slice(bytes);
        }
    };
    put(&mut b, 0, &(e.cwd as u16).to_le_bytes());
    put(&mut b, 2, &(e.swd as u16).to_le_bytes());
    put(&mut b, 4, &(e.twd as u16).to_le_bytes());
    put(&mut b, 6, &(e.fop as u16).to_le_bytes());
    put(&mut b, 8, &e.rip.to_le_bytes());
    put(&mut b, 16, &e.rdp.to_le_bytes());
    put(&mut b, 24, &e.mxcsr.to_le_bytes());
    put(&mut b, 28, &e.mxcsr_mask.to_le_bytes());
    let words32 = |v: &[u32]| v.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    let words64 = |v: &[u64]| v.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    put(&mut b, 32, &words32(&e.st_space));
    put(&mut b, 160, &words32(&e.xmm_space));
    put(&mut b, 416, &words32(&e.padding));
    if let Some(x) = &e.xsave {
        put(&mut b, 512, &x.xstate_bv.to_le_bytes());
        for (n, _) in COMPONENTS {
            let bytes = match n {
                2 => words32(&x.ymmh_space),
                3 => words64(&x.bndreg_state),
                4 => words64(&x.bndcsr_state),
                5 => words64(&x.opmask_reg),
                6 => words64(&x.zmm_upper),
                7 => words64(&x.hi16_zmm),
                _ => words32(&x.pkru),
            };
            if let (false, Some(off)) = (bytes.is_empty(), component_offset(n)) {
                put(&mut b, off, &bytes);
            }
        }
    } else {
        // FXSAVE only: say that x87 and SSE state is present.
        put(&mut b, 512, &3u64.to_le_bytes());
    }
    Xsave { bytes: b }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gp_registers_round_trip() {
        let words: [u64; criu_tracee::regs::REGS_WORDS] =
            std::array::from_fn(|i| 0x1000 + i as u64 * 0x11);
        let regs = Regs::from_words(words);
        let back = entry_to_gpregs(&gpregs_to_entry(&regs));
        assert_eq!(back.to_words(), words);
    }

    #[test]
    fn xsave_round_trip_keeps_every_stored_byte() {
        let size = criu_tracee::regs::xsave_size();
        let mut bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        // Bytes CRIU does not store: the reserved tail of the legacy area and the header
        // beyond XSTATE_BV.
        bytes[416..512].fill(0);
        bytes[520..576].fill(0);
        let x = Xsave { bytes };
        let back = entry_to_xsave(&xsave_to_entry(&x), size);
        let cpu = cpu_components();
        // The legacy region and XSTATE_BV come back exactly.
        assert_eq!(&back.bytes[..576], &x.bytes[..576]);
        for (n, len) in COMPONENTS {
            if let Some(off) = component_offset(n).filter(|_| cpu & (1 << n) != 0) {
                if off + len <= size {
                    assert_eq!(
                        &back.bytes[off..off + len],
                        &x.bytes[off..off + len],
                        "component {n}"
                    );
                }
            }
        }
    }

    #[test]
    fn fxsave_only_entry_marks_x87_and_sse() {
        let e = UserX86FpregsEntry {
            mxcsr: 0x1f80,
            ..Default::default()
        };
        let x = entry_to_xsave(&e, 1024);
        assert_eq!(x.xstate_bv(), 3);
        assert_eq!(le_u32(&x.bytes, 24), 0x1f80);
    }
}
