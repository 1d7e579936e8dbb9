//! SIGINT, SIGTERM and SIGHUP: blocked in every thread and taken by one thread of their own.
//! During a dump or restore (armed in `criu_actors::interrupt`) the first one stops the
//! operation at its next phase, which rolls back as on any failure; otherwise, or at the
//! second one, criu exits at once. Programs criu starts get an empty signal mask (std's
//! `Command` resets it).

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// Call first in `main`, before any other thread exists (they inherit the mask).
pub fn install() {
    let mut set = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(sig);
    }
    if let Err(e) = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None) {
        eprintln!("Warn: cannot block SIGINT/SIGTERM/SIGHUP: {e}");
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let Ok(sig) = set.wait() else { continue };
            if criu_actors::interrupt::request(sig as i32) {
                tracing::error!("{sig}: stopping at the next phase and rolling back");
            } else {
                tracing::error!("{sig}: exiting");
                std::process::exit(128 + sig as i32);
            }
        });
    if let Err(e) = spawned {
        eprintln!("Warn: no signal thread: {e}");
    }
}
