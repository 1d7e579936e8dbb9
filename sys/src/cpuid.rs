//! CPUID access for `cpuinfo dump/check` and `--cpu-cap`.

/// Registers returned by one CPUID leaf/subleaf.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuidRegs {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// Runs CPUID for `leaf`/`subleaf` on the current CPU.
#[cfg(target_arch = "x86_64")]
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidRegs {
    // SAFETY: CPUID is available on every x86_64 CPU and has no side effects.
    #[allow(unused_unsafe)]
    let r = unsafe { core::arch::x86_64::__cpuid_count(leaf, subleaf) };
    CpuidRegs {
        eax: r.eax,
        ebx: r.ebx,
        ecx: r.ecx,
        edx: r.edx,
    }
}
