//! FIFOs (named pipes): opened by path, with the bytes queued in them.

pub mod dump;
pub mod restore;
