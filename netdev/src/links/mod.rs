//! Network devices of a namespace, over rtnetlink (`rtnetlink` and `netlink-packet-route`):
//! each link as CRIU's `net_device_entry` in `netdev-N.img`, the dump half in [`dump`] and
//! the restore half in [`restore`], with [`outside`] the options that name what the restore
//! makes outside the namespace (`--veth-pair`, `--external veth[..]`, `--external
//! macvlan[..]`). Every function works in the calling thread's network namespace; the
//! restore is also given a connection made in criu's own ([`Rtnl`] made before the caller
//! joins the tree's).

pub mod dump;
pub mod outside;
pub mod restore;
mod rtnl;

pub use rtnl::Rtnl;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        source: rtnetlink::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("device {name} of kind {kind}: {why}")]
    Unsupported {
        name: String,
        kind: String,
        why: String,
    },
    #[error("{0}")]
    Bad(String),
}
