//! One module per criu command.
pub mod check;
pub mod cpuinfo;
pub mod dedup;
pub mod dump;
pub mod exec;
pub mod mount_helper;
pub mod mount_opts;
pub mod network_keeper;
pub mod page_server;
pub mod privileges;
pub mod request_only;
pub mod restore;
pub mod restore_watchdog;
pub mod support;
