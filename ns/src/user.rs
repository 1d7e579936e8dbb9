//! user namespace: uid and gid maps (`userns-N.img`). At restore the root is made in a new
//! one with the others (so that they are owned by it), and criu, in the parent namespace,
//! writes the maps before the root does anything else. Credentials in the images are the
//! ids tasks see inside (see criu_process::dump_thread).

use std::path::Path;

use criu_procfs::IdMap;
use criu_proto::images::{UidGidExtent, UsernsEntry};
use criu_proto::{ImageKind, ImageReader, ImageWriter};

use crate::error::{image, io, NsImageError};

const KIND: &str = "user";

fn extents(m: &IdMap) -> Vec<UidGidExtent> {
    m.0.iter()
        .map(|e| UidGidExtent {
            first: e.first,
            lower_first: e.lower_first,
            count: e.count,
        })
        .collect()
}

pub fn dump(pid: i32, id: u32, dir: &Path) -> Result<(), NsImageError> {
    let read = |gid| {
        criu_procfs::read_id_map(pid, gid).map_err(|e| NsImageError::Bad {
            kind: KIND,
            what: format!("cannot read the id maps of pid {pid}: {e}"),
        })
    };
    let e = UsernsEntry {
        uid_map: extents(&read(false)?),
        gid_map: extents(&read(true)?),
    };
    let mut w =
        ImageWriter::create(dir, &ImageKind::USERNS, Some(id.into())).map_err(image(KIND))?;
    w.write(&e).map_err(image(KIND))?;
    w.finish().map_err(image(KIND))?;
    Ok(())
}

/// "FIRST LOWER COUNT" lines, as uid_map and gid_map take them (in one write).
fn map_text(m: &[UidGidExtent]) -> String {
    m.iter()
        .map(|e| format!("{} {} {}\n", e.first, e.lower_first, e.count))
        .collect()
}

/// Writes the dumped maps for the new user namespace of `pid` (as criu sees it).
pub fn restore(pid: i32, id: u32, dir: &Path) -> Result<(), NsImageError> {
    let e: UsernsEntry = ImageReader::open(dir, &ImageKind::USERNS, Some(id.into()))
        .and_then(|mut r| r.read())
        .map_err(image(KIND))?
        .ok_or_else(|| NsImageError::Bad {
            kind: KIND,
            what: format!("userns-{id}.img is empty"),
        })?;
    for (name, m) in [("uid_map", &e.uid_map), ("gid_map", &e.gid_map)] {
        if m.is_empty() || m.len() > 340 {
            return Err(NsImageError::Bad {
                kind: KIND,
                what: format!("userns-{id}.img: {} {name} lines", m.len()),
            });
        }
        let path = format!("/proc/{pid}/{name}");
        std::fs::write(&path, map_text(m)).map_err(io(KIND, format!("cannot write {path}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_are_written_one_extent_a_line() {
        let m = [
            UidGidExtent {
                first: 0,
                lower_first: 100000,
                count: 65536,
            },
            UidGidExtent {
                first: 70000,
                lower_first: 1000,
                count: 1,
            },
        ];
        assert_eq!(map_text(&m), "0 100000 65536\n70000 1000 1\n");
    }
}
