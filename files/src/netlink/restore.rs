//! Netlink sockets at restore, made in criu (in the tree's network namespace) before the
//! tasks take them: bound to the dumped port id and groups (to a new port id if the old one is
//! taken, as CRIU does: most programs never look at theirs), connected to the dumped peer.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use criu_proto::dump_images::DumpImages;
use criu_proto::images::{FdTypes, NetlinkSkEntry};
use nix::sys::socket::{bind, connect, NetlinkAddr};

use crate::registry::{SharedError, SharedFiles};

#[derive(Debug, thiserror::Error)]
#[error("netlink socket {ino:#x} (file {id}, {protocol}): {what}")]
pub struct NetlinkRestoreError {
    pub id: u32,
    pub ino: u32,
    pub protocol: String,
    pub what: String,
}

/// Makes every netlink socket a task's fd names and hands each to `shared`.
pub fn open_all(images: &DumpImages, shared: &mut SharedFiles) -> Result<(), SharedError> {
    let entries = shared.to_make(images, FdTypes::Netlinksk, "nlsk", |f| f.nlsk.as_ref())?;
    for (id, e) in entries {
        let fail = |what: String| NetlinkRestoreError {
            id,
            ino: e.ino,
            protocol: super::protocol_name(e.protocol),
            what,
        };
        let sock = shared
            .netns
            .run(e.ns_id, || make(e))
            .and_then(|r| r)
            .map_err(fail)?;
        crate::sk_opts::restore::apply(sock.as_fd(), &e.opts)
            .map_err(|(w, err)| fail(format!("{w}: {err}")))?;
        crate::packet::restore::set_status_flags(&sock, e.flags).map_err(fail)?;
        shared.restore_fown(id, &sock, &e.fown)?;
        shared.add_description(id, sock);
    }
    Ok(())
}

fn make(e: &NetlinkSkEntry) -> Result<OwnedFd, String> {
    let sock = criu_sys::sockopt::socket(libc::AF_NETLINK, libc::SOCK_RAW, e.protocol as i32)
        .map_err(|err| format!("socket: {err}"))?;
    if e.portid != 0 {
        let groups = match e.groups.as_slice() {
            [] => 0,
            [g] => *g,
            _ => return Err("multicast groups above 32 are not supported".into()),
        };
        if let Err(err) = bind(sock.as_raw_fd(), &NetlinkAddr::new(e.portid, groups)) {
            // The port id was the kernel's pick, now someone else's: take a new one.
            bind(sock.as_raw_fd(), &NetlinkAddr::new(0, groups))
                .map_err(|err| format!("bind to groups {groups:#x}: {err}"))?;
            tracing::warn!(
                "netlink socket {:#x}: port id {} is taken ({err}): bound to a new one",
                e.ino,
                e.portid
            );
        }
    }
    if e.state == super::CONNECTED {
        let group = match e.dst_group {
            0 => 0,
            g @ 1..=32 => 1u32 << (g - 1),
            g => return Err(format!("peer group {g} is above 32")),
        };
        connect(sock.as_raw_fd(), &NetlinkAddr::new(e.dst_portid, group)).map_err(|err| {
            format!(
                "connect to port id {} group {}: {err}",
                e.dst_portid, e.dst_group
            )
        })?;
    }
    Ok(sock)
}
