//! Mount trees: the mount namespace of a tree, dumped as CRIU's `mountpoints-<ns>.img` (one
//! `MntEntry` per mount, in CRIU's order) plus `tmpfs-dev-<dev>.tar.gz.img` for tmpfs contents,
//! and rebuilt at restore inside the restored root's fresh mount namespace.
//!
//! Surface for the orchestrator:
//! - [`check`] before any task is touched: refuses a mount this crate cannot rebuild, naming
//!   mount point, fs type and the `--external` option that would make it external;
//! - [`dump`] writes the images of one mount namespace;
//! - [`restore_tree`] runs in a single-threaded helper (`criu __mount-helper`, see
//!   `src/commands/mount_helper.rs`) that already is in the root task's new mount namespace
//!   (and its net, ipc namespaces; its pid namespace for children): it builds the tree under
//!   a temporary directory, `pivot_root`s into it and detaches criu's old tree.
//!
//! Halves: [`model`] (mountinfo rows as image entries) and [`dump`](mod@dump) side by side with
//! [`restore`](mod@restore); [`tree`] checks a tree and decides how each mount comes back,
//! for both halves.

pub mod auto;
pub mod device;
pub mod dump;
pub mod model;
pub mod pty;
pub mod restore;
mod tmpfs;
pub mod tree;

use std::path::PathBuf;

pub use dump::{check, clone_mount_in_ns, dump, helper_exe};
pub use restore::{restore_in_ns, restore_tree};

/// Options from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// `--external mnt[KEY]:VAL` and `-M KEY:VAL`. Dump: (mount point, key); restore:
    /// (key, path in criu's mount namespace).
    pub external: Vec<(String, String)>,
    /// Restore: `-r/--root`, the directory that becomes the namespace's root mount.
    pub root: Option<PathBuf>,
    /// `--ext-mount-map auto`, `--external mnt[]`: autodetected external mounts (auto.rs).
    pub auto_external: bool,
    /// `--enable-external-sharing` (`mnt[]:s`): a shared mount may be autodetected.
    pub external_sharing: bool,
    /// `--enable-external-masters` (`mnt[]:m`): a slave mount may be autodetected.
    pub external_masters: bool,
    /// `--external dev[A]:B`. Dump: (MAJOR/MINOR of a block device, its key); restore: (key,
    /// device node to mount from).
    pub devices: Vec<(String, String)>,
}

impl MountOptions {
    /// The value given for `key` (dump: a mount point; restore: a key).
    pub fn external_for(&self, key: &str) -> Option<&str> {
        self.external
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot read the mounts of pid {pid}: {source}")]
    Proc {
        pid: i32,
        #[source]
        source: criu_procfs::ProcError,
    },
    #[error(transparent)]
    Image(#[from] criu_proto::Error),
    #[error("mount {mnt_id} ({mountpoint}, {fstype}): cannot be restored; make it external with --external mnt[{mountpoint}]:KEY (a filesystem on a block device: --external dev[MAJOR/MINOR]:KEY)")]
    Unsupported {
        mnt_id: u32,
        mountpoint: String,
        fstype: String,
    },
    #[error("mountpoints image: {0}")]
    BadImage(String),
    #[error("{what}: {errno}")]
    Sys {
        what: String,
        errno: nix::errno::Errno,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl MountError {
    pub(crate) fn sys(what: impl Into<String>, errno: impl Into<nix::errno::Errno>) -> Self {
        MountError::Sys {
            what: what.into(),
            errno: errno.into(),
        }
    }

    pub(crate) fn rsys(what: impl Into<String>, errno: rustix::io::Errno) -> Self {
        MountError::Sys {
            what: what.into(),
            errno: nix::errno::Errno::from_raw(errno.raw_os_error()),
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        MountError::Io {
            what: what.into(),
            source,
        }
    }
}
