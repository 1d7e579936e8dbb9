//! Cgroups: the tree's cgroup sets on v1 and v2 hierarchies, the `--manage-cgroups` strategies
//! and the raw property copy that cgroups-rs cannot do.
pub mod freezer;
