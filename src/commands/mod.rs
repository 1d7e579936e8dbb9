//! One module per criu command.
pub mod check;
pub mod cpuinfo;
pub mod exec;
pub mod restore;
pub mod dump;
