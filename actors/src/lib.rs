//! The orchestrator: a supervisor that owns the phases of one dump or restore and per-task
//! actors, each pinned to one tracer thread because ptrace is bound to the thread that seized.
//!
//! * [`pool`]: the tracer threads (actix arbiters) that host task actors.
//! * [`dump`]: the dump supervisor and its task actor.
//! * [`restore`]: the restore supervisor and its task actor.
//! * [`network`]: the network lock around TCP connections, both halves.
//! * [`interrupt`]: a signal to criu stops a dump or restore at its next phase.
//! * [`fault`]: `CRIU_FAULT`, failures injected at those phase boundaries.

pub mod dump;
pub mod fault;
pub mod interrupt;
pub mod network;
pub mod pool;
pub mod restore;
