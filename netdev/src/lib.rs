//! Network. Mostly empty today: inet sockets are refused by the files crate, and a task in a
//! network namespace of its own by `criu_ns::HostNamespaces`. The network issues fill this crate
//! in the files crate's shape: per object kind (devices and veth over rtnetlink, addresses,
//! routes, TCP repair, the network lock) a dump half and a restore half side by side, with a
//! small surface the orchestrator drives.
//!
//! [`lock`] is the network lock: netfilter rules that hold the tree's TCP traffic while it is
//! dumped or restored, per connection or for a whole network namespace.

pub mod lock;
