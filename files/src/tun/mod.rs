//! tun files: `/dev/net/tun` opened by a task, attached to a tun/tap device (one queue of it,
//! maybe detached) or to nothing yet. Kept as CRIU keeps them: a regular-file entry for the
//! path and a `tunfile_entry` of the same id naming the device. The device itself belongs to
//! the network namespace's dump (criu_netdev::links), which reads its settings through the
//! files found here.

pub mod dump;
pub mod restore;
