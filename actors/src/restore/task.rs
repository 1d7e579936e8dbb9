//! The per-task restore actor. It lives on one tracer thread and owns its task from creation
//! to release: the root is created by criu (clone3 with the dumped pid), every other task by
//! its real parent (clone3 injected into the parent), threads by their leader.

use std::os::fd::AsRawFd;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use criu_memory::restore as mem;
use criu_memory::{chain, inherited};
use criu_process::regs::entry_to_gpregs;
use criu_process::restore_signals;
use criu_tracee::remote::{words, Remote, DATA_LEN};
use criu_tracee::{Injector, Tracee};

use super::clone::{clone_in, host_id, parent_of};
use super::helpers::TreeOp;
use super::pid_ns;
use super::rebuild::{self, task_err, RebuildError};
use super::thread::{finish_thread, rebuild_thread, restore_thread_state};
use criu_files::SharedFiles;
use criu_proto::dump_images::{DumpImages, TaskImages};

/// clone3 flags of a thread.
const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

pub struct RestoreTask {
    images: Arc<DumpImages>,
    /// What criu made for the tree's files; set once the root's namespaces exist.
    shared: Arc<OnceLock<SharedFiles>>,
    index: usize,
    timeout: Duration,
    /// The task's leader, stopped, until `Release` or `Kill`.
    tracee: Option<Tracee>,
    /// Its other threads, rebuilt and stopped.
    threads: Vec<Tracee>,
    /// Whether this actor's task exists (to kill it on failure).
    created: bool,
    /// The scratch area the task waits in between its memory restore and its rebuild.
    parked: Option<(u64, u64)>,
    /// The CPUs the task may use once released (criu's own); until then it is pinned to its
    /// tracer's CPU.
    release_cpus: Option<nix::sched::CpuSet>,
    /// Where the task's children are born now (its `pid_for_children`).
    children_ns: super::pid_ns::ChildrenNs,
}

impl RestoreTask {
    pub fn new(
        images: Arc<DumpImages>,
        shared: Arc<OnceLock<SharedFiles>>,
        index: usize,
        timeout: Duration,
        release_cpus: Option<nix::sched::CpuSet>,
    ) -> Self {
        RestoreTask {
            images,
            shared,
            index,
            timeout,
            tracee: None,
            threads: Vec::new(),
            created: false,
            parked: None,
            release_cpus,
            children_ns: None,
        }
    }

    fn task(&self) -> &TaskImages {
        &self.images.tasks[self.index]
    }

    fn shared(&self) -> Result<&SharedFiles, RebuildError> {
        self.shared
            .get()
            .ok_or_else(|| task_err(self.task().pid(), "the tree's files are not made yet"))
    }
}

impl Actor for RestoreTask {
    type Context = Context<Self>;
}

/// Create the root task as criu's child and take it over.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct CreateRoot {
    /// `--restore-sibling`: the root becomes criu's sibling (CLONE_PARENT).
    pub sibling: bool,
    /// The root starts its session at once (see plan.rs).
    pub setsid: bool,
    /// The namespaces the tree owned: the root is made in new ones.
    pub ns: criu_ns::Owned,
}

/// Fill the new namespaces of the root (its only task so far).
#[derive(Message)]
#[rtype(result = "Result<Filled, String>")]
pub struct FillNamespaces {
    pub ns: criu_ns::Owned,
}

pub use criu_ns::Filled;

/// The root unshares its cgroup namespace (criu put it in the namespace's root cgroups).
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct EnterCgroupNs {
    pub ns: criu_ns::Owned,
}

/// Take over a task its parent created (it waits in a pause loop).
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct Adopt {
    /// The task starts its session at once (see plan.rs).
    pub setsid: bool,
}

/// Create child `pid` of this task, by injecting clone3 into it.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct Fork {
    pub pid: i32,
    /// The child becomes a child of this task's parent (see helpers.rs).
    pub clone_parent: bool,
}

/// Restore the task's memory (before it forks its children).
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct RestoreMemory {
    /// The task that forked this one (its memory is what this one starts with), by index.
    pub creator: Option<usize>,
}

/// Rebuild the rest of the task and its threads; they stay stopped.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct Rebuild;

/// End a zombie-to-be the way it ended: exit with its code or die of its signal. Its parent,
/// still stopped, will find it dead when it runs again.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct Die;

/// Let the rebuilt task run.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct Release;

/// Kill whatever this actor created.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Kill;

fn with_pid<T>(pid: i32, r: Result<T, RebuildError>) -> Result<T, String> {
    r.map_err(|e| format!("restore: pid {pid}: {e}"))
}

impl RestoreTask {
    /// Runs one step of this task's restore, for a handler: its error names the task.
    fn step<T>(
        &mut self,
        run: impl FnOnce(&mut Self) -> Result<T, RebuildError>,
    ) -> Result<T, String> {
        let pid = self.task().pid();
        with_pid(pid, run(self))
    }
}

impl Handler<CreateRoot> for RestoreTask {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: CreateRoot, _: &mut Context<Self>) -> Self::Result {
        self.step(|t| t.create_root(msg.sibling, msg.setsid, &msg.ns))
    }
}

impl Handler<FillNamespaces> for RestoreTask {
    type Result = Result<Filled, String>;

    fn handle(&mut self, msg: FillNamespaces, _: &mut Context<Self>) -> Self::Result {
        self.step(|t| {
            let host = t.task().host_pid();
            let dir = t.images.dir.clone();
            let tracee = t
                .tracee
                .as_mut()
                .ok_or_else(|| task_err(host, "not created"))?;
            let mut inj = Injector::for_restore(tracee, DATA_LEN)?;
            let held = msg.ns.fill(&mut Remote::new(&mut inj), host, &dir)?;
            inj.finish()?;
            Ok(held)
        })
    }
}

impl Handler<EnterCgroupNs> for RestoreTask {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: EnterCgroupNs, _: &mut Context<Self>) -> Self::Result {
        self.step(|t| {
            let host = t.task().host_pid();
            let tracee = t
                .tracee
                .as_mut()
                .ok_or_else(|| task_err(host, "not created"))?;
            let mut inj = Injector::for_restore(tracee, DATA_LEN)?;
            msg.ns.enter_cgroup_ns(&mut Remote::new(&mut inj))?;
            inj.finish()?;
            Ok(())
        })
    }
}

impl Handler<Adopt> for RestoreTask {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: Adopt, _: &mut Context<Self>) -> Self::Result {
        self.created = true;
        self.step(|t| t.adopt(msg.setsid))
    }
}

impl Handler<Fork> for RestoreTask {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: Fork, _: &mut Context<Self>) -> Self::Result {
        self.step(|t| t.fork(msg.pid, msg.clone_parent))
    }
}

impl Handler<Rebuild> for RestoreTask {
    type Result = Result<(), String>;

    fn handle(&mut self, _: Rebuild, _: &mut Context<Self>) -> Self::Result {
        self.step(|t| t.rebuild())
    }
}

impl Handler<RestoreMemory> for RestoreTask {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: RestoreMemory, _: &mut Context<Self>) -> Self::Result {
        self.step(|t| t.restore_memory(msg.creator))
    }
}

impl Handler<TreeOp> for RestoreTask {
    type Result = Result<(), String>;

    fn handle(&mut self, op: TreeOp, _: &mut Context<Self>) -> Self::Result {
        let pid = self.task().pid();
        let images = self.images.clone();
        let tracee = self
            .tracee
            .as_mut()
            .ok_or_else(|| format!("restore: pid {pid}: not created"))?;
        let mut run = || -> Result<(), RebuildError> {
            let mut inj = Injector::for_restore(tracee, DATA_LEN)?;
            super::helpers::run_tree_op(&mut Remote::new(&mut inj), &images, pid, op)?;
            inj.finish()?;
            Ok(())
        };
        with_pid(pid, run())
    }
}

impl Handler<Die> for RestoreTask {
    type Result = Result<(), String>;

    fn handle(&mut self, _: Die, _: &mut Context<Self>) -> Self::Result {
        self.step(|t| t.die())
    }
}

impl RestoreTask {
    fn die(&mut self) -> Result<(), RebuildError> {
        let pid = self.task().pid();
        let status = self.task().zombie.unwrap_or(0);
        let mut tracee = self.tracee.take().ok_or_else(|| RebuildError::Task {
            pid,
            what: "not created".into(),
        })?;
        let (sig, code) = (status & 0x7f, (status >> 8) & 0xff);
        let mut inj = Injector::for_restore(&mut tracee, DATA_LEN)?;
        if sig == 0 {
            // Never returns: the task exits inside the injected call.
            let _ = inj.syscall(libc::SYS_exit_group, &[u64::from(code)]);
        } else {
            if sig != libc::SIGKILL as u32 {
                let dfl = words(&[libc::SIG_DFL as u64, 0, 0, 0]);
                let at = inj.write_data(0, &dfl)?;
                inj.syscall_ok(
                    "rt_sigaction",
                    libc::SYS_rt_sigaction,
                    &[u64::from(sig), at, 0, 8],
                )?;
                let unblock = words(&[1u64 << (sig - 1)]);
                let at = inj.write_data(64, &unblock)?;
                inj.syscall_ok(
                    "rt_sigprocmask",
                    libc::SYS_rt_sigprocmask,
                    &[libc::SIG_UNBLOCK as u64, at, 0, 8],
                )?;
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.task().host_pid()),
                nix::sys::signal::Signal::try_from(sig as i32).ok(),
            );
        }
        inj.finish_exited();
        wait_gone(self.task().host_pid()).map_err(|e| RebuildError::Task {
            pid,
            what: format!("zombie did not die: {e}"),
        })
    }
}

impl RestoreTask {
    fn create_root(
        &mut self,
        sibling: bool,
        setsid: bool,
        ns: &criu_ns::Owned,
    ) -> Result<(), RebuildError> {
        let pid = self.task().pid();
        let new_pid_ns = ns.owns(criu_procfs::NsKind::Pid);
        if !new_pid_ns && std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return Err(RebuildError::Task {
                pid,
                what: "pid is in use by another process".into(),
            });
        }
        ns.join_here()?;
        let mut flags = ns.clone_flags();
        if sibling {
            flags |= libc::CLONE_PARENT as u64;
        }
        let host = match ns.birth_joins()? {
            // The init of a pid namespace a joined user namespace owns.
            Some(_) if sibling => Err(task_err(
                pid,
                "--restore-sibling with a joined user namespace and a pid namespace of the \
                 tree's own is not supported",
            ))?,
            Some(joins) => {
                let fds: Vec<(i32, i32)> =
                    joins.iter().map(|(fd, f)| (fd.as_raw_fd(), *f)).collect();
                criu_sys::clone::clone_stopped_init_in(flags, &fds).map_err(|e| {
                    task_err(pid, format!("clone3 inside the joined namespaces: {e}"))
                })?
            }
            None => criu_sys::clone::clone_stopped_child(pid, flags)
                .map_err(|e| task_err(pid, format!("clone3 with set_tid: {e}")))?,
        };
        self.task().set_host_tid(0, host);
        self.created = true;
        ns.map_ids(host, &self.images.dir)?;
        self.adopt(setsid)
    }

    /// Seizes the task and gives it its session and process group, before it has children.
    fn adopt(&mut self, setsid: bool) -> Result<(), RebuildError> {
        let pid = self.task().host_pid();
        let mut tracee = Tracee::seize_stopped(pid, pid, self.timeout)?;
        crate::pool::pin_to_this_thread(pid);
        {
            let mut inj = Injector::for_restore(&mut tracee, DATA_LEN)?;
            rebuild::restore_session(&mut Remote::new(&mut inj), self.task(), setsid)?;
            inj.finish()?;
        }
        self.tracee = Some(tracee);
        Ok(())
    }

    fn fork(&mut self, child: i32, clone_parent: bool) -> Result<(), RebuildError> {
        let pid = self.task().pid();
        let me = self.task().host_pid();
        let tracee = self.tracee.as_mut().ok_or_else(|| RebuildError::Task {
            pid,
            what: "not created".into(),
        })?;
        let child_task = self.images.tasks.iter().find(|t| t.pid() == child);
        let files = match child_task {
            Some(t) if self.images.shares_parent_fd_table(t) => libc::CLONE_FILES as u64,
            _ => 0,
        };
        let mut inj = Injector::for_restore(tracee, DATA_LEN)?;
        let all = &self.images;
        let birth = pid_ns::before_birth(&mut inj, all, (pid, child), &mut self.children_ns)?;
        let mut flags = files;
        if birth.new_pid_ns {
            flags |= libc::CLONE_NEWPID as u64;
        }
        if clone_parent {
            // clone3 wants no exit signal with CLONE_PARENT: the child gets ours.
            let flags = flags | libc::CLONE_PARENT as u64;
            clone_in(&mut inj, &birth.set_tid, birth.seen_as, flags, 0)?;
        } else {
            clone_in(
                &mut inj,
                &birth.set_tid,
                birth.seen_as,
                flags,
                libc::SIGCHLD as u64,
            )?;
        }
        if let Some(t) = child_task {
            let creator = if clone_parent { parent_of(me)? } else { me };
            t.set_host_tid(0, host_id(creator, birth.seen_as, false)?);
        }
        pid_ns::after_birth(&mut inj, all, pid, &mut self.children_ns)?;
        inj.finish()?;
        Ok(())
    }

    /// The task's memory: what it inherited from its creator and keeps, then every other area
    /// and the pages. Done before the task forks its children, so they inherit it in turn.
    fn restore_memory(&mut self, creator: Option<usize>) -> Result<(), RebuildError> {
        let all = self.images.clone();
        let t = &all.tasks[self.index];
        let pid = t.pid();
        let made = self.shared.clone();
        let shared = made
            .get()
            .ok_or_else(|| task_err(pid, "the tree's files are not made yet"))?;
        let tracee = self.tracee.as_mut().ok_or_else(|| RebuildError::Task {
            pid,
            what: "not created".into(),
        })?;
        let rseq = tracee.rseq()?;
        // A helper or zombie creator has no memory of its own restored: nothing to keep.
        let parent = creator
            .map(|i| &all.tasks[i])
            .filter(|p| p.zombie.is_none());
        let inherited = match parent {
            Some(p) => inherited::inherited_areas(&t.mm.vmas, &p.mm.vmas),
            None => Vec::new(),
        };
        let mut inj = Injector::for_restore(tracee, DATA_LEN)?;
        let mut r = Remote::new(&mut inj);
        let fd_table_shared = all.shares_parent_fd_table(t);
        rebuild::clear_stub(&mut r, t, rseq, &inherited, fd_table_shared)?;
        let channel = rebuild::open_fd_channel(&mut r, t)?;
        super::net_ns::join_own(&mut r, &channel, t, &shared.netns)?;
        let exe_inherited =
            !inherited.is_empty() && parent.is_some_and(|p| p.mm.exe_file_id == t.mm.exe_file_id);
        rebuild::set_mm(&mut r, &all, &t.mm, pid, exe_inherited)?;
        let objects = rebuild::Objects {
            shmem: |id| shared.shmem(id),
            description: |id| shared.description(id),
        };
        rebuild::map_vmas(&mut r, &all, &objects, t, &channel, &inherited)?;
        channel.close(&mut r)?;
        // The task's pages, from this dump and its parents (pre-dumps).
        let sources = chain::read_chain(&all.dir, pid as u64)?;
        let runs = chain::all_runs(&sources);
        if let Some(p) = parent.filter(|_| !inherited.is_empty()) {
            let parent_runs = chain::all_runs(&chain::read_chain(&all.dir, p.pid() as u64)?);
            for (start, end) in inherited::stale_ranges(&parent_runs, &runs, &inherited) {
                r.call(
                    "madvise(MADV_DONTNEED)",
                    libc::SYS_madvise,
                    &[start, end - start, libc::MADV_DONTNEED as u64],
                )?;
            }
        }
        let watched = rebuild::watch_anonymous_memory(&mut r, t, &inherited);
        let uffd = watched
            .as_ref()
            .map(|(uffd, areas)| mem::UffdAreas { uffd, areas });
        let host = t.host_pid();
        let mut bytes = 0;
        let mut same = inherited::InheritedFill::default();
        for s in &sources {
            let (_, outside) = inherited::split_runs(&s.runs, &inherited);
            bytes += mem::fill(host, &s.dir, s.pages_id, &outside, uffd.as_ref())?;
        }
        if let Some((uffd, areas)) = &watched {
            for (start, end) in areas {
                let _ = uffd.unregister(*start, end - start);
            }
        }
        for s in &sources {
            let (inside, _) = inherited::split_runs(&s.runs, &inherited);
            let f = inherited::fill_differing(host, &s.dir, s.pages_id, &inside)?;
            same.written += f.written;
            same.kept += f.kept;
        }
        tracing::debug!(
            "pid {pid}: private memory: {bytes} bytes written from {} dump(s), {} inherited bytes rewritten, {} still shared with the parent",
            sources.len(),
            same.written,
            same.kept
        );
        self.parked = Some(inj.finish_parked()?);
        Ok(())
    }

    fn rebuild(&mut self) -> Result<(), RebuildError> {
        let all = self.images.clone();
        let t = &all.tasks[self.index];
        let pid = t.pid();
        let mut tracee = self.tracee.take().ok_or_else(|| RebuildError::Task {
            pid,
            what: "not created".into(),
        })?;
        let leader = &t.cores[0];
        let info = leader
            .thread_info
            .as_ref()
            .ok_or_else(|| RebuildError::Task {
                pid,
                what: "no thread info".into(),
            })?;
        {
            let mut inj = Injector::for_restore(&mut tracee, DATA_LEN)?;
            let mut r = Remote::new(&mut inj);
            if let Some((at, len)) = self.parked.take() {
                r.call("munmap(parked scratch)", libc::SYS_munmap, &[at, len])?;
            }
            // A task sharing its parent's fd table finds its fds there, put by the parent.
            if !all.shares_parent_fd_table(t) {
                let channel = rebuild::open_fd_channel(&mut r, t)?;
                rebuild::restore_fds(&mut r, &all, self.shared()?, t, &channel)?;
                channel.close(&mut r)?;
            }
            rebuild::restore_fs(&mut r, &all, t)?;
            // Work criu does through /proc names the task by criu's pid for it.
            rebuild::restore_aio_rings(&mut r, t.host_pid(), &t.mm)?;
            rebuild::restore_task_core(&mut r, pid, leader)?;
            rebuild::restore_attributes(&mut r, t.host_pid(), &t.mm, leader)?;
            // Signals are queued by the ids the task sees (nested pid namespaces).
            let own = |id| all.pids.own(id);
            if let Some(q) = leader.tc.as_ref().and_then(|tc| tc.signals_s.as_ref()) {
                restore_signals::queue_shared(&mut r, own(pid), q)?;
            }
            // Threads are cloned while the leader still has criu's privileges (set_tid needs
            // them) and before its scratch page, which their pause loop runs from, goes away.
            let host = t.host_pid();
            for (i, (tid, core)) in t.pstree.threads.iter().zip(&t.cores).enumerate().skip(1) {
                let tid = *tid as i32;
                clone_in(r.inj, &all.pids.set_tid(tid), own(tid), THREAD_FLAGS, 0)?;
                t.set_host_tid(i, host_id(host, own(tid), true)?);
                self.threads.push(rebuild_thread(
                    (own(pid), own(tid)),
                    (host, t.host_tid(i)),
                    core,
                    &all.seccomp_filters,
                    self.timeout,
                )?);
            }
            rebuild::restore_posix_timers(&mut r, pid, leader)?;
            restore_thread_state(&mut r, own(pid), own(pid), leader, &all.seccomp_filters)?;
            // After every thread's credentials: a change of uids resets the dumpable flag,
            // and a lease needs the file's owner as fsuid.
            rebuild::restore_dumpable(&mut r, &t.mm)?;
            if !all.shares_parent_fd_table(t) {
                rebuild::take_leases(&mut r, self.shared()?, t)?;
            }
            let regs = entry_to_gpregs(&info.gpregs).for_detach_at_syscall_exit();
            inj.finish_restored(&regs)?;
        }
        finish_thread(&mut tracee, leader)?;
        self.tracee = Some(tracee);
        Ok(())
    }
}

impl Handler<Release> for RestoreTask {
    type Result = Result<(), String>;

    fn handle(&mut self, _: Release, _: &mut Context<Self>) -> Self::Result {
        if let Some(cpus) = &self.release_cpus {
            let t = self.task();
            for i in 0..t.pstree.threads.len() {
                let _ =
                    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(t.host_tid(i)), cpus);
            }
        }
        let mut first = None;
        for t in self.threads.drain(..) {
            if let Err(e) = t.detach() {
                first.get_or_insert(e.to_string());
            }
        }
        // A task dumped stopped gets its stop signal while still held: it takes it as soon as
        // it is let go, before running any of its own code.
        let tc = self.task().cores.first().and_then(|c| c.tc.as_ref());
        if let Some(tc) = tc.filter(|tc| tc.task_state == criu_proto::dump_images::TASK_STOPPED) {
            let sig = tc
                .stop_signo
                .and_then(|s| nix::sys::signal::Signal::try_from(s as i32).ok());
            let sig = sig.unwrap_or(nix::sys::signal::Signal::SIGSTOP);
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.task().host_pid()), sig);
        }
        match self.tracee.take() {
            Some(t) => t.detach().map_err(|e| e.to_string())?,
            None => return Err("release: task was not rebuilt".into()),
        }
        first.map_or(Ok(()), Err)
    }
}

impl Handler<Kill> for RestoreTask {
    type Result = ();

    fn handle(&mut self, _: Kill, _: &mut Context<Self>) {
        if !std::mem::take(&mut self.created) {
            return;
        }
        let pid = self.task().host_pid();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        // Dropping the tracees detaches what is left; the root is criu's child: reap it.
        self.threads.clear();
        self.tracee = None;
        let _ = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::__WALL),
        );
    }
}

/// Lets a traced task that is on its way out finish dying, so that its real parent can reap it:
/// stops are continued (with their signal) until the kernel reports the exit to us.
fn wait_gone(pid: i32) -> Result<(), nix::errno::Errno> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let target = nix::unistd::Pid::from_raw(pid);
    // It may sit in a stop we already saw (after the last injection): let it go on first.
    let _ = nix::sys::ptrace::cont(target, None);
    loop {
        match waitpid(target, Some(WaitPidFlag::__WALL)) {
            // Already reported (an injected exit is collected by the injection itself).
            Err(nix::errno::Errno::ECHILD) => return Ok(()),
            Err(e) => return Err(e),
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return Ok(()),
            Ok(WaitStatus::Stopped(_, sig)) => nix::sys::ptrace::cont(target, Some(sig))?,
            Ok(_) => nix::sys::ptrace::cont(target, None)?,
        }
    }
}
