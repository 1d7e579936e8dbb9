//! signalfd: its signal mask.

pub mod dump;
pub mod restore;
