//! SIGINT, SIGTERM and SIGHUP during a dump or restore. criu's signal thread records the
//! signal here while an operation is armed; the supervisors check between phases and then
//! roll back as on any failure (the tree runs on after a dump; nothing is left of a restore).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static ARMED: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// A dump or restore starts: until the guard goes, a signal asks it to stop at its next phase.
#[must_use]
pub fn arm() -> Armed {
    SIGNAL.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    Armed
}

pub struct Armed;

impl Drop for Armed {
    fn drop(&mut self) {
        ARMED.store(false, Ordering::SeqCst);
    }
}

/// Records `sig`; false when nothing is armed (the caller then just exits) or when a signal
/// came before and this second one means "now".
pub fn request(sig: i32) -> bool {
    ARMED.load(Ordering::SeqCst) && SIGNAL.swap(sig, Ordering::SeqCst) == 0
}

/// An error naming the signal, once one came.
pub fn check() -> Result<(), String> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => Ok(()),
        sig => Err(format!("interrupted by signal {sig}")),
    }
}
