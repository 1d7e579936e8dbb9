//! Mount trees. Empty today: mounts are not dumped or restored, and a task in a mount
//! namespace of its own is refused by `criu_ns::HostNamespaces`. The mount-tree issue fills
//! this crate in the files crate's shape: the dump half (every mount of every mount namespace,
//! `mountpoints-*.img`, tmpfs contents) and the restore half (mounts in an order that respects
//! parents and propagation) side by side, with a small surface the orchestrator drives.
