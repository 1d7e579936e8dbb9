//! Shared helpers for the test workloads. Workloads are test code: they may use `unsafe` to set
//! up exotic process state (registers, signal handlers), each block with a `// SAFETY:` note.
