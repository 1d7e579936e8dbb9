//! Cgroups. Today: [`freezer`], which freezes a tree through its v1 freezer or v2
//! `cgroup.freeze` for the seize (`--freeze-cgroup`). Cgroup sets are not dumped or restored
//! yet. The cgroups issue fills this crate in the files crate's shape: the dump half (every
//! task's sets on every hierarchy, properties, `cgroup.img`) and the restore half (the
//! `--manage-cgroups` strategies: create or reuse, copy raw properties, move tasks) side by
//! side, with a small surface the orchestrator drives.
pub mod freezer;
