//! Whether a task dumped on the image's CPU can run on this one, per `--cpu-cap`.

use super::detect::{feature, CpuInfo, NCAPINTS};
use crate::cli::values::cpu_cap;

/// Instruction-set bits compared in `ins` mode, by capability word: only features that user
/// code can execute directly, so a richer destination is fine.
const INS_MASK: [u32; NCAPINTS] = {
    let mut m = [0u32; NCAPINTS];
    // CPUID 1 EDX: fpu tsc cx8 sep cmov clflush mmx fxsr sse sse2
    m[0] = (1 << 0)
        | (1 << 4)
        | (1 << 8)
        | (1 << 11)
        | (1 << 15)
        | (1 << 19)
        | (1 << 23)
        | (1 << 24)
        | (1 << 25)
        | (1 << 26);
    // CPUID 8000_0001 EDX: syscall mmxext rdtscp 3dnowext 3dnow
    m[1] = (1 << 11) | (1 << 22) | (1 << 27) | (1 << 30) | (1 << 31);
    // Linux word 1: rep_good nopl
    m[3] = (1 << 16) | (1 << 20);
    // CPUID 1 ECX: sse3 pclmulqdq monitor ssse3 cx16 sse4.1 sse4.2 movbe popcnt aes xsave
    // osxsave avx f16c rdrand
    m[4] = (1 << 0)
        | (1 << 1)
        | (1 << 3)
        | (1 << 9)
        | (1 << 13)
        | (1 << 19)
        | (1 << 20)
        | (1 << 22)
        | (1 << 23)
        | (1 << 25)
        | (1 << 26)
        | (1 << 27)
        | (1 << 28)
        | (1 << 29)
        | (1 << 30);
    // CPUID 8000_0001 ECX: abm sse4a misalignsse 3dnowprefetch xop fma4 tbm
    m[6] = (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 11) | (1 << 16) | (1 << 21);
    // CPUID 7.0 EBX: fsgsbase bmi1 hle avx2 bmi2 erms rtm mpx avx512f avx512dq rdseed adx
    // clflushopt avx512pf avx512er avx512cd sha_ni avx512bw avx512vl
    m[9] = (1 << 0)
        | (1 << 3)
        | (1 << 4)
        | (1 << 5)
        | (1 << 8)
        | (1 << 9)
        | (1 << 11)
        | (1 << 14)
        | (1 << 16)
        | (1 << 17)
        | (1 << 18)
        | (1 << 19)
        | (1 << 23)
        | (1 << 26)
        | (1 << 27)
        | (1 << 28)
        | (1 << 29)
        | (1 << 30)
        | (1 << 31);
    // CPUID D.1 EAX: xsaveopt xsavec xgetbv1
    m[10] = (1 << 0) | (1 << 1) | (1 << 2);
    // CPUID 7.0 ECX: avx512vbmi avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg
    // tme avx512_vpopcntdq rdpid
    m[11] = (1 << 1)
        | (1 << 6)
        | (1 << 8)
        | (1 << 9)
        | (1 << 10)
        | (1 << 11)
        | (1 << 12)
        | (1 << 13)
        | (1 << 14)
        | (1 << 22);
    // CPUID 8000_0008 EBX: clzero
    m[13] = 1 << 0;
    // CPUID 7.0 EDX: avx512_4vnniw avx512_4fmaps
    m[18] = (1 << 2) | (1 << 3);
    m
};

/// One reason the image's CPU is not compatible with this one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("FPU feature required by image is not supported on host (fpu:{fpu} fxsr:{fxsr} osxsave:{osxsave} xsaves:{xsaves})")]
    Fpu {
        fpu: u8,
        fxsr: u8,
        osxsave: u8,
        xsaves: u8,
    },
    #[error("CPU xfeatures has unsupported bits ({0:#x})")]
    Xfeatures(u64),
    #[error("CPU xsave size mismatch ({image}/{host})")]
    XsaveSize { image: u32, host: u32 },
    #[error("CPU xsave max size mismatch ({image}/{host})")]
    XsaveSizeMax { image: u32, host: u32 },
    #[error("CPU instruction capabilities do not match run time: missing {missing}")]
    Instructions { missing: String },
    #[error("CPU capabilities do not match run time: word {word} is {image:#010x} in the image, {host:#010x} here")]
    Strict { word: usize, image: u32, host: u32 },
}

/// Checks `image` against `host` with the `--cpu-cap` bits `caps`.
pub fn validate(image: &CpuInfo, host: &CpuInfo, caps: u32) -> Result<(), Mismatch> {
    if caps & cpu_cap::FPU != 0 {
        let missing = |bit| u8::from(image.has(bit) && !host.has(bit));
        let (fpu, fxsr, osxsave, xsaves) = (
            missing(feature::FPU),
            missing(feature::FXSR),
            missing(feature::OSXSAVE),
            missing(feature::XSAVES),
        );
        if fpu + fxsr + osxsave + xsaves > 0 {
            return Err(Mismatch::Fpu {
                fpu,
                fxsr,
                osxsave,
                xsaves,
            });
        }
        let extra = image.xfeatures_mask & !host.xfeatures_mask;
        if extra != 0 {
            return Err(Mismatch::Xfeatures(extra));
        }
        if image.xsave_size != host.xsave_size {
            return Err(Mismatch::XsaveSize {
                image: image.xsave_size,
                host: host.xsave_size,
            });
        }
        if image.xsave_size_max != host.xsave_size_max {
            return Err(Mismatch::XsaveSizeMax {
                image: image.xsave_size_max,
                host: host.xsave_size_max,
            });
        }
    }
    if caps & cpu_cap::INS != 0 {
        let missing: Vec<String> = (0..NCAPINTS)
            .flat_map(|w| {
                let lost = image.capability[w] & INS_MASK[w] & !host.capability[w];
                (0..32)
                    .filter(move |b| lost & (1 << b) != 0)
                    .map(move |b| format!("{}", w * 32 + b))
            })
            .collect();
        if !missing.is_empty() {
            return Err(Mismatch::Instructions {
                missing: format!("feature bits {}", missing.join(",")),
            });
        }
    }
    if caps & cpu_cap::CPU != 0 {
        if let Some(w) = (0..NCAPINTS).find(|w| image.capability[*w] != host.capability[*w]) {
            return Err(Mismatch::Strict {
                word: w,
                image: image.capability[w],
                host: host.capability[w],
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::detect::detect;

    #[test]
    fn this_cpu_matches_itself_in_every_mode() {
        let host = detect().unwrap();
        for caps in [cpu_cap::FPU, cpu_cap::INS, cpu_cap::CPU, cpu_cap::ALL] {
            assert_eq!(validate(&host, &host, caps), Ok(()));
        }
    }

    #[test]
    fn each_mode_catches_its_own_difference() {
        let real = detect().unwrap();
        // The image CPU had sha_ni (word 9 bit 29), this host lacks it.
        let mut host = real.clone();
        host.capability[9] &= !(1 << 29);
        let mut image = real.clone();
        image.capability[9] |= 1 << 29;
        assert!(matches!(
            validate(&image, &host, cpu_cap::INS),
            Err(Mismatch::Instructions { .. })
        ));
        assert!(matches!(
            validate(&image, &host, cpu_cap::CPU),
            Err(Mismatch::Strict { word: 9, .. })
        ));
        assert_eq!(validate(&image, &host, cpu_cap::FPU), Ok(()));
        assert_eq!(validate(&image, &host, cpu_cap::NONE), Ok(()));

        // A non-instruction bit differs: only strict mode cares.
        let mut image = real.clone();
        image.capability[14] ^= 1 << 0;
        assert_eq!(validate(&image, &real, cpu_cap::INS), Ok(()));
        assert!(validate(&image, &real, cpu_cap::CPU).is_err());

        // A bigger xsave frame: only fpu mode cares.
        let mut image = real.clone();
        image.xsave_size += 64;
        assert!(matches!(
            validate(&image, &real, cpu_cap::FPU),
            Err(Mismatch::XsaveSize { .. })
        ));
        assert_eq!(validate(&image, &real, cpu_cap::INS), Ok(()));

        let mut image = real.clone();
        image.xfeatures_mask |= 1 << 40;
        assert!(matches!(
            validate(&image, &real, cpu_cap::FPU),
            Err(Mismatch::Xfeatures(_))
        ));
    }

    #[test]
    fn a_poorer_image_cpu_is_fine_for_instructions() {
        let host = detect().unwrap();
        let mut image = host.clone();
        image.capability[4] &= !(1 << 28); // the image CPU had no AVX
        assert_eq!(validate(&image, &host, cpu_cap::INS), Ok(()));
    }
}
