//! Namespaces of a tree (pid, mnt, net, uts, ipc, user, cgroup, time).
//!
//! Today this crate holds the namespace ids of `ids-*.img` and the inventory ([`ids`]), and
//! one rule: [`HostNamespaces::refuse_foreign`]. Namespaces are not dumped or restored yet, so
//! a task that lives in any namespace other than criu's is refused before the dump touches it
//! (a restore would silently put it in the host's). The namespaces issue fills this crate in
//! the files crate's shape: one module per kind, with its dump half (detect, write `ids-*.img`
//! ids and the kind's images) and its restore half (create or join, then fill) side by side,
//! and a small surface the orchestrator drives.

pub mod enter;
pub mod host;
pub mod ids;
pub mod ipc;

pub use host::{HostNamespaces, NsError};
