//! A stopped thread's `thread_info_x86`: registers (converted by `crate::regs`, shared with
//! restore) and the three GDT TLS slots.

use criu_proto::images::{ThreadInfoX86, UserDescT};
use criu_tracee::{Regs, Xsave};

use crate::regs::{gpregs_to_entry, xsave_to_entry};

/// First GDT slot for TLS (GDT_ENTRY_TLS_MIN on x86_64) and how many there are.
pub const GDT_ENTRY_TLS_MIN: u32 = 12;
pub const GDT_ENTRY_TLS_NUM: u32 = 3;

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
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
    UserDescT {
        entry_number,
        read_exec_only: true,
        seg_not_present: true,
        ..Default::default()
    }
}

pub fn thread_info(
    regs: &Regs,
    xsave: &Xsave,
    clear_tid_addr: u64,
    tls: Vec<UserDescT>,
) -> ThreadInfoX86 {
    ThreadInfoX86 {
        clear_tid_addr,
        gpregs: gpregs_to_entry(regs),
        fpregs: xsave_to_entry(xsave),
        tls,
    }
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
        let f = xsave_to_entry(&Xsave { bytes });
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
