//! Network. Devices other than `lo` are refused by the ns crate today. The network issues fill
//! this crate in the files crate's shape: per object kind (devices and veth over rtnetlink, addresses,
//! routes, TCP repair, the network lock) a dump half and a restore half side by side, with a
//! small surface the orchestrator drives.
//!
//! [`lock`] is the network lock: netfilter rules that hold the tree's TCP traffic while it is
//! dumped or restored, per connection or for a whole network namespace. [`netns`] is what a
//! namespace holds besides devices: sysctls and firewall.

pub mod links;
pub mod lock;
pub mod netns;
