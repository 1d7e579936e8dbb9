//! What an RPC request can say that no command-line option says (`pidfd_store_sk`,
//! `orphan_pts_master`): set by the RPC for the command it runs, cleared after it.

use std::sync::{Arc, Mutex};

use criu_files::OrphanPtsMaster;
use criu_process::pidfd_store::PidfdStore;

#[derive(Debug, Clone, Default)]
pub struct RequestOnly {
    /// The pidfd store of a series of dumps.
    pub pidfd_store: Option<Arc<PidfdStore>>,
    /// Where a restore hands the master it makes for a pty slave whose master was outside
    /// the tree; set for a dump too, which then records such a slave.
    pub orphan_pts_master: Option<OrphanPtsMaster>,
}

static CURRENT: Mutex<Option<RequestOnly>> = Mutex::new(None);

/// Sets (or, with None, clears) what the next commands of this process are told.
pub fn set(r: Option<RequestOnly>) {
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = r;
}

/// What the running command is told (nothing from the command line).
pub fn current() -> RequestOnly {
    CURRENT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}
