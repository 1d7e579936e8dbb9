//! Files whose names no longer lead to them: ghost files carried in the images, `--link-remap`, removed cwd/root.

mod dead_pids;
pub mod dump;
pub mod restore;
