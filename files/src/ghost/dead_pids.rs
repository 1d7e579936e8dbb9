//! Processes made to hold the pid of a dead one while criu opens its /proc files again
//! (`/proc/PID` of a process that was gone at dump). They are made once the tree's root exists,
//! in the root's pid namespace (where the dumped pid means something), by one thread of criu
//! that joined it: a helper dies with the thread that made it (PR_SET_PDEATHSIG), so that
//! thread waits until the helpers are ended.

use std::sync::mpsc;

/// The helpers and the thread that made them.
#[derive(Debug, Default)]
pub struct DeadPids {
    /// Helpers as criu sees them.
    made: Vec<i32>,
    /// Dropped to let the keeping thread end.
    keep: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl DeadPids {
    /// Makes a process with each of `pids` in the pid namespace of `root` (as criu sees it).
    pub fn make(pids: &[i32], root: i32) -> Result<DeadPids, (i32, nix::errno::Errno)> {
        if pids.is_empty() {
            return Ok(DeadPids::default());
        }
        let pids = pids.to_vec();
        let (made_tx, made_rx) = mpsc::channel();
        let (keep_tx, keep_rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let made = join_pid_ns(root).map_err(|e| (root, e)).and_then(|()| {
                let mut made = Vec::new();
                for &pid in &pids {
                    match criu_sys::clone::clone_stopped_child(pid, 0) {
                        Ok(host) => made.push(host),
                        Err(e) => {
                            end(&made);
                            return Err((pid, e));
                        }
                    }
                }
                Ok(made)
            });
            let ok = made.is_ok();
            let _ = made_tx.send(made);
            if ok {
                // Until the helpers are ended (or criu goes).
                let _ = keep_rx.recv();
            }
        });
        let made = made_rx
            .recv()
            .unwrap_or(Err((root, nix::errno::Errno::ECHILD)))?;
        Ok(DeadPids {
            made,
            keep: Some((keep_tx, thread)),
        })
    }

    /// Kills and reaps every helper; the keeping thread ends.
    pub fn end(&mut self) {
        end(&self.made);
        self.made.clear();
        if let Some((tx, thread)) = self.keep.take() {
            drop(tx);
            let _ = thread.join();
        }
    }
}

impl Drop for DeadPids {
    fn drop(&mut self) {
        self.end();
    }
}

fn end(helpers: &[i32]) {
    for &pid in helpers {
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
}

/// The calling thread's children are born in the pid namespace of `pid` (nothing changes if it
/// is criu's own).
fn join_pid_ns(pid: i32) -> Result<(), nix::errno::Errno> {
    let link = |p: &str| std::fs::read_link(p).ok();
    let theirs = format!("/proc/{pid}/ns/pid");
    if link(&theirs) == link("/proc/thread-self/ns/pid_for_children") {
        return Ok(());
    }
    let fd = std::fs::File::open(&theirs)
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT)))?;
    nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWPID)
}
