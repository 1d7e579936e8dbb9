//! What this CPU can do, read with CPUID into the same 19 capability words (the kernel's
//! cpufeature word layout) and xsave facts that CRIU's cpuinfo image carries.

use criu_sys::cpuid::cpuid;

/// Number of 32-bit capability words in a version 2 image.
pub const NCAPINTS: usize = 19;
/// Words in a version 1 image.
pub const NCAPINTS_V1: usize = 12;

/// Capability word indexes.
pub mod word {
    pub const CPUID_1_EDX: usize = 0;
    pub const CPUID_8000_0001_EDX: usize = 1;
    pub const LNX_1: usize = 3;
    pub const CPUID_1_ECX: usize = 4;
    pub const CPUID_8000_0001_ECX: usize = 6;
    pub const CPUID_7_0_EBX: usize = 9;
    pub const CPUID_D_1_EAX: usize = 10;
    pub const CPUID_7_0_ECX: usize = 11;
    pub const CPUID_F_1_EDX: usize = 12;
    pub const CPUID_8000_0008_EBX: usize = 13;
    pub const CPUID_6_EAX: usize = 14;
    pub const CPUID_8000_000A_EDX: usize = 15;
    pub const CPUID_F_0_EDX: usize = 16;
    pub const CPUID_8000_0007_EBX: usize = 17;
    pub const CPUID_7_0_EDX: usize = 18;
}

/// Feature bit numbers (word * 32 + bit) used here.
pub mod feature {
    use super::word::*;
    pub const FPU: usize = CPUID_1_EDX * 32;
    pub const FXSR: usize = CPUID_1_EDX * 32 + 24;
    pub const XMM: usize = CPUID_1_EDX * 32 + 25;
    pub const REP_GOOD: usize = LNX_1 * 32 + 16;
    pub const NOPL: usize = LNX_1 * 32 + 20;
    pub const CPUID: usize = LNX_1 * 32 + 25;
    pub const XSAVE: usize = CPUID_1_ECX * 32 + 26;
    pub const OSXSAVE: usize = CPUID_1_ECX * 32 + 27;
    pub const AVX: usize = CPUID_1_ECX * 32 + 28;
    pub const MPX: usize = CPUID_7_0_EBX * 32 + 14;
    pub const AVX512F: usize = CPUID_7_0_EBX * 32 + 16;
    pub const INTEL_PT: usize = CPUID_7_0_EBX * 32 + 25;
    pub const ERMS: usize = CPUID_7_0_EBX * 32 + 9;
    pub const XSAVES: usize = CPUID_D_1_EAX * 32 + 3;
    pub const PKU: usize = CPUID_7_0_ECX * 32 + 3;
    pub const CQM_LLC: usize = CPUID_F_0_EDX * 32 + 1;
    pub const HDC: usize = CPUID_6_EAX * 32 + 13;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Intel,
    Amd,
}

/// The facts one cpuinfo image entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuInfo {
    pub vendor: Vendor,
    pub family: u32,
    pub model: u32,
    pub stepping: u32,
    pub capability: [u32; NCAPINTS],
    pub model_id: String,
    pub xfeatures_mask: u64,
    pub xsave_size: u32,
    pub xsave_size_max: u32,
}

impl CpuInfo {
    pub fn has(&self, bit: usize) -> bool {
        self.capability
            .get(bit / 32)
            .is_some_and(|w| w & (1 << (bit % 32)) != 0)
    }

    fn set(&mut self, bit: usize, on: bool) {
        if let Some(w) = self.capability.get_mut(bit / 32) {
            if on {
                *w |= 1 << (bit % 32);
            } else {
                *w &= !(1 << (bit % 32));
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("cpu: unsupported CPU vendor {0:?}")]
    Vendor(String),
    #[error("cpu: no FPU detected")]
    NoFpu,
    #[error("cpu: FP/SSE not among the CPU's xstate features: {0:#x}")]
    NoFpSse(u64),
}

/// The xsave components CRIU restores for user space, and the mask it strips as supervisor
/// state. CRIU builds that mask from the PT bit and the HDC component *number* (10), which
/// also strips bits 1 and 3; we compute the same value so our images match upstream's.
const XFEATURE_MASK_USER: u64 = 0x2ff;
const XFEATURE_MASK_SUPERVISOR: u64 = (1 << 8) | 10;

/// The CPUID feature each xsave component depends on, by component number.
const XSAVE_COMPONENT_FEATURE: [usize; 11] = [
    feature::FPU,
    feature::XMM,
    feature::AVX,
    feature::MPX,
    feature::MPX,
    feature::AVX512F,
    feature::AVX512F,
    feature::AVX512F,
    feature::INTEL_PT,
    feature::PKU,
    feature::HDC,
];

/// Reads this CPU.
pub fn detect() -> Result<CpuInfo, DetectError> {
    let leaf0 = cpuid(0, 0);
    let mut vendor_bytes = Vec::with_capacity(12);
    for reg in [leaf0.ebx, leaf0.edx, leaf0.ecx] {
        vendor_bytes.extend_from_slice(&reg.to_le_bytes());
    }
    let vendor_name = String::from_utf8_lossy(&vendor_bytes).into_owned();
    let vendor = match vendor_name.as_str() {
        "GenuineIntel" => Vendor::Intel,
        "AuthenticAMD" | "HygonGenuine" => Vendor::Amd,
        _ => return Err(DetectError::Vendor(vendor_name)),
    };
    let max_leaf = leaf0.eax;
    let mut c = CpuInfo {
        vendor,
        family: 4,
        model: 0,
        stepping: 0,
        capability: [0; NCAPINTS],
        model_id: String::new(),
        xfeatures_mask: 0,
        xsave_size: 0,
        xsave_size_max: 0,
    };
    if max_leaf >= 1 {
        let r = cpuid(1, 0);
        c.family = (r.eax >> 8) & 0xf;
        c.model = (r.eax >> 4) & 0xf;
        c.stepping = r.eax & 0xf;
        if c.family == 0xf {
            c.family += (r.eax >> 20) & 0xff;
        }
        if c.family >= 6 {
            c.model += ((r.eax >> 16) & 0xf) << 4;
        }
        c.capability[word::CPUID_1_EDX] = r.edx;
        c.capability[word::CPUID_1_ECX] = r.ecx;
    }
    if max_leaf >= 6 {
        c.capability[word::CPUID_6_EAX] = cpuid(6, 0).eax;
    }
    if max_leaf >= 7 {
        let r = cpuid(7, 0);
        c.capability[word::CPUID_7_0_EBX] = r.ebx;
        c.capability[word::CPUID_7_0_ECX] = r.ecx;
        c.capability[word::CPUID_7_0_EDX] = r.edx;
    }
    if max_leaf >= 0xd {
        c.capability[word::CPUID_D_1_EAX] = cpuid(0xd, 1).eax;
    }
    if max_leaf >= 0xf {
        c.capability[word::CPUID_F_0_EDX] = cpuid(0xf, 0).edx;
        if c.has(feature::CQM_LLC) {
            c.capability[word::CPUID_F_1_EDX] = cpuid(0xf, 1).edx;
        }
    }
    let max_ext = cpuid(0x8000_0000, 0).eax;
    if max_ext & 0xffff_0000 == 0x8000_0000 && max_ext >= 0x8000_0001 {
        let r = cpuid(0x8000_0001, 0);
        c.capability[word::CPUID_8000_0001_ECX] = r.ecx;
        c.capability[word::CPUID_8000_0001_EDX] = r.edx;
    }
    if max_ext >= 0x8000_0004 {
        let mut raw = Vec::with_capacity(48);
        for leaf in 0x8000_0002..=0x8000_0004 {
            let r = cpuid(leaf, 0);
            for reg in [r.eax, r.ebx, r.ecx, r.edx] {
                raw.extend_from_slice(&reg.to_le_bytes());
            }
        }
        let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
        c.model_id = String::from_utf8_lossy(&raw[..end])
            .trim_start_matches(' ')
            .to_string();
    }
    if max_ext >= 0x8000_0007 {
        c.capability[word::CPUID_8000_0007_EBX] = cpuid(0x8000_0007, 0).ebx;
    }
    if max_ext >= 0x8000_000a {
        c.capability[word::CPUID_8000_000A_EDX] = cpuid(0x8000_000a, 0).edx;
    }
    if max_ext >= 0x8000_0008 {
        c.capability[word::CPUID_8000_0008_EBX] = cpuid(0x8000_0008, 0).ebx;
    }
    // Synthetic words, set the way the kernel and CRIU do on x86_64.
    c.set(feature::CPUID, true);
    c.set(feature::NOPL, true);
    if max_leaf < 0xd {
        c.set(feature::XSAVE, false);
    }
    match c.vendor {
        Vendor::Intel if c.family == 15 => {
            c.set(feature::REP_GOOD, false);
            c.set(feature::ERMS, false);
        }
        Vendor::Intel if c.family == 6 => c.set(feature::REP_GOOD, true),
        Vendor::Intel => {}
        Vendor::Amd => {
            c.set(31, false);
            if c.family >= 0x10 {
                c.set(feature::REP_GOOD, true);
            }
            if c.family == 0xf {
                let level = cpuid(1, 0).eax;
                if (0x0f48..0x0f50).contains(&level) || level >= 0x0f58 {
                    c.set(feature::REP_GOOD, true);
                }
            }
        }
    }
    detect_xsave(&mut c)?;
    Ok(c)
}

fn detect_xsave(c: &mut CpuInfo) -> Result<(), DetectError> {
    if !c.has(feature::FPU) {
        return Err(DetectError::NoFpu);
    }
    if !c.has(feature::XSAVE) {
        return Ok(());
    }
    let r = cpuid(0xd, 0);
    let mut mask = u64::from(r.eax) | (u64::from(r.edx) << 32);
    if mask & 0b11 != 0b11 {
        return Err(DetectError::NoFpSse(mask));
    }
    for (component, feat) in XSAVE_COMPONENT_FEATURE.iter().enumerate() {
        if !c.has(*feat) {
            mask &= !(1 << component);
        }
    }
    mask &= XFEATURE_MASK_USER;
    mask &= !XFEATURE_MASK_SUPERVISOR;
    c.xfeatures_mask = mask;
    c.xsave_size = r.ebx;
    c.xsave_size_max = r.ecx;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_agrees_with_proc_cpuinfo() {
        let c = detect().expect("detect this CPU");
        let text = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let field = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap()
        };
        assert_eq!(c.family.to_string(), field("cpu family"));
        assert_eq!(c.model.to_string(), field("model\t"));
        assert_eq!(c.model_id, field("model name"));
        let flags: Vec<String> = field("flags").split(' ').map(str::to_string).collect();
        let has = |f: &str| flags.iter().any(|x| x == f);
        assert_eq!(c.has(feature::FPU), has("fpu"));
        assert_eq!(c.has(feature::FXSR), has("fxsr"));
        assert_eq!(c.has(feature::XMM), has("sse"));
        assert_eq!(c.has(feature::AVX), has("avx"));
        assert_eq!(c.has(feature::XSAVE), has("xsave"));
        assert_eq!(c.has(feature::AVX512F), has("avx512f"));
    }

    #[test]
    fn xsave_sizes_are_plausible() {
        let c = detect().unwrap();
        if c.has(feature::XSAVE) {
            // Legacy area (512) + header (64) at least; the max covers the enabled size.
            assert!(c.xsave_size >= 576, "xsave_size {}", c.xsave_size);
            assert!(c.xsave_size_max >= c.xsave_size);
            // FP is always kept; the CRIU-compatible supervisor mask removes SSE.
            assert_eq!(c.xfeatures_mask & 1, 1);
            assert_eq!(c.xfeatures_mask & 0b1010, 0);
        }
    }
}
