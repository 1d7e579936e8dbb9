//! The per-task restore actor. It lives on one tracer thread: it creates the task's stub there,
//! seizes it, rebuilds it, and holds it stopped until the supervisor releases everything.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use criu_memory::restore as mem;
use criu_process::regs::{entry_to_gpregs, entry_to_xsave};
use criu_process::{restore_creds, restore_signals};
use criu_tracee::regs::xsave_size;
use criu_tracee::{Injector, Tracee};

use super::images::DumpImages;
use super::rebuild::{self, RebuildError};
use criu_tracee::remote::{Remote, DATA_LEN};

pub struct RestoreTask {
    images: Arc<DumpImages>,
    index: usize,
    timeout: Duration,
    /// The rebuilt task, stopped, until `Release` or `Kill`.
    tracee: Option<Tracee>,
    /// The pid we created, even if seizing it failed (to kill it).
    created: Option<i32>,
}

impl RestoreTask {
    pub fn new(images: Arc<DumpImages>, index: usize, timeout: Duration) -> Self {
        RestoreTask { images, index, timeout, tracee: None, created: None }
    }
}

impl Actor for RestoreTask {
    type Context = Context<Self>;
}

/// Create and rebuild the task; it stays stopped. Answers its pid.
#[derive(Message)]
#[rtype(result = "Result<i32, String>")]
pub struct Rebuild;

/// Let the rebuilt task run.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct Release;

/// Kill whatever this actor created.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Kill;

impl Handler<Rebuild> for RestoreTask {
    type Result = Result<i32, String>;

    fn handle(&mut self, _: Rebuild, _: &mut Context<Self>) -> Self::Result {
        let pid = self.images.tasks[self.index].pid();
        self.rebuild().map_err(|e| format!("restore: pid {pid}: {e}"))
    }
}

impl RestoreTask {
    fn rebuild(&mut self) -> Result<i32, RebuildError> {
        let all = self.images.clone();
        let t = &all.tasks[self.index];
        let pid = t.pid();
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return Err(RebuildError::Task { pid, what: "pid is in use by another process".into() });
        }
        let created = criu_sys::clone::clone_stopped_child(pid, 0)
            .map_err(|e| RebuildError::Task { pid, what: format!("clone3 with set_tid: {e}") })?;
        self.created = Some(created);
        let mut tracee = Tracee::seize_stopped(pid, pid, self.timeout)?;
        let rseq = tracee.rseq()?;
        let leader = &t.cores[0];
        let info = leader.thread_info.as_ref().ok_or_else(|| RebuildError::Task { pid, what: "no thread info".into() })?;
        {
            let mut inj = Injector::new(&mut tracee, DATA_LEN)?;
            let mut r = Remote::new(&mut inj);
            rebuild::clear_stub(&mut r, t, rseq)?;
            rebuild::restore_session(&mut r, t)?;
            rebuild::set_mm(&mut r, &all, &t.mm, pid)?;
            let shared = rebuild::map_vmas(&mut r, &all, t)?;
            let (pages_id, runs) = mem::read_pagemap(&all.dir, pid as u64)?;
            let mut bytes = mem::fill(pid, &all.dir, pages_id, &runs)?;
            for s in &shared {
                let (pages_id, runs) = mem::read_shmem_pagemap(&all.dir, s.shmid)?;
                let runs = mem::runs_in_mapping(&runs, s.addr, s.len, s.offset);
                bytes += mem::fill(pid, &all.dir, pages_id, &runs)?;
            }
            rebuild::protect_shared(&mut r, &shared)?;
            tracing::debug!("pid {pid}: {bytes} bytes of memory restored");
            rebuild::restore_fds(&mut r, &all, t)?;
            rebuild::restore_fs(&mut r, &all, t)?;
            rebuild::restore_task_core(&mut r, leader)?;
            rebuild::restore_thread_core(&mut r, leader)?;
            rebuild::restore_rseq(&mut r, leader)?;
            rebuild::restore_attributes(&mut r, pid, &t.mm, leader)?;
            if let Some(q) = leader.tc.as_ref().and_then(|tc| tc.signals_s.as_ref()) {
                restore_signals::queue_shared(&mut r, pid, q)?;
            }
            if let Some(q) = leader.thread_core.as_ref().and_then(|c| c.signals_p.as_ref()) {
                restore_signals::queue_private(&mut r, pid, pid, q)?;
            }
            if let Some(creds) = leader.thread_core.as_ref().and_then(|c| c.creds.as_ref()) {
                restore_creds::restore_creds(&mut r, creds)?;
            }
            rebuild::restore_pdeath_sig(&mut r, leader)?;
            let regs = entry_to_gpregs(&info.gpregs).with_restart_applied(false);
            inj.finish_restored(&regs)?;
        }
        tracee.set_xsave(&entry_to_xsave(&info.fpregs, xsave_size()))?;
        let sigmask = leader
            .thread_core
            .as_ref()
            .and_then(|c| c.blk_sigset)
            .or(leader.tc.as_ref().map(|tc| tc.blk_sigset))
            .unwrap_or(0);
        tracee.set_sigmask(sigmask)?;
        self.tracee = Some(tracee);
        Ok(pid)
    }
}

impl Handler<Release> for RestoreTask {
    type Result = Result<(), String>;

    fn handle(&mut self, _: Release, _: &mut Context<Self>) -> Self::Result {
        match self.tracee.take() {
            Some(t) => t.detach().map_err(|e| e.to_string()),
            None => Err("release: task was not rebuilt".into()),
        }
    }
}

impl Handler<Kill> for RestoreTask {
    type Result = ();

    fn handle(&mut self, _: Kill, _: &mut Context<Self>) {
        if let Some(pid) = self.created.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            // Dropping the tracee detaches what is left; then reap the corpse.
            self.tracee = None;
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        }
    }
}
