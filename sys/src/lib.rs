//! The small raw-syscall layer. Every `unsafe` block outside the tracee engine lives here, each
//! behind a safe function with a `// SAFETY:` note.

pub mod anon_fds;
pub mod clone;
pub mod cpuid;
pub mod fd;
pub mod fork;
pub mod fown;
pub mod kcmp;
pub mod mapping;
pub mod mount;
pub mod mqueue;
pub mod notify;
pub mod pagemap_scan;
pub mod pidfd;
pub mod probe;
mod ret;
pub mod scm;
pub mod shmem;
pub mod signals;
pub mod sockopt;
pub mod sysv_ipc;
pub mod tty;
pub mod tun;
pub mod uffd;
