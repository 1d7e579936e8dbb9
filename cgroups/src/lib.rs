//! Cgroups: where every task lives, on every hierarchy (v1 controllers, named v1
//! hierarchies, cgroup2, and the hybrid of both), as CRIU's `cgroup.img`; the
//! `--manage-cgroups` strategies that put tasks back; and the [`freezer`] that stops a whole
//! tree for the seize (`--freeze-cgroup`).
//!
//! Cgroup files are read and written directly (cgroups-rs cannot copy raw properties).
//!
//! The orchestrator's surface:
//! - dump: a [`dump::CgroupDump`] made before the seize (criu's own cgroups are set 1, the
//!   inventory's `root_cg_set`); the supervisor asks it for each thread's set in pstree
//!   order (the ids go into the thread cores' `cg_set`), then writes `cgroup.img` with one
//!   call;
//! - restore: [`restore::CgroupRestore::prepare`] reads the image and makes directories before
//!   any task exists; `move_process` as each task is created (before it makes children),
//!   `move_thread` once its threads exist, `set_properties` once every task is in,
//!   `restore_freezer_state` last; `abort` removes what it created when the restore fails.
pub mod dump;
pub mod freezer;
pub mod hierarchy;
pub mod parse;
pub mod props;
pub mod restore;

/// `--manage-cgroups`: see [`restore`] for what each mode does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Leave cgroups alone: no directories, no properties, tasks stay in criu's cgroups.
    Ignore,
    /// Use existing directories as they are.
    None,
    /// Use existing directories, restore their properties.
    Props,
    /// Create what is missing (with properties), use what exists (CRIU's default).
    #[default]
    Soft,
    /// Create what is missing, restore properties of what exists too.
    Full,
    /// Create everything; an existing directory is an error.
    Strict,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Ignore => "ignore",
            Mode::None => "none",
            Mode::Props => "props",
            Mode::Soft => "soft",
            Mode::Full => "full",
            Mode::Strict => "strict",
        }
    }
}
