//! Namespace files a task holds open (`/proc/PID/ns/net` and the like). Only criu's own
//! namespaces can be held for now: a task in other ones is refused by `criu_ns`.

pub mod dump;
pub mod restore;
