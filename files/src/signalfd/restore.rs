//! signalfd at restore: a new one for the same signals, its status flags set again.

use std::os::fd::AsFd;

use criu_proto::images::FdTypes;

use crate::eventfd::restore::{failed, set_status_flags};
use crate::registry::{SharedError, SharedFiles};
use criu_proto::dump_images::DumpImages;

pub fn open_all(images: &DumpImages, shared: &mut SharedFiles) -> Result<(), SharedError> {
    for (id, e) in shared.to_make(images, FdTypes::Signalfd, "sgfd", |f| f.sgfd.as_ref())? {
        let err = failed(id, "signalfd");
        let fd = criu_sys::anon_fds::signalfd(e.sigmask).map_err(err("signalfd"))?;
        set_status_flags(fd.as_fd(), e.flags).map_err(err("F_SETFL"))?;
        shared.restore_fown(id, &fd, &e.fown)?;
        shared.add_description(id, fd);
    }
    Ok(())
}
