//! Mounts of block devices given from outside (`--external dev[MAJOR/MINOR]:KEY` at dump,
//! `--external dev[KEY]:DEVICE` at restore), as CRIU keeps them: a filesystem on a block
//! device, mounted at its root, is recorded with key `CRIU:EXTERNAL_DEV`, its filesystem
//! name, and `dev[KEY]` as source; the restore mounts that filesystem again from the device
//! node the key is given, with the same options.

use criu_procfs::MountInfo;
use criu_proto::images::{Fstype, MntEntry};

use crate::model::{kdev_major, kdev_minor};
use crate::{MountError, MountOptions};

/// The key CRIU writes for a mount of an external block device.
pub const EXTERNAL_DEV: &str = "CRIU:EXTERNAL_DEV";

/// Marks the mounts of devices `--external dev[MAJOR/MINOR]:KEY` names (dump); `infos` gives
/// each mount's filesystem name.
pub fn mark(entries: &mut [MntEntry], infos: &[MountInfo], opts: &MountOptions) {
    for e in entries.iter_mut() {
        if e.ext_key.is_some() || e.fstype != Fstype::Unsupported as u32 || e.root != "/" {
            continue;
        }
        let dev = format!("{}/{}", kdev_major(e.root_dev), kdev_minor(e.root_dev));
        let Some((_, key)) = opts.devices.iter().find(|(d, _)| *d == dev) else {
            continue;
        };
        let Some(info) = infos.iter().find(|i| i.mnt_id as u32 == e.mnt_id) else {
            continue;
        };
        tracing::info!(
            "mount {} ({}): device {dev} is external as {key}",
            e.mnt_id,
            e.mountpoint
        );
        e.ext_key = Some(EXTERNAL_DEV.into());
        e.fstype = Fstype::Auto as u32;
        e.fsname = Some(info.fstype.clone());
        e.source = format!("dev[{key}]");
    }
}

/// The key of an external device mount (from its source `dev[KEY]`).
pub fn key_of(e: &MntEntry) -> Result<String, MountError> {
    e.source
        .strip_prefix("dev[")
        .and_then(|k| k.strip_suffix(']'))
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            MountError::BadImage(format!(
                "mount {} ({}): an external device with source {:?}, not dev[KEY]",
                e.mnt_id, e.mountpoint, e.source
            ))
        })
}

/// At restore: the device node `--external dev[KEY]:DEVICE` gives.
pub fn device_for<'a>(
    e: &MntEntry,
    key: &str,
    opts: &'a MountOptions,
) -> Result<&'a str, MountError> {
    opts.devices
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, d)| d.as_str())
        .ok_or_else(|| {
            MountError::Other(format!(
                "mount {} ({}) is of an external device: give --external dev[{key}]:DEVICE",
                e.mnt_id, e.mountpoint
            ))
        })
}
