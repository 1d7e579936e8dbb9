//! The tracee engine: the one safe API over ptrace (a compel analogue).
//!
//! * [`Tracee`]: one seized thread; `!Send`, because the kernel answers ptrace requests only
//!   from the thread that seized the task. Registers ([`Regs`]), XSAVE ([`Xsave`]), sigmask,
//!   queued signals, rseq, seccomp, syscall-restart state.
//! * [`SeizedTree`] / [`SeizedProcess`]: a whole tree or one process stopped, every thread,
//!   repeated until nothing new appears; optionally frozen through a cgroup first.
//! * [`Injector`]: remote syscalls with a scratch area; the task is left as it was.
//! * [`TracerThread`]: an OS thread that owns tracees and takes jobs from anywhere.
//! * [`guard`]: robust release on errors, fatal signals and panics.
//! * [`exec`]: `criu exec`.

pub mod error;
pub mod exec;
pub mod fault;
pub mod fd_channel;
pub mod guard;
pub mod inject;
mod landing;
pub mod raw;
pub mod regs;
pub mod remote;
mod sigframe;
pub mod signals;
pub mod syscall_table;
mod thaw_keeper;
pub mod thread;
pub mod tracee;
pub mod tree;

pub use error::{Result, TraceeError};
pub use fd_channel::{FdBatch, FdChannel};
pub use inject::Injector;
pub use raw::RseqConfiguration;
pub use regs::{Regs, SyscallRestart, Xsave};
pub use remote::Remote;
pub use signals::{SeccompFilter, SigInfo};
pub use thaw_keeper::ThawKeeper;
pub use thread::TracerThread;
pub use tracee::{Stop, Tracee, WaitOutcome};
pub use tree::{SeizeOptions, SeizedProcess, SeizedTree};
