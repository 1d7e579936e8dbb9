//! File owners (F_SETOWN_EX, F_SETSIG, owner uids) of every kind of file.

pub mod dump;
pub mod restore;
