//! `criu`: checkpoint/restore in userspace, a CRIU-compatible rewrite in Rust.

pub mod app;
pub mod cli;
pub mod commands;
pub mod cpu;
pub mod dispatch;
pub mod log;
pub mod pidfile;

pub use app::run;
