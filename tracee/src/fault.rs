//! A test knob of the fault injection (see `criu_actors::fault`): `CRIU_FAULT_KILL_AT_CALL=K`
//! makes criu kill itself (SIGKILL) at the K-th injected syscall of its run, counted over
//! every task and thread: for odd K while the task runs the call, for even K at the stop after
//! it. A test walks K over a whole dump to prove that no moment of an injection harms a task.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::OnceLock;

static CALLS: AtomicU64 = AtomicU64::new(0);

/// Where an injected call is when the knob may fire.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Running,
    Stopped,
}

fn kill_at() -> Option<u64> {
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    *AT.get_or_init(|| std::env::var("CRIU_FAULT_KILL_AT_CALL").ok()?.parse().ok())
}

/// Counts a call as it starts (`Running`); kills criu if this call and stage are the chosen.
pub(crate) fn injected_call(stage: Stage) {
    let Some(at) = kill_at() else { return };
    let n = match stage {
        Stage::Running => CALLS.fetch_add(1, SeqCst) + 1,
        Stage::Stopped => CALLS.load(SeqCst),
    };
    let wanted = if at % 2 == 1 {
        Stage::Running
    } else {
        Stage::Stopped
    };
    if n == at && stage == wanted {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGKILL);
    }
}
