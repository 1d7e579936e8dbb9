//! Shared by the examples that build process trees: fork, and a pipe that tells a parent when
//! all its children are ready.

use std::os::fd::OwnedFd;

/// Forks; returns 0 in the child and the child's pid in the parent. Panics if fork fails
/// (a benchmark that cannot build its tree has nothing to measure).
pub fn fork() -> i32 {
    criu_sys::fork::fork_single_threaded().expect("fork")
}

/// A pipe whose read end reaches end-of-file once every process holding a copy of the write
/// end has dropped it: children drop theirs when ready, the parent drops its own after the
/// last fork, then `wait_all` returns when the last child is ready.
pub struct ReadyPipe {
    read: Option<OwnedFd>,
    write: Option<OwnedFd>,
}

impl ReadyPipe {
    pub fn new() -> ReadyPipe {
        let (read, write) = nix::unistd::pipe().expect("pipe");
        ReadyPipe {
            read: Some(read),
            write: Some(write),
        }
    }

    /// In a child, right after fork: it never reads.
    pub fn child_started(&mut self) {
        self.read = None;
    }

    /// In a child: it is ready.
    pub fn child_ready(&mut self) {
        self.write = None;
    }

    /// In the parent, after the last fork: blocks until every child called `child_ready`
    /// (or died), then closes the pipe.
    pub fn wait_all(&mut self) {
        self.write = None;
        if let Some(read) = self.read.take() {
            let mut buf = [0u8; 16];
            while !matches!(nix::unistd::read(&read, &mut buf), Ok(0) | Err(_)) {}
        }
    }
}
