//! Socket-level options (`sk_opts_entry`), the part every socket family shares: read from
//! criu's copy of a dumped socket, set again on the socket criu makes at restore.

pub mod dump;
pub mod restore;

/// A failed getsockopt or setsockopt: the option's name and the error.
pub type OptError = (&'static str, nix::errno::Errno);
