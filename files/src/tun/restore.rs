//! tun files at restore: `/dev/net/tun` opened again in its network namespace (see
//! `crate::netns`) and attached to its device, which
//! the namespace's restore made before, persistent (as CRIU: a device no file held would be
//! gone). Its own persistence comes back once a file holds it; a detached queue is detached
//! again.

use std::collections::btree_map::{BTreeMap, Entry};
use std::os::fd::{AsFd, OwnedFd};

use criu_proto::dump_images::DumpImages;
use criu_proto::images::{FdTypes, NetDeviceEntry};
use criu_proto::{ImageKind, ImageReader};

use crate::eventfd::restore::{failed, set_status_flags};
use crate::registry::{SharedError, SharedFiles};

const IFF_PERSIST: u32 = libc::IFF_PERSIST as u32;

pub fn open_all(images: &DumpImages, shared: &mut SharedFiles) -> Result<(), SharedError> {
    let tuns = shared.to_make(images, FdTypes::Tunf, "tunf", |f| f.tunf.as_ref())?;
    if tuns.is_empty() {
        return Ok(());
    }
    let mut devices: BTreeMap<u32, BTreeMap<String, (u32, i32)>> = BTreeMap::new();
    for (id, t) in tuns {
        let err = failed(id, "tun file");
        let reg = images.files.get(&id).and_then(|f| f.reg.as_ref());
        let flags = reg.map_or(0, |r| r.flags as i32) & libc::O_NONBLOCK;
        // The file works in the namespace it is opened in.
        let file = shared
            .netns
            .run(t.ns_id, || criu_sys::tun::open_with(flags))
            .map_err(|what| SharedError::Tun { id, what })?
            .map_err(err("open /dev/net/tun"))?;
        let file = OwnedFd::from(file);
        if let Some(name) = &t.netdev {
            let ns_id = t.ns_id.or(images.root().ids.net_ns_id).unwrap_or(0);
            let known = match devices.entry(ns_id) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => v.insert(tun_devices(images, ns_id)?),
            };
            let (dev_flags, sndbuf) = known.get(name).copied().ok_or_else(|| SharedError::Tun {
                id,
                what: format!("its device {name} is no tun device of netdev-{ns_id}.img"),
            })?;
            let detached = t.detached == Some(true);
            criu_sys::tun::attach(file.as_fd(), name, dev_flags, sndbuf, detached)
                .map_err(|(what, errno)| err(what)(errno))?;
            if dev_flags & IFF_PERSIST == 0 {
                criu_sys::tun::set_persist(file.as_fd(), false).map_err(err("TUNSETPERSIST"))?;
            }
        }
        if let Some(r) = reg {
            set_status_flags(file.as_fd(), r.flags).map_err(err("F_SETFL"))?;
            shared.restore_fown(id, &file, &r.fown)?;
        }
        shared.add_description(id, file);
    }
    Ok(())
}

/// The tun devices of network namespace `ns_id`, with their TUNSETIFF flags and send buffer.
fn tun_devices(
    images: &DumpImages,
    ns_id: u32,
) -> Result<BTreeMap<String, (u32, i32)>, SharedError> {
    let mut out = BTreeMap::new();
    let Some(mut img) =
        ImageReader::open_if_exists(&images.dir, &ImageKind::NETDEV, Some(ns_id.into()))?
    else {
        return Ok(out);
    };
    for d in img.read_all::<NetDeviceEntry>()? {
        if let Some(t) = &d.tun {
            out.insert(d.name.clone(), (t.flags, t.sndbuf as i32));
        }
    }
    Ok(out)
}
