//! timerfd: clock, interval, remaining time and ticks.

pub mod dump;
pub mod restore;
