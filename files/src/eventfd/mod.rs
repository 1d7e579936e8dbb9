//! eventfd: counter and semaphore mode; `dump` also holds the anon-inode helpers signalfd and timerfd share.

pub mod dump;
pub mod restore;
