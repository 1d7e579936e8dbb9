//! A namespace file at restore: of the tree's own namespace (the restored root's), one of
//! the tree's network namespaces, or of criu's, which the restored tasks share.

use criu_procfs::NsKind;
use criu_proto::dump_images::DumpImages;
use criu_proto::images::FdTypes;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::registry::{SharedError, SharedFiles};

pub fn open_all(images: &DumpImages, shared: &mut SharedFiles) -> Result<(), SharedError> {
    for (id, e) in shared.to_make(images, FdTypes::Ns, "nsf", |f| f.nsf.as_ref())? {
        let kind = NsKind::ALL
            .into_iter()
            .find(|k| k.clone_flag() as u32 == e.ns_cflag)
            .ok_or(SharedError::Missing {
                id,
                kind: "namespace kind",
            })?;
        let root = images.root();
        let host = images.inventory.root_ids.unwrap_or_default();
        let tree_own = criu_ns::ns_id(&root.ids, kind) == Some(e.ns_id)
            && criu_ns::ns_id(&host, kind) != Some(e.ns_id);
        let held = (kind == NsKind::Net)
            .then(|| shared.netns.get(e.ns_id))
            .flatten();
        let path = if let Some(ns) = held {
            // One of the tree's network namespaces, opened anew (a description of its own).
            format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&ns))
        } else if tree_own {
            format!("/proc/{}/ns/{}", root.host_pid(), kind.name())
        } else {
            format!("/proc/self/ns/{}", kind.name())
        };
        let flags = OFlag::from_bits_retain(e.flags as i32 & libc::O_ACCMODE) | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(path.as_str(), flags, Mode::empty()).map_err(|errno| {
            SharedError::File {
                id,
                path,
                what: "open",
                errno,
            }
        })?;
        shared.add_description(id, fd);
    }
    Ok(())
}
