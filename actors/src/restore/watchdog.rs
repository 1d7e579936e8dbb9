//! A restore's dead-man switch. A process of its own (criu's binary run as
//! `__restore-watchdog`, in a process group of its own) learns the pid of every task as the
//! restore makes it, and kills them all, with their descendants, if criu goes away (SIGKILL,
//! OOM, a crash) before it says the tree is complete. So a criu killed half-way leaves no
//! half-restored task running.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

/// The hidden command word of the watchdog.
pub const NAME: &str = "__restore-watchdog";

/// What the watchdog reads on stdin: one pid per line, then [`DONE`].
pub const DONE: &str = "done";

pub struct Watchdog {
    child: Child,
    pipe: ChildStdin,
}

impl Watchdog {
    /// Starts the watchdog program `exe`.
    pub fn start(exe: &Path) -> Result<Watchdog, String> {
        let mut child = Command::new(exe)
            .arg(NAME)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("restore: cannot start the watchdog {}: {e}", exe.display()))?;
        let pipe = child
            .stdin
            .take()
            .ok_or("restore: the watchdog has no stdin")?;
        Ok(Watchdog { child, pipe })
    }

    /// Tells the watchdog about a task the restore made (its host pid).
    pub fn watch(&mut self, pid: i32) -> Result<(), String> {
        writeln!(self.pipe, "{pid}").map_err(|e| format!("restore: watchdog: {e}"))
    }

    /// The tree is complete: the watchdog exits without killing anything.
    pub fn disarm(mut self) {
        if let Err(e) = writeln!(self.pipe, "{DONE}") {
            tracing::warn!("restore: watchdog: {e}");
        }
        drop(self.pipe);
        let _ = self.child.wait();
    }
}
