//! `criu`: checkpoint/restore in userspace, a CRIU-compatible rewrite in Rust.

pub mod app;
pub mod cli;
pub mod commands;
pub mod cpu;
pub mod dispatch;
pub mod docs;
pub mod interrupt;
pub mod log;
pub mod pidfile;
pub mod progress;
pub mod rpc;
pub mod scripts;

pub use app::run;
