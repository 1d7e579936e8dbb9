//! inotify instances and their watches, each watch at its old descriptor.

pub mod dump;
pub mod restore;
