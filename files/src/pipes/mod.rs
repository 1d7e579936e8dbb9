//! Pipes: one description per end, with the bytes in them.

pub mod dump;
pub mod restore;
