//! The restore supervisor: reads every image first, has each task rebuilt by its actor, and
//! releases all tasks together once every one is ready. On any error, every task created so
//! far is killed: nothing half-restored is left.

mod clone;
pub mod helpers;
mod net_ns;
pub mod next_pid;
mod pid_ns;
pub mod plan;
pub mod rebuild;
pub mod task;
pub mod thread;
pub mod watchdog;

use crate::fault::Point;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::network::TreeNetns;
use crate::pool::TracerPool;
use helpers::TreeOp;
use plan::Step;
use task::{
    Adopt, CreateRoot, Die, EnterCgroupNs, FillNamespaces, Fork, Kill, Rebuild, Release,
    RestoreMemory, RestoreTask,
};

#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub images_dir: PathBuf,
    pub timeout: Duration,
    /// `--shell-job`: the tree joins criu's session and terminal.
    pub shell_job: bool,
    /// `--restore-sibling`: the root becomes criu's sibling.
    pub sibling: bool,
    pub files: criu_files::RestoreFileOptions,
    /// `--empty-ns net`, `--join-ns`, and the inherited fds an external network namespace
    /// is looked up in.
    pub ns: criu_ns::RestoreOptions,
    /// The `network-unlock` action scripts (a tree with its own network namespace).
    pub network_scripts: Option<crate::network::LockScripts>,
    /// `--manage-cgroups`, `--cgroup-root`, `--cgroup-yard`.
    pub cgroups: criu_cgroups::restore::RestoreOptions,
    /// The program run as the restore's [`watchdog::Watchdog`] (criu's own binary), which
    /// kills a half-made tree if criu dies; none runs without it.
    pub watchdog_exe: Option<PathBuf>,
}

/// Where a restore of a tree with namespaces of its own stops for the caller (CRIU runs its
/// setup-namespaces and post-setup-namespaces scripts there), with the root's pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsStage {
    /// The root exists in its new namespaces, not filled yet.
    Made,
    /// The namespaces are filled; no other task exists yet.
    Filled,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("restore: {0}")]
    Images(#[from] criu_proto::dump_images::ImagesError),
    #[error("restore: {0}")]
    Manifest(#[from] criu_proto::manifest::ManifestError),
    #[error("{0}")]
    Task(String),
    #[error("restore: {0}")]
    Unsupported(String),
    #[error("restore: {0}")]
    Files(#[from] criu_files::RestoreFilesError),
    #[error("restore: {0}")]
    Namespace(#[from] criu_ns::NsImageError),
    #[error("restore: {0}")]
    Cgroups(#[from] criu_cgroups::restore::CgroupRestoreError),
}

/// Before any task is touched: the dumps this one takes pages from (pre-dumps, through the
/// `parent` links) are checked against their manifests, and every page a task takes from them
/// is there.
fn check_page_chain(
    dir: &std::path::Path,
    images: &criu_proto::dump_images::DumpImages,
) -> Result<(), RestoreError> {
    let mut at = dir.join(criu_memory::chain::PARENT_LINK);
    for _ in 0..1024 {
        if !at.is_dir() {
            break;
        }
        if let criu_proto::manifest::Verified::Checked(n) = criu_proto::manifest::verify(&at)? {
            tracing::info!("{}: {n} images match their checksums", at.display());
        }
        at = at.join(criu_memory::chain::PARENT_LINK);
    }
    for t in images.tasks.iter().filter(|t| t.zombie.is_none()) {
        criu_memory::chain::read_chain(dir, t.pid() as u64)
            .map_err(|e| RestoreError::Unsupported(format!("pid {}: {e}", t.pid())))?;
    }
    Ok(())
}

/// Restores the tree in `req.images_dir`. `at_ns` runs at each [`NsStage`] of a tree that had
/// namespaces of its own; `before_release` runs (with the root pid) when every task is
/// rebuilt and still stopped, e.g. the post-restore scripts. Either one's error aborts the
/// restore. Returns the root pid; the tree is running.
pub fn run(
    req: &RestoreRequest,
    at_ns: impl Fn(NsStage, i32) -> Result<(), String>,
    before_release: impl FnOnce(i32) -> Result<(), String>,
) -> Result<i32, RestoreError> {
    match criu_proto::manifest::verify(&req.images_dir)? {
        criu_proto::manifest::Verified::Checked(n) => {
            tracing::info!("{n} images match their checksums")
        }
        criu_proto::manifest::Verified::Absent => tracing::info!(
            "no {} (CRIU's images have none): the images are not checked",
            criu_proto::manifest::NAME
        ),
    }
    let mut images = criu_proto::dump_images::read(&req.images_dir)?;
    check_page_chain(&req.images_dir, &images)?;
    let ns = criu_ns::Owned::of_images(&images, &req.ns)?;
    let own_root = ns.lives_in_other(criu_procfs::NsKind::Mnt);
    let mut files = criu_files::prepare(&mut images, &req.files, req.shell_job, own_root)?;
    let fresh_pid_ns = ns.owns(criu_procfs::NsKind::Pid);
    let plan = plan::creation_plan(&mut images, fresh_pid_ns).map_err(RestoreError::Unsupported)?;
    let net_lock = crate::network::RestoreLock::of_images(&images, req.network_scripts.clone());
    let own_netns = ns.owns(criu_procfs::NsKind::Net);
    // Cgroup directories before any task exists; each task's set, and the set it gets from
    // the task that makes it (criu's own for the root).
    let mut cgroups = criu_cgroups::restore::CgroupRestore::prepare(
        &req.images_dir,
        images.inventory.root_cg_set,
        &req.cgroups,
    )?;
    let cg_sets: Vec<Vec<u32>> = images
        .tasks
        .iter()
        .map(|t| {
            t.cores
                .iter()
                .map(criu_cgroups::restore::core_set)
                .collect()
        })
        .collect();
    let mut cg_now = vec![cgroups.root_set(); images.tasks.len()];
    let images = Arc::new(images);
    // Made once the root exists: the sockets criu makes for the tree live in its network
    // namespace.
    let shared = Arc::new(std::sync::OnceLock::new());
    let sibling = req.sibling;
    let timeout = req.timeout;
    let mut req_files = req.files.clone();
    // A dump made with --tcp-close restores its connections closed, as CRIU does.
    req_files.tcp_close |= images.inventory.tcp_close == Some(true);
    tracing::info!(target: "progress", phase = "restoring", tasks = images.tasks.len() as u64);
    let mut watchdog = req
        .watchdog_exe
        .as_deref()
        .map(watchdog::Watchdog::start)
        .transpose()
        .map_err(RestoreError::Task)?;
    let system = actix::System::new();
    system.block_on(async move {
        // Restored tasks run where criu may run once released; until then each is pinned to
        // its tracer's CPU.
        let release_cpus = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok();
        let mut pool = TracerPool::pinned();
        let actors: Vec<_> = (0..images.tasks.len())
            .map(|i| {
                let (images, shared) = (images.clone(), shared.clone());
                pool.start(move |_| RestoreTask::new(images, shared, i, timeout, release_cpus))
            })
            .collect();

        let result = async {
            // Tasks come to life in tree order, each made by its parent once the parent's
            // memory is back, so that pages they shared copy-on-write are shared again. Memory
            // restores run while later tasks are created.
            let mut memory = std::collections::BTreeMap::new();
            let setsid = plan.root_setsid;
            ask(
                &actors[0],
                CreateRoot {
                    sibling,
                    setsid,
                    ns: ns.clone(),
                },
            )
            .await?;
            let root = images.root().host_pid();
            if let Some(w) = &mut watchdog {
                w.watch(root)?;
            }
            // A cgroup namespace's root is where the task is when it unshares one: there
            // first, then into its own cgroups below it.
            if ns.owns(criu_procfs::NsKind::Cgroup) {
                let set = cg_sets[0].first().copied().unwrap_or(0);
                cgroups
                    .move_to_ns_root(root, set, cgroups.root_set())
                    .map_err(|e| format!("restore: pid {}: {e}", images.root().pid()))?;
                ask(&actors[0], EnterCgroupNs { ns: ns.clone() }).await?;
            }
            move_task(&mut cgroups, &images, &cg_sets, &mut cg_now, 0, None)?;
            crate::fault::boundary(Point::RestoreRoot)?;
            // The root's namespaces are filled while it is the only task in them, between the
            // caller's two stops (CRIU's setup-namespaces scripts may set up the network).
            if ns.any() {
                at_ns(NsStage::Made, root)?;
                let filled = answer(actors[0].send(FillNamespaces { ns: ns.clone() })).await?;
                files.hold_ptys(filled.ptys);
                let root_net = filled.nets.first().map(|(id, _)| *id);
                let nets = filled.nets.into_iter().collect();
                files.hold_netns(criu_files::netns::NetNamespaces::new(root_net, nets));
                at_ns(NsStage::Filled, root)?;
            }
            // The tree's paths are its own root's, reached through the root task.
            if own_root {
                req_files.root = Some(format!("/proc/{root}/root").into());
            }
            let made = ns
                .run_in_tree_ns(root, || {
                    if own_netns {
                        net_lock.lock_new_netns()?;
                    }
                    files
                        .open_shared(&images, &req_files)
                        .map_err(|e| e.to_string())
                })
                .map_err(|e| format!("restore: {e}"))?
                .map_err(|e| format!("restore: {e}"))?;
            let _ = shared.set(made);
            memory.insert(0, actors[0].send(RestoreMemory { creator: None }));
            // Then sessions and groups as planned; helpers exit, zombies die (plan.rs).
            let mut first_step = true;
            for step in &plan.steps {
                if !std::mem::take(&mut first_step) {
                    crate::fault::boundary(Point::RestoreFork)?;
                } else {
                    crate::interrupt::check()?;
                }
                let (actor, op) = match *step {
                    Step::Fork {
                        parent,
                        child,
                        pid,
                        setsid,
                        clone_parent,
                    } => {
                        if let Some(pending) = memory.remove(&parent) {
                            answer(pending).await?;
                        }
                        // Told before the fork too: should criu die while the child is
                        // made, the root dies with it (parent-death signal) and the child is
                        // nobody's descendant any more. In a pid namespace of the tree's own
                        // the init takes every task with it instead.
                        if let Some(w) = watchdog.as_mut().filter(|_| !fresh_pid_ns) {
                            w.watch(pid)?;
                        }
                        ask(&actors[parent], Fork { pid, clone_parent }).await?;
                        if let Some(w) = &mut watchdog {
                            w.watch(images.tasks[child].host_pid())?;
                        }
                        ask(&actors[child], Adopt { setsid }).await?;
                        // In its cgroups before it makes children or its memory is charged.
                        move_task(
                            &mut cgroups,
                            &images,
                            &cg_sets,
                            &mut cg_now,
                            child,
                            Some(parent),
                        )?;
                        if images.tasks[child].zombie.is_none() {
                            memory.insert(
                                child,
                                actors[child].send(RestoreMemory {
                                    creator: Some(parent),
                                }),
                            );
                        }
                        continue;
                    }
                    Step::Exit { task } => {
                        ask(&actors[task], Die).await?;
                        continue;
                    }
                    Step::Setsid { task } => (task, TreeOp::Setsid),
                    Step::JoinGroup { task, pgid } => (task, TreeOp::JoinGroup(pgid)),
                    Step::Reap { parent, pid } => (parent, TreeOp::Reap(pid)),
                };
                ask(&actors[actor], op).await?;
            }
            for pending in memory.into_values() {
                answer(pending).await?;
            }
            // File owners name tasks, which all exist now.
            let shared = shared
                .get()
                .ok_or("restore: the tree's files were not made")?;
            criu_files::after_tasks_exist(&images, shared).map_err(|e| format!("restore: {e}"))?;
            // Then every live task rebuilds itself, all at once: `send` queues the message at
            // once, so all actors work while the answers are collected in order.
            let live = actors
                .iter()
                .zip(&images.tasks)
                .filter(|(_, t)| t.zombie.is_none());
            crate::fault::boundary(Point::RestoreTasks)?;
            let rebuilds: Vec<_> = live.map(|(a, _)| a.send(Rebuild)).collect();
            let mut first_error = None;
            for r in rebuilds {
                if let Err(e) = r
                    .await
                    .map_err(|e| format!("restore: task actor is gone: {e}"))
                    .and_then(|r| r)
                {
                    first_error.get_or_insert(e);
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
            // Threads whose cgroups differ from their process's (threaded hierarchies).
            for (i, t) in images.tasks.iter().enumerate() {
                if t.zombie.is_some() {
                    continue;
                }
                for (j, &set) in cg_sets[i].iter().enumerate().skip(1) {
                    cgroups
                        .move_thread(t.host_tid(j), set, cg_now[i])
                        .map_err(|e| format!("restore: {e}"))?;
                }
            }
            // Every task has its files: remapped files are unlinked again.
            let root = images.root().host_pid();
            files.finish(root).map_err(|e| format!("restore: {e}"))?;
            ns.after_tasks_attached(root, &images.dir)
                .map_err(|e| format!("restore: {e}"))?;
            // Connections talk again once the lock goes (CRIU: after post-restore).
            shared
                .tcp_repair
                .leave()
                .map_err(|e| format!("restore: {e}"))?;
            // Every task is in its cgroups: the properties that wait for that.
            cgroups
                .set_properties()
                .map_err(|e| format!("restore: {e}"))?;
            crate::fault::boundary(Point::RestoreRebuilt)?;
            before_release(root)?;
            // As CRIU: a rule that cannot be removed does not undo a restore.
            let netns = if own_netns {
                TreeNetns::New(root)
            } else if ns.joins_own(criu_procfs::NsKind::Net) {
                TreeNetns::Joined(root)
            } else {
                TreeNetns::Host
            };
            if let Err(e) = net_lock.unlock(netns) {
                tracing::error!("restore: network unlock: {e}");
            }
            // As CRIU: a freezer state that cannot be set does not undo a restore.
            if let Err(e) = cgroups.restore_freezer_state() {
                tracing::error!("restore: {e}");
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            for a in actors.iter().rev() {
                let _ = a.send(Kill).await;
            }
            cgroups.abort();
            ns.abort();
            return Err(RestoreError::Task(e));
        }
        files.keep();
        // Complete: from here the tree outlives criu.
        if let Some(w) = watchdog {
            w.disarm();
        }
        for (a, _) in actors
            .iter()
            .zip(&images.tasks)
            .filter(|(_, t)| t.zombie.is_none())
        {
            if let Err(e) = ask(a, Release).await {
                tracing::error!("{e}");
            }
        }
        Ok(images.root().host_pid())
    })
}

/// Puts task `i` (just made by task `creator`, or by criu for the root) into its set's
/// cgroups unless it got them from its creator; a task without a set (helper, zombie) keeps
/// its creator's.
fn move_task(
    cgroups: &mut criu_cgroups::restore::CgroupRestore,
    images: &criu_proto::dump_images::DumpImages,
    sets: &[Vec<u32>],
    now: &mut [u32],
    i: usize,
    creator: Option<usize>,
) -> Result<(), String> {
    let inherited = creator.map_or(cgroups.root_set(), |c| now[c]);
    let set = sets[i].first().copied().unwrap_or(0);
    if images.tasks[i].zombie.is_some() || set == 0 {
        now[i] = inherited;
        return Ok(());
    }
    cgroups
        .move_process(images.tasks[i].host_pid(), set, inherited)
        .map_err(|e| format!("restore: pid {}: {e}", images.tasks[i].pid()))?;
    now[i] = set;
    Ok(())
}

/// The answer to a request already sent to a task actor; a dead actor is an error too.
async fn answer<M, T>(request: actix::dev::Request<RestoreTask, M>) -> Result<T, String>
where
    M: actix::Message<Result = Result<T, String>> + Send + 'static,
    T: Send + 'static,
    RestoreTask: actix::Handler<M>,
{
    request
        .await
        .map_err(|e| format!("restore: task actor is gone: {e}"))?
}

/// Sends a message to a task actor; a dead actor is an error too.
async fn ask<M>(actor: &actix::Addr<RestoreTask>, msg: M) -> Result<(), String>
where
    M: actix::Message<Result = Result<(), String>> + Send + 'static,
    RestoreTask: actix::Handler<M>,
{
    answer(actor.send(msg)).await
}
