//! A test knob of the fault injection (see `criu_actors::fault`): `CRIU_FAULT_KILL_AT_CALL=K`
//! makes criu kill itself (SIGKILL) at the K-th injected syscall of its run, counted over
//! every task and thread: for odd K while the task runs the call, for even K at the stop after
//! it. A test walks K over a whole dump to prove that no moment of an injection harms a task.
//! `CRIU_FAULT_KILL_FROZEN=1` makes criu kill itself as soon as it has frozen a cgroup.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::OnceLock;

static CALLS: AtomicU64 = AtomicU64::new(0);

fn kill_at() -> Option<u64> {
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    *AT.get_or_init(|| std::env::var("CRIU_FAULT_KILL_AT_CALL").ok()?.parse().ok())
}

/// Reads the knobs (once; later reads cost nothing and allocate nothing).
pub(crate) fn init() {
    kill_at();
}

fn kill_self() {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGKILL);
}

/// An injected call has started (the task runs it): numbers it, and kills criu if it is the
/// chosen one and odd. Returns the number for `call_stopped`.
pub(crate) fn call_running() -> u64 {
    let Some(at) = kill_at() else { return 0 };
    let n = CALLS.fetch_add(1, SeqCst) + 1;
    if n == at && at % 2 == 1 {
        kill_self();
    }
    n
}

/// Injected call `n` has stopped: kills criu if it is the chosen one and even.
pub(crate) fn call_stopped(n: u64) {
    if kill_at() == Some(n) && n.is_multiple_of(2) {
        kill_self();
    }
}

/// The cgroup of the tree is frozen: kills criu if asked to die here.
pub fn frozen() {
    if std::env::var_os("CRIU_FAULT_KILL_FROZEN").is_some_and(|v| v == "1") {
        kill_self();
    }
}
