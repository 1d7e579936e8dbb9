//! Regular files (and memory char devices such as /dev/null) at restore: each description a
//! task's fds name is opened once, in criu, at its offset; every holder takes a copy, so fds
//! shared by dup or fork share one offset again.

use std::os::fd::OwnedFd;

use criu_proto::images::{FdTypes, RegFileEntry};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::images::DumpImages;
use super::shared::{SharedError, SharedFiles};

/// Flags that only mean something when a file is first created; never replayed.
const CREATION_FLAGS: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY;

pub fn open_all(images: &DumpImages, shared: &mut SharedFiles) -> Result<(), SharedError> {
    for id in images.fd_ids_of_type(FdTypes::Reg) {
        let reg = images
            .files
            .get(&id)
            .and_then(|f| f.reg.as_ref())
            .ok_or(SharedError::Missing { id, kind: "reg" })?;
        shared.add_description(id, open(reg)?);
    }
    Ok(())
}

/// Opens `reg` again with its flags and puts the offset back.
pub fn open(reg: &RegFileEntry) -> Result<OwnedFd, SharedError> {
    let err = |what: &'static str| {
        let path = reg.name.clone();
        move |errno: nix::errno::Errno| SharedError::File {
            id: reg.id,
            path,
            what,
            errno,
        }
    };
    let flags = OFlag::from_bits_retain((reg.flags as i32 & !CREATION_FLAGS) | libc::O_CLOEXEC);
    let fd = nix::fcntl::open(reg.name.as_str(), flags, Mode::empty()).map_err(err("open"))?;
    if reg.pos != 0 && reg.flags & libc::O_PATH as u32 == 0 {
        nix::unistd::lseek(&fd, reg.pos as i64, nix::unistd::Whence::SeekSet)
            .map_err(err("lseek"))?;
    }
    Ok(fd)
}
