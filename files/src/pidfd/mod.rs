//! pidfds: of a task of the tree (opened again on its restored pid once the task exists), or
//! of a process that is gone (a pidfd of a short-lived helper that is then reaped; pidfds of
//! one dead process share one helper), as CRIU does.

pub mod dump;
pub mod restore;
