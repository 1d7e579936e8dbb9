//! The per-task actor of a dump: it seizes one process (every thread) on its tracer thread
//! and does all the work that needs ptrace there; it writes the task's own images.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, Context, Handler, Message};
use criu_memory::dump_pages::{self, PageCounts};
use criu_memory::{dump_mm, dump_vmas};
use criu_process::{dump_core, dump_task, dump_thread};
use criu_proto::images::{FsEntry, TaskKobjIdsEntry};
use criu_proto::{ImageKind, ImageWriter};
use criu_tracee::SeizedProcess;

use criu_files::collect as files;
use criu_files::FileTable;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("pid {pid}: cannot seize: {source}")]
    Seize {
        pid: i32,
        source: criu_tracee::TraceeError,
    },
    #[error("pid {pid}: not seized")]
    NotSeized { pid: i32 },
    #[error("pid {pid}: cannot read {what}: {source}")]
    Proc {
        pid: i32,
        what: &'static str,
        source: criu_procfs::ProcError,
    },
    #[error(transparent)]
    Thread(#[from] dump_thread::ThreadDumpError),
    #[error(transparent)]
    Vmas(#[from] dump_vmas::VmaDumpError),
    #[error(transparent)]
    Pages(#[from] dump_pages::PagesDumpError),
    #[error(transparent)]
    Track(#[from] criu_memory::track::TrackError),
    #[error(transparent)]
    Mm(#[from] dump_mm::MmError),
    #[error(transparent)]
    Files(#[from] criu_files::FilesError),
    #[error("pid {pid}: writing images: {source}")]
    Image { pid: i32, source: criu_proto::Error },
    #[error("pid {pid}: {what}")]
    Other { pid: i32, what: String },
}

/// What every task needs from the dump as a whole.
pub struct DumpShared {
    pub dir: PathBuf,
    pub files: Mutex<FileTable>,
    /// Shared anonymous memory objects by inode, each opened through one of its mappings;
    /// their pages are dumped once, after every task.
    pub shmem: Mutex<std::collections::BTreeMap<u64, (std::fs::File, u64)>>,
    pub zero_pfn: Option<u64>,
    pub copy_threads: usize,
    /// Every thread's seccomp filters, for seccomp.img.
    pub seccomp: criu_process::seccomp::SeccompImage,
    /// The parent dump and the memory trackers (pre-dump, --track-mem).
    pub chain: super::iterative::Chain,
    /// `--page-server`: the connection the tasks send their pages over, one at a time.
    pub page_server: Option<Mutex<criu_memory::page_server::Client>>,
}

impl DumpShared {
    /// Where the tasks' pages go.
    pub fn pages_to(&self) -> dump_pages::PagesTo<'_> {
        match &self.page_server {
            Some(c) => dump_pages::PagesTo::Server(c),
            None => dump_pages::PagesTo::Dir(&self.dir),
        }
    }

    /// Ends the page server's session (it answers once its images are written).
    pub fn close_page_server(&self) -> Result<(), criu_memory::page_server::PageServerError> {
        match &self.page_server {
            Some(c) => c.lock().unwrap_or_else(|e| e.into_inner()).close(),
            None => Ok(()),
        }
    }
}

/// The result of dumping one task, for the supervisor's global images. Ids are the ones the
/// task sees (in the tree's pid namespace), as the images name it.
#[derive(Debug, Clone)]
pub struct TaskDone {
    /// The pid as criu sees it.
    pub host_pid: i32,
    pub pid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub threads: Vec<i32>,
    /// Each thread (leader first) with its ids in pid namespaces below the root's.
    pub pid_levels: Vec<(i32, Vec<i32>)>,
    pub pages: PageCounts,
    /// `pages-<id>.img` with its hash, taken while it was written (none for a zombie).
    pub pages_image: Option<(String, u128)>,
    /// A pre-dump's pages, copied once the task runs again.
    pub deferred: Option<Deferred>,
}

/// A pre-dump's plan for one task's pages.
#[derive(Debug, Clone)]
pub struct Deferred {
    pub pages_id: u32,
    pub plan: dump_pages::PagesPlan,
}

pub struct TaskActor {
    pid: i32,
    process: Option<SeizedProcess>,
    seize_error: Option<criu_tracee::TraceeError>,
    /// /proc state letter before seizing ('T' for a stopped task).
    state_before: char,
    /// The signal that stopped a stopped task, as the seize found it.
    stop_signo: Option<u32>,
    /// A zombie is not seized: it has only its exit status to dump.
    zombie: Option<criu_procfs::Stat>,
    /// Seized and interrupted inside a frozen cgroup: the stops are collected once it thaws.
    interrupted: Option<SeizedProcess>,
    /// Stopped inside a frozen cgroup: seized once it thaws (see `freezer::is_stopped`).
    seize_later: bool,
    timeout: Duration,
    /// Its memory map and tracker as [`Track`] found them, taken by the collect.
    tracked: Option<Tracked>,
}

impl TaskActor {
    /// Seizes `pid` on the calling (tracer) thread.
    pub fn seize(pid: i32, timeout: Duration) -> TaskActor {
        let state_before = criu_procfs::read_stat(pid).map(|s| s.state).unwrap_or('?');
        let actor = |process, seize_error, zombie| TaskActor {
            pid,
            process,
            seize_error,
            state_before,
            stop_signo: None,
            zombie,
            interrupted: None,
            seize_later: false,
            timeout,
            tracked: None,
        };
        if let Some(stat) = zombie_stat(pid) {
            return actor(None, None, Some(stat));
        }
        match SeizedProcess::seize(pid, timeout) {
            Ok(p) => TaskActor {
                stop_signo: (state_before == 'T').then(|| stop_signal(pid)).flatten(),
                ..actor(Some(p), None, None)
            },
            // It may have died while being seized: then it is a zombie now.
            Err(e) => match zombie_stat(pid) {
                Some(stat) => actor(None, None, Some(stat)),
                None => actor(None, Some(e), None),
            },
        }
    }
}

impl TaskActor {
    /// Seizes and interrupts every thread of `pid` without waiting for the stops: its cgroup
    /// is frozen (`--freeze-cgroup`), so they come once it is thawed, before the task runs any
    /// code of its own again. [`Seized`] collects them.
    pub fn interrupt_frozen(pid: i32, timeout: Duration) -> TaskActor {
        let state_before = criu_procfs::read_stat(pid).map(|s| s.state).unwrap_or('?');
        let mut actor = TaskActor {
            pid,
            process: None,
            seize_error: None,
            state_before,
            stop_signo: None,
            zombie: None,
            interrupted: None,
            seize_later: false,
            timeout,
            tracked: None,
        };
        if let Some(stat) = zombie_stat(pid) {
            actor.zombie = Some(stat);
            return actor;
        }
        if criu_cgroups::freezer::is_stopped(pid) {
            actor.seize_later = true;
            return actor;
        }
        let mut p = SeizedProcess {
            pid,
            threads: Default::default(),
        };
        let tids = criu_tracee::tree::list_threads(pid);
        let seized = tids.and_then(|tids| {
            for tid in tids {
                let mut t = match criu_tracee::Tracee::seize(pid, tid) {
                    Ok(t) => t,
                    // Gone meanwhile: the collect finds what is left.
                    Err(criu_tracee::TraceeError::Ptrace {
                        errno: nix::errno::Errno::ESRCH,
                        ..
                    }) => continue,
                    Err(e) => return Err(e),
                };
                t.interrupt()?;
                p.threads.insert(tid, t);
            }
            Ok(())
        });
        match seized {
            Ok(()) => actor.interrupted = Some(p),
            Err(e) => {
                let _ = p.release();
                actor.seize_error = Some(e);
            }
        }
        actor
    }

    /// Collects the stops of threads interrupted while frozen, and seizes threads that
    /// appeared since.
    fn finish_interrupted(&mut self) -> Result<(), TaskError> {
        let Some(mut p) = self.interrupted.take() else {
            return Ok(());
        };
        let pid = self.pid;
        let err = |source| TaskError::Seize { pid, source };
        let deadline = std::time::Instant::now() + self.timeout;
        let mut gone = Vec::new();
        for (&tid, t) in p.threads.iter_mut() {
            match t.wait_stop(Some(deadline)).map_err(err)? {
                criu_tracee::WaitOutcome::Stopped => {}
                criu_tracee::WaitOutcome::Gone => gone.push(tid),
                criu_tracee::WaitOutcome::NotYet => {
                    return Err(TaskError::Seize {
                        pid,
                        source: criu_tracee::TraceeError::Timeout {
                            tid,
                            secs: self.timeout.as_secs_f64(),
                        },
                    })
                }
            }
        }
        for tid in gone {
            p.threads.remove(&tid);
        }
        loop {
            let mut new = 0;
            for tid in criu_tracee::tree::list_threads(pid).map_err(err)? {
                if p.threads.contains_key(&tid) {
                    continue;
                }
                match criu_tracee::Tracee::seize_stopped(pid, tid, self.timeout) {
                    Ok(t) => {
                        p.threads.insert(tid, t);
                        new += 1;
                    }
                    Err(criu_tracee::TraceeError::Gone { .. }) => {}
                    Err(e) => return Err(err(e)),
                }
            }
            if new == 0 {
                break;
            }
        }
        if p.threads.is_empty() {
            return Err(TaskError::Seize {
                pid,
                source: criu_tracee::TraceeError::Gone {
                    tid: pid,
                    how: "exited while being seized".into(),
                },
            });
        }
        if self.state_before == 'T' {
            self.stop_signo = stop_signal(pid);
        }
        self.process = Some(p);
        Ok(())
    }
}

/// The signal a just seized, stopped task was stopped by: its group-stop trap carries it.
fn stop_signal(pid: i32) -> Option<u32> {
    let info = nix::sys::ptrace::getsiginfo(nix::unistd::Pid::from_raw(pid)).ok()?;
    let stop = [libc::SIGSTOP, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];
    stop.contains(&info.si_signo)
        .then_some(info.si_signo as u32)
}

/// The stat of `pid` if it is a zombie: dead, with no thread left running (a group leader
/// that exited before its threads shows 'Z' too, but is not one).
fn zombie_stat(pid: i32) -> Option<criu_procfs::Stat> {
    let stat = criu_procfs::read_stat(pid)
        .ok()
        .filter(|s| s.state == 'Z')?;
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.count();
    (threads <= 1).then_some(stat)
}

impl Actor for TaskActor {
    type Context = Context<Self>;
}

/// Answered as soon as the actor exists.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Ping;

impl Handler<Ping> for TaskActor {
    type Result = ();

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) {}
}

/// Whether the seize worked; on success, the children of every thread.
#[derive(Message)]
#[rtype(result = "Result<SeizeOutcome, TaskError>")]
pub struct Seized;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeizeOutcome {
    pub children: Vec<i32>,
    /// A zombie has no children, namespaces or memory left: only its core image.
    pub zombie: bool,
}

impl Handler<Seized> for TaskActor {
    type Result = Result<SeizeOutcome, TaskError>;

    fn handle(&mut self, _: Seized, _: &mut Context<Self>) -> Self::Result {
        let pid = self.pid;
        if self.seize_later {
            *self = TaskActor::seize(pid, self.timeout);
        }
        if let Some(source) = self.seize_error.take() {
            return Err(TaskError::Seize { pid, source });
        }
        self.finish_interrupted()?;
        if self.zombie.is_some() {
            return Ok(SeizeOutcome {
                children: Vec::new(),
                zombie: true,
            });
        }
        let p = self.process.as_ref().ok_or(TaskError::NotSeized { pid })?;
        let mut children = Vec::new();
        for &tid in p.threads.keys() {
            let list = criu_tracee::tree::list_children(pid, tid)
                .map_err(|source| TaskError::Seize { pid, source })?;
            children.extend(list);
        }
        children.sort_unstable();
        children.dedup();
        Ok(SeizeOutcome {
            children,
            zombie: false,
        })
    }
}

/// Dump the task: write its images, return what the global images need.
#[derive(Message)]
#[rtype(result = "Result<TaskDone, TaskError>")]
pub struct Collect {
    pub shared: Arc<DumpShared>,
    pub ids: TaskKobjIdsEntry,
    pub pages_id: u32,
    /// The task shares its parent's fd table, whose fds the parent dumps (see fd_table).
    pub parent_dumps_fds: bool,
    /// How images name tasks: by their pids in the root's pid namespace.
    pub pids: criu_ns::pid::PidView,
    /// The tree has its own ipc namespace: its System V segments are dumped with it.
    pub own_ipc_ns: bool,
    /// The cgroup set of each thread (by the tid criu sees), for the cores' `cg_set`.
    pub cg_sets: std::collections::BTreeMap<i32, u32>,
}

impl Handler<Collect> for TaskActor {
    type Result = Result<TaskDone, TaskError>;

    fn handle(&mut self, msg: Collect, _: &mut Context<Self>) -> Self::Result {
        let pid = self.pid;
        let state_before = self.state_before;
        let pre_dump = msg.shared.chain.asked.pre_dump;
        if let Some(stat) = &self.zombie {
            let ids = TaskIds::read(pid, msg.pids, stat)?;
            if pre_dump {
                return Ok(TaskDone::memory_only(ids.host, &ids, None));
            }
            return dump_zombie(&ids, stat, &msg.shared.dir);
        }
        let stop_signo = self.stop_signo;
        let process = self.process.as_mut().ok_or(TaskError::NotSeized { pid })?;
        let tracked = self.tracked.take();
        if pre_dump {
            return pre_collect(pid, tracked, &msg);
        }
        collect(pid, (state_before, stop_signo), process, tracked, &msg)
    }
}

/// The memory map a [`Track`] read (the task stays stopped: the collect uses it as it is) and
/// the tracker it took or made.
pub struct Tracked {
    vmas: Vec<dump_vmas::DumpVma>,
    tracking: Option<super::iterative::Tracking>,
}

impl Tracked {
    /// What [`Track`] left, or the memory map read now (no tracking in this dump).
    fn or_read(t: Option<Tracked>, pid: i32) -> Result<Tracked, TaskError> {
        match t {
            Some(t) => Ok(t),
            None => Ok(Tracked {
                vmas: dump_vmas::collect_vmas(pid)?,
                tracking: None,
            }),
        }
    }
}

/// Takes over or makes the task's memory tracker and runs its round. Every task of the dump
/// does this before any fd table is listed: a tracker being made in a task that shares its
/// fd table with another must not be found half made there.
#[derive(Message)]
#[rtype(result = "Result<(), TaskError>")]
pub struct Track {
    pub shared: Arc<DumpShared>,
    pub pids: criu_ns::pid::PidView,
}

impl Handler<Track> for TaskActor {
    type Result = Result<(), TaskError>;

    fn handle(&mut self, msg: Track, _: &mut Context<Self>) -> Self::Result {
        let pid = self.pid;
        if self.zombie.is_some() {
            return Ok(());
        }
        let process = self.process.as_mut().ok_or(TaskError::NotSeized { pid })?;
        let stat = criu_procfs::read_stat(pid).map_err(|source| TaskError::Proc {
            pid,
            what: "stat",
            source,
        })?;
        let name = TaskIds::read(pid, msg.pids, &stat)?.pid;
        let vmas = dump_vmas::collect_vmas(pid)?;
        let tracking = super::iterative::start(&msg.shared.chain, (pid, name), process, &vmas)?;
        self.tracked = Some(Tracked { vmas, tracking });
        Ok(())
    }
}

/// A failed dump closes the tracker it made in the task at this fd.
#[derive(Message)]
#[rtype(result = "Result<(), TaskError>")]
pub struct CloseTracker(pub i32);

impl Handler<CloseTracker> for TaskActor {
    type Result = Result<(), TaskError>;

    fn handle(&mut self, msg: CloseTracker, _: &mut Context<Self>) -> Self::Result {
        let pid = self.pid;
        let process = self.process.as_mut().ok_or(TaskError::NotSeized { pid })?;
        let leader = process
            .thread_mut(pid)
            .ok_or(TaskError::NotSeized { pid })?;
        let terr = |source| TaskError::Seize { pid, source };
        let mut inj = criu_tracee::Injector::new(leader, 64).map_err(terr)?;
        criu_tracee::remote::Remote::new(&mut inj)
            .close(msg.0 as u64)
            .map_err(terr)?;
        inj.finish().map_err(terr)
    }
}

/// How to let go of the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    Kill,
    Run,
    Stop,
}

#[derive(Message)]
#[rtype(result = "Result<(), TaskError>")]
pub struct Finish(pub Release);

impl Handler<Finish> for TaskActor {
    type Result = Result<(), TaskError>;

    fn handle(&mut self, msg: Finish, ctx: &mut Context<Self>) -> Self::Result {
        use actix::ActorContext;
        let pid = self.pid;
        let result = match self.process.take() {
            None => Ok(()),
            Some(p) => {
                let sig = match msg.0 {
                    Release::Kill => Some(nix::sys::signal::Signal::SIGKILL),
                    Release::Stop => Some(nix::sys::signal::Signal::SIGSTOP),
                    Release::Run => None,
                };
                let sent = match sig {
                    Some(sig) => nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
                        .map_err(|e| TaskError::Other {
                            pid,
                            what: format!("cannot send {sig}: {e}"),
                        }),
                    None => Ok(()),
                };
                let released = p
                    .release()
                    .map_err(|source| TaskError::Seize { pid, source });
                sent.and(released)
            }
        };
        ctx.stop();
        result
    }
}

fn img(pid: i32) -> impl Fn(criu_proto::Error) -> TaskError {
    move |source| TaskError::Image { pid, source }
}

/// Writes an image of one entry, named by `id`.
macro_rules! write_one {
    ($dir:expr, $kind:expr, $id:expr, $msg:expr) => {{
        let id: i32 = $id;
        let mut w = ImageWriter::create($dir, $kind, Some(id as u64)).map_err(img(id))?;
        w.write($msg).map_err(img(id))?;
        w.finish().map_err(img(id))?;
    }};
}

/// A task's pid, group and session as the task sees them: in a pid namespace of the tree's
/// own, the innermost ids /proc/PID/status lists (0 for a session or group outside it).
struct TaskIds {
    host: i32,
    pid: i32,
    pgid: i32,
    sid: i32,
    /// The leader's ids in pid namespaces below the root's (none in the root's).
    inner: Vec<i32>,
    view: criu_ns::pid::PidView,
}

impl TaskIds {
    fn read(
        pid: i32,
        view: criu_ns::pid::PidView,
        stat: &criu_procfs::Stat,
    ) -> Result<TaskIds, TaskError> {
        if view.is_criu_view() {
            return Ok(TaskIds {
                host: pid,
                pid,
                pgid: stat.pgrp,
                sid: stat.session,
                inner: Vec::new(),
                view,
            });
        }
        let s = read_status(pid)?;
        let at = |v: &[i32]| v.get(view.depth).copied().unwrap_or(0);
        Ok(TaskIds {
            host: pid,
            pid: at(&s.ns_pid),
            pgid: at(&s.ns_pgid),
            sid: at(&s.ns_sid),
            inner: s.ns_pid.get(view.depth + 1..).unwrap_or_default().to_vec(),
            view,
        })
    }

    /// The id a thread of this task has in the root's pid namespace, and those below.
    fn tid(&self, tid: i32) -> Result<(i32, Vec<i32>), TaskError> {
        if tid == self.host {
            return Ok((self.pid, self.inner.clone()));
        }
        if self.view.is_criu_view() {
            return Ok((tid, Vec::new()));
        }
        let s = read_status(tid)?;
        let depth = self.view.depth;
        let pid = s.ns_pid.get(depth).copied().unwrap_or(0);
        Ok((pid, s.ns_pid.get(depth + 1..).unwrap_or_default().to_vec()))
    }
}

fn read_status(pid: i32) -> Result<criu_procfs::Status, TaskError> {
    criu_procfs::read_status(pid).map_err(|source| TaskError::Proc {
        pid,
        what: "status",
        source,
    })
}

/// A zombie's core image, and nothing else (as CRIU writes it).
fn dump_zombie(
    ids: &TaskIds,
    stat: &criu_procfs::Stat,
    dir: &std::path::Path,
) -> Result<TaskDone, TaskError> {
    write_one!(
        dir,
        &ImageKind::CORE,
        ids.pid,
        &dump_core::zombie_core(stat)
    );
    Ok(TaskDone {
        threads: vec![ids.pid],
        ..TaskDone::memory_only(ids.host, ids, None)
    })
}

fn collect(
    pid: i32,
    (state_before, stop_signo): (char, Option<u32>),
    process: &mut SeizedProcess,
    tracked: Option<Tracked>,
    msg: &Collect,
) -> Result<TaskDone, TaskError> {
    let shared = &msg.shared;
    let dir = shared.dir.as_path();
    let proc_err = |what| move |source| TaskError::Proc { pid, what, source };
    let dead_leader = || TaskError::Other {
        pid,
        what: "its thread group leader exited while its other threads run on; a dead leader is \
               not dumped (CRIU does not either)"
            .into(),
    };
    let stat = criu_procfs::read_stat(pid).map_err(proc_err("stat"))?;
    let names = TaskIds::read(pid, msg.pids, &stat)?;
    let name = names.pid;

    // Memory map; file mappings get the file's id (socket mappings once the fds are dumped).
    let Tracked { mut vmas, tracking } = Tracked::or_read(tracked, pid)?;
    let sysv = criu_memory::vma::VMA_AREA_SYSVIPC;
    if let Some(v) = vmas
        .iter()
        .find(|v| v.entry.status & sysv != 0 && !msg.own_ipc_ns)
    {
        return Err(TaskError::Other {
            pid,
            what: format!(
                "mapping {:#x}-{:#x}: System V shared memory of criu's ipc namespace is not \
                 dumped (CRIU dumps segments with a tree's own ipc namespace)",
                v.entry.start, v.entry.end
            ),
        });
    }
    for v in vmas.iter_mut() {
        let memfd = v.entry.status & criu_memory::vma::VMA_AREA_MEMFD != 0;
        if let Some(f) = v.file.as_ref().filter(|_| memfd) {
            let (start, end) = (v.entry.start, v.entry.end);
            let id =
                criu_files::memfd::dump::mapping_file_id(pid, start, end, &f.path, &shared.files)
                    .map_err(criu_files::FilesError::from)?;
            v.entry.shmid = u64::from(id);
        } else if let Some(f) = &v.file {
            let (start, end) = (v.entry.start, v.entry.end);
            let id = files::mapped_special(pid, start, end, &f.path, f.deleted, &shared.files)?;
            v.entry.shmid = u64::from(id);
        }
    }

    for v in vmas.iter().filter(|v| v.shmem.is_some()) {
        let Some(obj) = v.shmem else { continue };
        let mut table = shared.shmem.lock().unwrap_or_else(|e| e.into_inner());
        if let std::collections::btree_map::Entry::Vacant(slot) = table.entry(obj.ino) {
            let path = criu_procfs::maps::map_file_path(pid, v.entry.start, v.entry.end);
            let file = std::fs::File::open(&path).map_err(|e| TaskError::Other {
                pid,
                what: format!(
                    "cannot open shared memory at {:#x} through {}: {e}",
                    v.entry.start,
                    path.display()
                ),
            })?;
            slot.insert((file, obj.size));
        }
    }

    // In a chain of dumps every tracker in the fd table is criu's: its own, those of tasks
    // sharing the table, copies inherited by forking after an earlier round.
    let active = shared.chain.active();
    let criu_s = |fd| active && criu_memory::track::is_tracker(pid, fd);
    let fdinfo = if msg.parent_dumps_fds {
        Vec::new()
    } else {
        files::dump_fds(pid, &shared.files, criu_s)?
    };
    // A socket's ring names the socket by its file id, known once the fds are dumped.
    for v in vmas.iter_mut() {
        if let Some(ino) = v.socket {
            let area = (v.entry.start, v.entry.end);
            let id = criu_files::packet::dump::mapped_ring(pid, area, ino, &shared.files)?;
            v.entry.shmid = u64::from(id);
        }
    }

    // The process-wide queue first: an injection lets SIGTRAP through (its int3 reports with
    // it), so a pending SIGTRAP would be taken off the shared queue (and sent back to the
    // thread) by any session before.
    let leader = process.thread_mut(pid).ok_or_else(dead_leader)?;
    let signals_s = dump_thread::shared_signals(leader)?;

    // Threads: leader first, as CRIU lists them.
    let mut tids: Vec<i32> = process.threads.keys().copied().collect();
    tids.sort_by_key(|&t| (t != pid, t));
    let mut threads = Vec::with_capacity(tids.len());
    for &tid in &tids {
        let t = process
            .thread_mut(tid)
            .ok_or(TaskError::NotSeized { pid: tid })?;
        threads.push(dump_thread::dump_thread(pid, t)?);
    }
    criu_process::seccomp::assign(&mut threads, &shared.seccomp);
    let leader = process.thread_mut(pid).ok_or_else(dead_leader)?;
    let misc = dump_task::dump_task_misc(pid, leader)?;
    let rlimits = dump_task::dump_rlimits(pid).map_err(proc_err("limits"))?;

    let inc = tracking.as_ref().and_then(|t| t.inc.as_ref());
    let plan = dump_pages::plan_pages(pid, &vmas, shared.zero_pfn, inc)?;
    if shared.page_server.is_some() {
        shared.chain.set_covered(name, &plan.scanned);
    }
    let pages = dump_pages::write_pages(
        shared.pages_to(),
        (pid, name),
        msg.pages_id,
        &plan,
        shared.copy_threads,
        false,
    )?;
    drop(tracking);
    let guards = plan.scanned.guards;

    // Core images: the leader's carries the task-wide part.
    let stopped = (state_before == 'T').then(|| stop_signo.unwrap_or(libc::SIGSTOP as u32));
    let process_state = dump_core::ProcessState {
        stat: &stat,
        stopped,
        misc: &misc,
        rlimits,
        signals_s,
    };
    let mut cores =
        dump_core::core_entries(pid, &threads, process_state).map_err(proc_err("core"))?;
    for (tid, core) in cores.iter_mut() {
        if let (Some(set), Some(tc)) = (msg.cg_sets.get(tid), core.thread_core.as_mut()) {
            tc.cg_set = Some(*set);
        }
    }
    let mut vtids = Vec::with_capacity(cores.len());
    let mut pid_levels = Vec::with_capacity(cores.len());
    for (tid, core) in &cores {
        let (vtid, inner) = names.tid(*tid)?;
        write_one!(dir, &ImageKind::CORE, vtid, core);
        vtids.push(vtid);
        pid_levels.push((vtid, inner));
    }

    let mm_state = dump_mm::MmState {
        brk: misc.brk,
        dumpable: misc.dumpable,
        thp_disabled: misc.thp_disabled,
        exe_file_id: files::proc_special(pid, "exe", &shared.files)?,
        guards,
    };
    let mm = dump_mm::mm_entry(pid, &stat, &vmas, mm_state)?;
    write_one!(dir, &ImageKind::MM, name, &mm);

    // fs: cwd and root are files too.
    let cwd_id = files::proc_special(pid, "cwd", &shared.files)?;
    let root_id = files::proc_special(pid, "root", &shared.files)?;
    write_one!(
        dir,
        &ImageKind::FS,
        name,
        &FsEntry {
            cwd_id,
            root_id,
            umask: Some(misc.umask)
        }
    );

    // fdinfo is per files_id, written by the first task of a shared table.
    if !msg.parent_dumps_fds {
        let mut w = ImageWriter::create(dir, &ImageKind::FDINFO, Some(u64::from(msg.ids.files_id)))
            .map_err(img(pid))?;
        for e in &fdinfo {
            w.write(e).map_err(img(pid))?;
        }
        w.finish().map_err(img(pid))?;
    }

    write_one!(dir, &ImageKind::IDS, name, &msg.ids);

    Ok(TaskDone {
        host_pid: pid,
        pid: name,
        pgid: names.pgid,
        sid: names.sid,
        threads: vtids,
        pid_levels,
        pages_image: pages.hash.map(|h| {
            let name = criu_proto::ImageKind::PAGES.file_name(Some(u64::from(msg.pages_id)));
            (name, h)
        }),
        pages,
        deferred: None,
    })
}

/// A pre-dump of one stopped task: its memory map, its tracker's round, and the pages to
/// copy once it runs again. No other image.
fn pre_collect(pid: i32, tracked: Option<Tracked>, msg: &Collect) -> Result<TaskDone, TaskError> {
    let shared = &msg.shared;
    let stat = criu_procfs::read_stat(pid).map_err(|source| TaskError::Proc {
        pid,
        what: "stat",
        source,
    })?;
    let ids = TaskIds::read(pid, msg.pids, &stat)?;
    let Tracked { vmas, tracking } = Tracked::or_read(tracked, pid)?;
    let inc = tracking.as_ref().and_then(|t| t.inc.as_ref());
    let plan = dump_pages::plan_pages(pid, &vmas, shared.zero_pfn, inc)?;
    if shared.page_server.is_some() {
        shared.chain.set_covered(ids.pid, &plan.scanned);
    }
    let deferred = Deferred {
        pages_id: msg.pages_id,
        plan,
    };
    Ok(TaskDone::memory_only(ids.host, &ids, Some(deferred)))
}

impl TaskDone {
    /// A task that gets no image of its own here (its memory comes later, if at all).
    fn memory_only(host_pid: i32, ids: &TaskIds, deferred: Option<Deferred>) -> TaskDone {
        TaskDone {
            host_pid,
            pid: ids.pid,
            pgid: ids.pgid,
            sid: ids.sid,
            threads: Vec::new(),
            pid_levels: vec![(ids.pid, ids.inner.clone())],
            pages: PageCounts::default(),
            pages_image: None,
            deferred,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use criu_proto::dump_images::TASK_DEAD;
    use criu_proto::images::CoreEntry;

    /// A child that exited and is not reaped yet (the caller reaps it).
    #[allow(clippy::zombie_processes)]
    fn zombie_child() -> std::process::Child {
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        for _ in 0..500 {
            if criu_procfs::read_stat(pid)
                .map(|s| s.state == 'Z')
                .unwrap_or(false)
            {
                return child;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("child {pid} did not become a zombie");
    }

    #[test]
    fn a_zombie_is_found_and_keeps_its_exit_status() {
        let mut child = zombie_child();
        let pid = child.id() as i32;
        let stat = zombie_stat(pid).expect("a zombie");
        let tc = dump_core::zombie_core(&stat).tc.unwrap();
        assert_eq!(tc.task_state, TASK_DEAD);
        assert_eq!(tc.exit_code, 3 << 8);
        assert_eq!(tc.comm, "sh");
        assert!(zombie_stat(std::process::id() as i32).is_none());
        child.wait().unwrap();
    }

    #[test]
    fn a_zombie_gets_only_a_core_image() {
        let mut child = zombie_child();
        let pid = child.id() as i32;
        let dir = tempfile::tempdir().unwrap();
        let stat = zombie_stat(pid).unwrap();
        let ids = TaskIds::read(pid, Default::default(), &stat).unwrap();
        let done = dump_zombie(&ids, &stat, dir.path()).unwrap();
        assert_eq!(done.threads, [pid]);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [format!("core-{pid}.img")]);
        let mut r =
            criu_proto::ImageReader::open(dir.path(), &ImageKind::CORE, Some(pid as u64)).unwrap();
        let core: CoreEntry = r.read().unwrap().unwrap();
        assert_eq!(core.tc.unwrap().task_state, TASK_DEAD);
        child.wait().unwrap();
    }
}
