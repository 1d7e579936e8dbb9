//! The orchestrator: a supervisor that owns the phases of one dump or restore and per-task
//! actors, each pinned to one OS thread because ptrace is bound to the thread that seized.
