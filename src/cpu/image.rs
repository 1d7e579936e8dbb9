//! The cpuinfo image: one `cpuinfo_entry` holding one x86 entry, as CRIU writes it.

use std::path::Path;

use criu_proto::images::{cpuinfo_x86_entry::Vendor as ImgVendor, CpuinfoEntry, CpuinfoX86Entry};
use criu_proto::{ImageKind, ImageReader, ImageWriter};

use super::detect::{CpuInfo, Vendor, NCAPINTS, NCAPINTS_V1};

/// Capability words CRIU writes today (version 2: 19 words).
const CAPABILITY_VER: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CpuImageError {
    #[error(transparent)]
    Image(#[from] criu_proto::Error),
    #[error("{0}: No cpuinfo image")]
    Empty(String),
    #[error("{path}: No x86 related cpuinfo in image, corruption (n_x86_entry = {count})")]
    NotOneX86Entry { path: String, count: usize },
    #[error("{path}: Image carries unknown vendor {vendor}")]
    Vendor { path: String, vendor: i32 },
    #[error("{path}: Image carries {got} words while {expected} expected")]
    Words {
        path: String,
        got: usize,
        expected: usize,
    },
    #[error("{path}: Image carries unknown capability version {0}", .version)]
    Version { path: String, version: u32 },
}

pub fn to_entry(c: &CpuInfo) -> CpuinfoEntry {
    let x86 = CpuinfoX86Entry {
        vendor_id: match c.vendor {
            Vendor::Intel => ImgVendor::Intel,
            Vendor::Amd => ImgVendor::Amd,
        } as i32,
        cpu_family: c.family,
        model: c.model,
        stepping: c.stepping,
        capability_ver: CAPABILITY_VER,
        capability: c.capability.to_vec(),
        model_id: (!c.model_id.is_empty()).then(|| c.model_id.clone()),
        xfeatures_mask: Some(c.xfeatures_mask),
        xsave_size: Some(c.xsave_size),
        xsave_size_max: Some(c.xsave_size_max),
    };
    CpuinfoEntry {
        x86_entry: vec![x86],
        ..Default::default()
    }
}

/// Turns the image's entry into CPU facts; what an old image lacks is taken from `host`,
/// as CRIU does, so that only what the image states is compared.
pub fn from_entry(
    path: &str,
    entry: &CpuinfoEntry,
    host: &CpuInfo,
) -> Result<CpuInfo, CpuImageError> {
    let [x86] = entry.x86_entry.as_slice() else {
        return Err(CpuImageError::NotOneX86Entry {
            path: path.into(),
            count: entry.x86_entry.len(),
        });
    };
    let vendor = match ImgVendor::try_from(x86.vendor_id) {
        Ok(ImgVendor::Intel) => Vendor::Intel,
        Ok(ImgVendor::Amd) => Vendor::Amd,
        _ => {
            return Err(CpuImageError::Vendor {
                path: path.into(),
                vendor: x86.vendor_id,
            })
        }
    };
    let expected = match x86.capability_ver {
        1 => NCAPINTS_V1,
        2 => NCAPINTS,
        version => {
            return Err(CpuImageError::Version {
                path: path.into(),
                version,
            })
        }
    };
    if x86.capability.len() != expected {
        return Err(CpuImageError::Words {
            path: path.into(),
            got: x86.capability.len(),
            expected,
        });
    }
    let mut capability = host.capability;
    capability[..expected].copy_from_slice(&x86.capability);
    Ok(CpuInfo {
        vendor,
        family: x86.cpu_family,
        model: x86.model,
        stepping: x86.stepping,
        capability,
        model_id: x86.model_id.clone().unwrap_or_default(),
        xfeatures_mask: x86.xfeatures_mask.unwrap_or(host.xfeatures_mask),
        xsave_size: x86.xsave_size.unwrap_or(host.xsave_size),
        xsave_size_max: x86.xsave_size_max.unwrap_or(host.xsave_size_max),
    })
}

pub fn write(dir: &Path, c: &CpuInfo) -> Result<(), CpuImageError> {
    let mut img = ImageWriter::create(dir, &ImageKind::CPUINFO, None)?;
    img.write(&to_entry(c))?;
    img.finish()?;
    Ok(())
}

pub fn read(dir: &Path, host: &CpuInfo) -> Result<CpuInfo, CpuImageError> {
    let mut img = ImageReader::open(dir, &ImageKind::CPUINFO, None)?;
    let path = img.path().to_string();
    let entry: CpuinfoEntry = img
        .read()?
        .ok_or_else(|| CpuImageError::Empty(path.clone()))?;
    from_entry(&path, &entry, host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::detect::detect;

    #[test]
    fn image_round_trip_keeps_every_fact() {
        let host = detect().unwrap();
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &host).unwrap();
        assert_eq!(read(dir.path(), &host).unwrap(), host);
    }

    #[test]
    fn version_1_images_borrow_the_missing_words_from_the_host() {
        let host = detect().unwrap();
        let mut entry = to_entry(&host);
        entry.x86_entry[0].capability_ver = 1;
        entry.x86_entry[0].capability.truncate(NCAPINTS_V1);
        entry.x86_entry[0].xsave_size = None;
        let back = from_entry("t", &entry, &host).unwrap();
        assert_eq!(back.capability, host.capability);
        assert_eq!(back.xsave_size, host.xsave_size);
    }

    #[test]
    fn bad_entries_are_refused() {
        let host = detect().unwrap();
        let mut entry = to_entry(&host);
        entry.x86_entry[0].capability.pop();
        assert!(matches!(
            from_entry("t", &entry, &host),
            Err(CpuImageError::Words { .. })
        ));
        let mut entry = to_entry(&host);
        entry.x86_entry[0].vendor_id = 0;
        assert!(matches!(
            from_entry("t", &entry, &host),
            Err(CpuImageError::Vendor { .. })
        ));
        let mut entry = to_entry(&host);
        entry.x86_entry[0].capability_ver = 7;
        assert!(matches!(
            from_entry("t", &entry, &host),
            Err(CpuImageError::Version { .. })
        ));
        let entry = CpuinfoEntry::default();
        assert!(matches!(
            from_entry("t", &entry, &host),
            Err(CpuImageError::NotOneX86Entry { .. })
        ));
    }

    #[test]
    fn missing_image_names_the_file() {
        let host = detect().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let err = read(dir.path(), &host).unwrap_err().to_string();
        assert!(err.contains("cpuinfo.img"), "{err}");
    }
}
