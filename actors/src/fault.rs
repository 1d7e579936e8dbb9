//! Fault injection, like CRIU's `CRIU_FAULT`: `CRIU_FAULT=N` makes a dump or restore fail on
//! purpose at point N, `CRIU_FAULT=N+1000` makes criu kill itself there (SIGKILL). The points
//! are the phase boundaries, where a signal to criu also stops it. Tests walk every point and
//! check that a dump that fails leaves the tree running unharmed and a restore that fails
//! leaves nothing behind.

/// A numbered point of a dump or restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// Every task is seized, nothing read yet.
    DumpSeized = 1,
    /// Every task's state is read and written.
    DumpCollected = 2,
    /// Shared memory objects are written.
    DumpShared = 3,
    /// Every image is written, the manifest too; before post-dump and the tasks' release.
    DumpWritten = 4,
    /// The root exists (and its namespaces), nothing else.
    RestoreRoot = 11,
    /// The first task after the root is made.
    RestoreFork = 12,
    /// Every task exists, none rebuilt yet.
    RestoreTasks = 13,
    /// Every task is rebuilt; before post-restore and the release.
    RestoreRebuilt = 14,
}

/// Every point of a dump, in order.
pub const DUMP: [Point; 4] = [
    Point::DumpSeized,
    Point::DumpCollected,
    Point::DumpShared,
    Point::DumpWritten,
];

/// Every point of a restore, in order.
pub const RESTORE: [Point; 4] = [
    Point::RestoreRoot,
    Point::RestoreFork,
    Point::RestoreTasks,
    Point::RestoreRebuilt,
];

/// Added to a point's number: criu kills itself there instead of failing.
pub const KILL: u32 = 1000;

fn configured() -> Option<u32> {
    std::env::var("CRIU_FAULT").ok()?.trim().parse().ok()
}

/// A phase boundary: the fault injected here, if any, then a signal that came meanwhile.
pub fn boundary(p: Point) -> Result<(), String> {
    match configured() {
        Some(n) if n == p as u32 => return Err(format!("fault {n} injected ({p:?})")),
        Some(n) if n == p as u32 + KILL => {
            tracing::error!("fault {n} injected ({p:?}): killing criu");
            let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGKILL);
        }
        _ => {}
    }
    crate::interrupt::check()
}
