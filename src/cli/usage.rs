//! Usage and help text.

/// The version criu(8) users and tools expect to parse, and ours.
pub const CRIU_COMPAT_VERSION: &str = "4.2";

pub fn version() -> String {
    format!(
        "Version: {CRIU_COMPAT_VERSION}\nGitID: criu-rs-{}\n",
        env!("CARGO_PKG_VERSION")
    )
}

pub const SHORT: &str = "
Usage:
  criu dump|pre-dump -t PID [<options>]
  criu restore [<options>]
  criu check [--feature FEAT]
  criu page-server
  criu service [<options>]
  criu dedup
  criu lazy-pages -D DIR [<options>]
  criu exec -t PID SYSCALL [ARGS...]

Commands:
  dump           checkpoint a process/tree identified by pid
  pre-dump       pre-dump task(s) minimizing their frozen time
  restore        restore a process/tree
  check          checks whether the kernel support is up-to-date
  page-server    launch page server
  service        launch service
  dedup          remove duplicates in memory dump
  exec           run a system call inside a stopped task
  cpuinfo dump   writes cpu information into image file
  cpuinfo check  validates cpu information read from image file
";

pub const MORE: &str = "
Try -h|--help for more info
";
