//! Seizing a whole process tree: the root, every thread, every child, repeated until a pass
//! finds nothing new, so threads and children created while seizing are caught too. A thread
//! that is stopped cannot create anything, and a pass ends by listing threads and children of
//! stopped threads only, so the last pass sees the final tree.
//!
//! With a freezer cgroup the tree is frozen first, every task is seized and interrupted while
//! frozen, then thawed: each stops on its pending interrupt before running user code again.

use crate::error::{io_err, Result, TraceeError};
use crate::fault;
use crate::guard::FrozenCgroup;
use crate::thaw_keeper::ThawKeeper;
use crate::tracee::{Tracee, WaitOutcome};
use criu_cgroups::freezer::Freezer;
use nix::errno::Errno;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct SeizeOptions {
    /// Freeze this cgroup (v1 freezer or v2 `cgroup.freeze`) before seizing.
    pub freeze_cgroup: Option<PathBuf>,
    /// Bound on freezing and on waiting for each thread to stop.
    pub timeout: Duration,
}

impl Default for SeizeOptions {
    fn default() -> SeizeOptions {
        SeizeOptions {
            freeze_cgroup: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// One process with all its threads stopped.
pub struct SeizedProcess {
    pub pid: i32,
    /// Threads by tid; the leader (tid == pid) is among them unless it is a zombie.
    pub threads: BTreeMap<i32, Tracee>,
}

impl SeizedProcess {
    pub fn thread(&self, tid: i32) -> Option<&Tracee> {
        self.threads.get(&tid)
    }

    pub fn thread_mut(&mut self, tid: i32) -> Option<&mut Tracee> {
        self.threads.get_mut(&tid)
    }

    /// Detaches every thread; they run on as before.
    pub fn release(self) -> Result<()> {
        let mut first = None;
        for (_, t) in self.threads {
            if let Err(e) = t.detach() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// A stopped process tree. Dropping it detaches everything (as `release` does).
pub struct SeizedTree {
    pub root: i32,
    /// Processes by pid.
    pub processes: BTreeMap<i32, SeizedProcess>,
    /// Parent of each process in the tree (the root's parent is outside it).
    pub parents: BTreeMap<i32, i32>,
    /// Processes that were already dead (zombies) when found: not seized.
    pub zombies: BTreeSet<i32>,
}

impl SeizedTree {
    /// Seizes the tree rooted at process `root` and leaves every thread stopped.
    pub fn seize(root: i32, opts: &SeizeOptions) -> Result<SeizedTree> {
        let mut tree = SeizedTree {
            root,
            processes: BTreeMap::new(),
            parents: BTreeMap::new(),
            zombies: BTreeSet::new(),
        };
        let tgid = read_tgid(root)?;
        if tgid != root {
            return Err(TraceeError::Unexpected {
                tid: root,
                what: format!("is a thread of process {tgid}, not a process"),
            });
        }
        let mut seizer = Seizer {
            skip: BTreeSet::new(),
            unwaited: Vec::new(),
        };
        if let Some(dir) = &opts.freeze_cgroup {
            let freezer = Freezer::open(dir)?;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(freezer.control_file())
                .map_err(io_err(
                    root,
                    format!("cannot open {}", freezer.control_file().display()),
                ))?;
            // Dropped last, once the cgroup is thawed again.
            let _keeper = ThawKeeper::start(&freezer).map_err(io_err(root, "--freeze-cgroup"))?;
            freezer.freeze(opts.timeout)?;
            fault::frozen();
            let thaw_guard = FrozenCgroup::register(file, freezer.thaw_value());
            let seized = seizer.seize_frozen(&mut tree);
            let thawed = freezer.thaw();
            drop(thaw_guard);
            seized?;
            thawed?;
        }
        seizer.fixpoint(&mut tree, opts.timeout)?;
        Ok(tree)
    }

    /// Number of seized threads.
    pub fn thread_count(&self) -> usize {
        self.processes.values().map(|p| p.threads.len()).sum()
    }

    pub fn process(&self, pid: i32) -> Option<&SeizedProcess> {
        self.processes.get(&pid)
    }

    pub fn process_mut(&mut self, pid: i32) -> Option<&mut SeizedProcess> {
        self.processes.get_mut(&pid)
    }

    /// Detaches every thread; the tree runs on as before.
    pub fn release(mut self) -> Result<()> {
        let mut first = None;
        for (_, p) in std::mem::take(&mut self.processes) {
            if let Err(e) = p.release() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

struct Seizer {
    /// Tids that are gone or zombies: never retried.
    skip: BTreeSet<i32>,
    /// (pid, tid) seized and interrupted, stop not collected yet.
    unwaited: Vec<(i32, i32)>,
}

impl Seizer {
    /// Seizes and interrupts `tid` of `pid`; false if it is gone or a zombie.
    fn seize_one(&mut self, proc_: &mut SeizedProcess, tid: i32) -> Result<bool> {
        match Tracee::seize(proc_.pid, tid) {
            Ok(mut t) => {
                match t.interrupt() {
                    Ok(()) => {}
                    Err(TraceeError::Ptrace {
                        errno: Errno::ESRCH,
                        ..
                    }) => {
                        t.forget();
                        self.skip.insert(tid);
                        return Ok(false);
                    }
                    Err(e) => return Err(e),
                }
                proc_.threads.insert(tid, t);
                self.unwaited.push((proc_.pid, tid));
                Ok(true)
            }
            // ESRCH: gone; EPERM: exiting or a zombie (a live task we may not trace would also
            // give EPERM: tell them apart by its state).
            Err(TraceeError::Ptrace {
                errno: Errno::ESRCH,
                ..
            }) => {
                self.skip.insert(tid);
                Ok(false)
            }
            Err(TraceeError::Ptrace {
                errno: Errno::EPERM,
                ..
            }) if is_dead(proc_.pid, tid) => {
                self.skip.insert(tid);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Seizes every thread of `pid` not seized yet; returns how many were new.
    fn seize_threads(&mut self, tree: &mut SeizedTree, pid: i32) -> Result<usize> {
        let tids = list_threads(pid)?;
        let proc_ = tree.processes.entry(pid).or_insert_with(|| SeizedProcess {
            pid,
            threads: BTreeMap::new(),
        });
        let mut new = 0;
        for tid in tids {
            if proc_.threads.contains_key(&tid) || self.skip.contains(&tid) {
                continue;
            }
            if self.seize_one(proc_, tid)? {
                new += 1;
            }
        }
        Ok(new)
    }

    /// Collects the stops of every interrupted thread.
    fn wait_all(&mut self, tree: &mut SeizedTree, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut pending = std::mem::take(&mut self.unwaited);
        let mut pause = Duration::from_micros(10);
        while !pending.is_empty() {
            let mut progressed = false;
            let mut still = Vec::with_capacity(pending.len());
            for (pid, tid) in pending {
                let Some(t) = tree
                    .processes
                    .get_mut(&pid)
                    .and_then(|p| p.threads.get_mut(&tid))
                else {
                    continue;
                };
                match t.poll_stop()? {
                    WaitOutcome::Stopped => progressed = true,
                    WaitOutcome::NotYet => still.push((pid, tid)),
                    WaitOutcome::Gone => {
                        progressed = true;
                        if let Some(p) = tree.processes.get_mut(&pid) {
                            p.threads.remove(&tid);
                        }
                        self.skip.insert(tid);
                    }
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                let tid = pending[0].1;
                return Err(TraceeError::Timeout {
                    tid,
                    secs: timeout.as_secs_f64(),
                });
            }
            if progressed {
                pause = Duration::from_micros(10);
            } else {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(2));
            }
        }
        Ok(())
    }

    /// Children of every thread of `pid` that are not in the tree yet.
    fn new_children(&self, tree: &SeizedTree, pid: i32) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        let Some(p) = tree.processes.get(&pid) else {
            return Ok(out);
        };
        for &tid in p.threads.keys() {
            for child in list_children(pid, tid)? {
                if !tree.processes.contains_key(&child)
                    && !tree.zombies.contains(&child)
                    && !out.contains(&child)
                {
                    out.push(child);
                }
            }
        }
        Ok(out)
    }

    /// Adds a newly found process; zombies are only recorded.
    fn add_process(&mut self, tree: &mut SeizedTree, parent: i32, pid: i32) {
        tree.parents.insert(pid, parent);
        if process_is_zombie(pid) {
            tree.zombies.insert(pid);
        } else {
            tree.processes.insert(
                pid,
                SeizedProcess {
                    pid,
                    threads: BTreeMap::new(),
                },
            );
        }
    }

    /// Frozen tree: walk it, seizing and interrupting every thread (stops are collected later,
    /// after the thaw).
    fn seize_frozen(&mut self, tree: &mut SeizedTree) -> Result<()> {
        let mut queue = vec![tree.root];
        tree.processes.insert(
            tree.root,
            SeizedProcess {
                pid: tree.root,
                threads: BTreeMap::new(),
            },
        );
        while let Some(pid) = queue.pop() {
            self.seize_threads(tree, pid)?;
            for child in self.new_children(tree, pid)? {
                self.add_process(tree, pid, child);
                if tree.processes.contains_key(&child) {
                    queue.push(child);
                }
            }
        }
        Ok(())
    }

    /// Repeats: seize new threads of every known process, wait for them, add new children,
    /// until one pass changes nothing.
    fn fixpoint(&mut self, tree: &mut SeizedTree, timeout: Duration) -> Result<()> {
        tree.processes
            .entry(tree.root)
            .or_insert_with(|| SeizedProcess {
                pid: tree.root,
                threads: BTreeMap::new(),
            });
        loop {
            let mut changed = !self.unwaited.is_empty();
            let pids: Vec<i32> = tree.processes.keys().copied().collect();
            for &pid in &pids {
                match self.seize_threads(tree, pid) {
                    Ok(n) => changed |= n > 0,
                    // The whole process is gone (not the root): drop it.
                    Err(TraceeError::Io { .. })
                        if pid != tree.root
                            && !std::path::Path::new(&format!("/proc/{pid}")).exists() =>
                    {
                        tree.processes.remove(&pid);
                    }
                    Err(e) => return Err(e),
                }
            }
            self.wait_all(tree, timeout)?;
            // Processes whose every thread vanished: dead by now (zombies are kept as such).
            let empty: Vec<i32> = tree
                .processes
                .iter()
                .filter(|(&pid, p)| pid != tree.root && p.threads.is_empty())
                .map(|(&pid, _)| pid)
                .collect();
            for pid in empty {
                tree.processes.remove(&pid);
                if process_is_zombie(pid) {
                    tree.zombies.insert(pid);
                } else {
                    tree.parents.remove(&pid);
                }
            }
            let pids: Vec<i32> = tree.processes.keys().copied().collect();
            for pid in pids {
                for child in self.new_children(tree, pid)? {
                    self.add_process(tree, pid, child);
                    changed = true;
                }
            }
            if tree
                .processes
                .get(&tree.root)
                .is_none_or(|p| p.threads.is_empty())
            {
                return Err(TraceeError::Gone {
                    tid: tree.root,
                    how: "the root exited while being seized".into(),
                });
            }
            if !changed {
                return Ok(());
            }
        }
    }
}

impl Drop for SeizedTree {
    fn drop(&mut self) {
        // Dropping each Tracee detaches it.
        self.processes.clear();
    }
}

fn read_tgid(pid: i32) -> Result<i32> {
    let path = format!("/proc/{pid}/status");
    let text =
        std::fs::read_to_string(&path).map_err(io_err(pid, format!("cannot read {path}")))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| TraceeError::Unexpected {
            tid: pid,
            what: format!("{path}: no Tgid: line"),
        })
}

/// Thread ids of process `pid`.
pub fn list_threads(pid: i32) -> Result<Vec<i32>> {
    let path = format!("/proc/{pid}/task");
    let dir = std::fs::read_dir(&path).map_err(io_err(pid, format!("cannot list {path}")))?;
    let mut out: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Children of thread `tid` of process `pid` (empty if the thread is gone).
pub fn list_children(pid: i32, tid: i32) -> Result<Vec<i32>> {
    let path = format!("/proc/{pid}/task/{tid}/children");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect()),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ESRCH) =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(io_err(tid, format!("cannot read {path}"))(e)),
    }
}

/// The one-letter state of a thread from /proc (None if it is gone).
fn task_state(pid: i32, tid: i32) -> Option<char> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    // The state follows the ")" that ends the command name.
    text.rsplit_once(')')?.1.trim_start().chars().next()
}

fn is_dead(pid: i32, tid: i32) -> bool {
    matches!(task_state(pid, tid), None | Some('Z') | Some('X'))
}

fn process_is_zombie(pid: i32) -> bool {
    matches!(task_state(pid, pid), Some('Z') | Some('X'))
        && list_threads(pid).map(|t| t.len() <= 1).unwrap_or(true)
}

impl SeizedProcess {
    /// Seizes every thread of process `pid` (repeating until no new thread appears) and leaves
    /// them stopped. Its children are not touched.
    pub fn seize(pid: i32, timeout: Duration) -> Result<SeizedProcess> {
        let tgid = read_tgid(pid)?;
        if tgid != pid {
            return Err(TraceeError::Unexpected {
                tid: pid,
                what: format!("is a thread of process {tgid}, not a process"),
            });
        }
        let mut tree = SeizedTree {
            root: pid,
            processes: BTreeMap::new(),
            parents: BTreeMap::new(),
            zombies: BTreeSet::new(),
        };
        let mut seizer = Seizer {
            skip: BTreeSet::new(),
            unwaited: Vec::new(),
        };
        loop {
            let new = seizer.seize_threads(&mut tree, pid)?;
            seizer.wait_all(&mut tree, timeout)?;
            if new == 0 {
                break;
            }
        }
        let proc_ = tree
            .processes
            .remove(&pid)
            .filter(|p| !p.threads.is_empty());
        proc_.ok_or_else(|| TraceeError::Gone {
            tid: pid,
            how: "exited while being seized".into(),
        })
    }
}
