//! The tracee engine: the one safe API over ptrace. A tracee handle is bound to the OS thread
//! that seized it, because the kernel answers ptrace requests only from that thread.
