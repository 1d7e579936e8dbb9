//! uts namespace: host and domain name (`utsns-N.img`). Both halves read and write the
//! namespace's sysctls from a thread of criu that joined it.

use std::path::Path;

use criu_procfs::NsKind;
use criu_proto::images::UtsnsEntry;
use criu_proto::{ImageKind, ImageReader, ImageWriter};

use crate::enter::in_namespaces_of;
use crate::error::{enter, image, io, NsImageError};

const KIND: &str = "uts";
const HOSTNAME: &str = "/proc/sys/kernel/hostname";
const DOMAINNAME: &str = "/proc/sys/kernel/domainname";

pub fn dump(pid: i32, id: u32, dir: &Path) -> Result<(), NsImageError> {
    let read = |p: &str| {
        criu_procfs::values::read_sysctl(p)
            .map(|s| s.trim_end_matches('\n').to_string())
            .map_err(io(KIND, format!("cannot read {p}")))
    };
    let (nodename, domainname) = in_namespaces_of(pid, &[NsKind::Uts], || {
        Ok::<_, NsImageError>((read(HOSTNAME)?, read(DOMAINNAME)?))
    })
    .map_err(enter(KIND))??;
    let mut w =
        ImageWriter::create(dir, &ImageKind::UTSNS, Some(id.into())).map_err(image(KIND))?;
    w.write(&UtsnsEntry {
        nodename,
        domainname,
    })
    .map_err(image(KIND))?;
    w.finish().map_err(image(KIND))?;
    Ok(())
}

/// Names the fresh uts namespace of `pid` as the dumped one was.
pub fn restore(pid: i32, id: u32, dir: &Path) -> Result<(), NsImageError> {
    let e: UtsnsEntry = ImageReader::open(dir, &ImageKind::UTSNS, Some(id.into()))
        .and_then(|mut r| r.read())
        .map_err(image(KIND))?
        .ok_or_else(|| NsImageError::Bad {
            kind: KIND,
            what: format!("utsns-{id}.img is empty"),
        })?;
    let write = |p: &str, v: &str| {
        std::fs::write(p, v).map_err(io(KIND, format!("cannot write {v:?} to {p}")))
    };
    in_namespaces_of(pid, &[NsKind::Uts], || {
        write(HOSTNAME, &e.nodename)?;
        write(DOMAINNAME, &e.domainname)
    })
    .map_err(enter(KIND))?
}
