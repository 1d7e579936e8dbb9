//! A task's own state besides memory and files: registers and XSAVE, signals (actions, mask,
//! pending), credentials and capabilities, limits, timers, scheduling, rseq, seccomp. Each
//! piece has a dump half and a restore half side by side. [`pidfd_store`] tells a dump of a
//! series which tasks are still the processes the last one saw (RPC `pidfd_store_sk`).
pub mod dump_core;
pub mod dump_regs;
pub mod dump_task;
pub mod dump_thread;
pub mod pidfd_store;
pub mod regs;
pub mod restore_creds;
pub mod restore_signals;
pub mod restore_task;
pub mod seccomp;
