//! File locks and leases (`-l`): flock, POSIX, OFD, leases.

pub mod dump;
pub mod restore;
