//! fanotify groups with their exact init flags and marks.

pub mod dump;
pub mod restore;
