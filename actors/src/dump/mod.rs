//! `criu dump`: a supervisor that runs the phases of one dump, and per-task actors (one per
//! process, each on a tracer thread) that seize and dump their process.
//!
//! Phases: seize the tree level by level (each task lists its children once all its threads
//! are stopped); collect every task in parallel (each writes its own core, mm, pagemap,
//! pages, fs, ids and fdinfo images); write the global images (files, pstree, inventory
//! last); then release every task as asked. On any error every task is detached and runs on,
//! and `inventory.img` is removed so that the directory does not claim a complete dump.

pub mod images;
pub mod iterative;
pub mod task;

use crate::fault::Point;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Addr;
use criu_proto::images::DumpStatsEntry;

use crate::pool::TracerPool;
use task::{Collect, DumpShared, Finish, Seized, TaskActor, TaskDone, TaskError};

pub use task::Release;

/// Runs after the images are complete and before the tasks are released (post-dump
/// scripts); an error makes the dump fail and the tasks run on.
pub type PostDumpHook = Box<dyn FnOnce() -> Result<(), String> + Send>;

pub struct DumpRequest {
    pub pid: i32,
    pub dir: PathBuf,
    /// Where `stats-dump` goes: CRIU writes it into its work dir (podman tars it from there).
    pub work_dir: PathBuf,
    pub release: Release,
    /// Bound on stopping each thread.
    pub timeout: Duration,
    pub post_dump: Option<PostDumpHook>,
    /// The network lock around TCP connections (its method goes to the inventory).
    pub network: crate::network::NetworkOptions,
    pub tcp_close: bool,
    pub files: criu_files::DumpFileOptions,
    /// What the namespaces of the tree are told (`--empty-ns net`, `--external net[..]`).
    pub ns: criu_ns::DumpOptions,
    /// `--manage-cgroups`, `--cgroup-props*`, `--cgroup-dump-controller`, `--cgroup-root`,
    /// `--cgroup-yard` (the freezer's state is filled in here).
    pub cgroups: criu_cgroups::dump::DumpOptions,
    /// `--freeze-cgroup`: freeze this cgroup before seizing, thaw it once every task is
    /// seized (it is frozen again at the end if it was frozen before).
    pub freeze_cgroup: Option<PathBuf>,
    /// `pre-dump`, `--prev-images-dir`, `--track-mem`.
    pub iterative: iterative::Iterative,
    /// `--page-server`: where the pages go instead of the images dir.
    pub page_server: Option<PageServerTarget>,
}

/// The page server a dump sends its pages to.
#[derive(Debug, Clone)]
pub struct PageServerTarget {
    pub how: PageServerLink,
    /// `--tls`: the server's name to check (`--address`) and the files.
    pub tls: Option<(String, criu_memory::tls::TlsOptions)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageServerLink {
    /// `--address ADDR --port PORT`.
    Tcp { address: String, port: u16 },
    /// `--ps-socket FD`: a socket connected already.
    Socket(i32),
}

impl PageServerTarget {
    /// Connects, before any task is touched.
    pub fn connect(&self) -> Result<criu_memory::page_server::Client, DumpError> {
        use criu_memory::page_server::Client;
        let tls = self.tls.as_ref().map(|(name, t)| (t, name.as_str()));
        match &self.how {
            PageServerLink::Tcp { address, port } => {
                Ok(Client::connect(address, *port, tls.map(|(t, _)| t))?)
            }
            PageServerLink::Socket(fd) => {
                let owned = criu_sys::fd::own_inherited(*fd)
                    .map_err(|e| DumpError::Start(format!("--ps-socket {fd}: {e}")))?;
                let stream = std::net::TcpStream::from(owned);
                Ok(Client::over(
                    stream,
                    format!("on --ps-socket {fd}"),
                    true,
                    tls,
                )?)
            }
        }
    }
}

#[derive(Debug)]
pub struct DumpReport {
    /// Tasks in pstree order.
    pub tasks: Vec<TaskDone>,
    pub stats: DumpStatsEntry,
}

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("process {0} does not exist")]
    NoProcess(i32),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error("task actor of pid {0} is gone")]
    ActorGone(i32),
    #[error("writing images: {0}")]
    Image(#[from] criu_proto::Error),
    #[error("cannot prepare {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("post-dump: {0}")]
    PostDump(String),
    #[error("dump: {0}")]
    Interrupted(String),
    #[error("dump: {0}")]
    Manifest(#[from] criu_proto::manifest::ManifestError),
    #[error("cannot start the dump: {0}")]
    Start(String),
    #[error(transparent)]
    Namespace(#[from] criu_ns::NsError),
    #[error("dump: {0}")]
    NamespaceImage(#[from] criu_ns::NsImageError),
    #[error("the root process {0} is not a session leader; consider using --shell-job")]
    NotSessionLeader(i32),
    #[error(transparent)]
    Files(#[from] criu_files::FilesError),
    #[error("dump: {0}")]
    Network(String),
    #[error("dump: {0}")]
    Cgroups(#[from] criu_cgroups::dump::CgroupDumpError),
    #[error("dump: --freeze-cgroup: {0}")]
    Freezer(#[from] criu_cgroups::freezer::FreezerError),
    #[error("dump: --prev-images-dir: {0}")]
    Chain(String),
    #[error("dump: {0}")]
    Track(#[from] criu_memory::track::TrackError),
    #[error("dump: {0}")]
    Pages(#[from] criu_memory::dump_pages::PagesDumpError),
    #[error("dump: {0}")]
    PageServer(#[from] criu_memory::page_server::PageServerError),
}

/// Dumps the tree rooted at `req.pid`. Needs no actix system of its own: it runs one.
pub fn run(req: DumpRequest) -> Result<DumpReport, DumpError> {
    if !std::path::Path::new(&format!("/proc/{}", req.pid)).exists() || req.pid <= 0 {
        return Err(DumpError::NoProcess(req.pid));
    }
    let inventory = req
        .dir
        .join(criu_proto::ImageKind::INVENTORY.file_name(None));
    // A stale inventory from an earlier dump must not make a failed one look complete.
    match std::fs::remove_file(&inventory) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(DumpError::Dir {
                path: inventory.display().to_string(),
                source,
            })
        }
    }
    // Before any task is touched. As CRIU: a root that is not its session's leader belongs to
    // a session made outside the tree (a shell's), which only --shell-job gives back.
    let sid = criu_procfs::read_stat(req.pid).map(|s| s.session).ok();
    if sid.is_some_and(|sid| sid != req.pid) && !req.files.shell_job {
        return Err(DumpError::NotSessionLeader(req.pid));
    }
    // Namespaces the tree owns and can't be dumped, or a tree that mixes them, fail here.
    // Tasks found while seizing are checked then.
    let mut ns = criu_ns::TreeNamespaces::of_root(req.pid, &req.ns)?;
    for pid in tree_from_proc(req.pid) {
        ns.check_task(pid)?;
    }
    ns.check_pid_inits()?;
    // The parent dump is checked before any task is touched, as CRIU does.
    let chain =
        iterative::Chain::prepare(&req.dir, req.iterative.clone()).map_err(DumpError::Chain)?;
    // So is the page server: one that cannot be reached fails the dump here.
    let page_server = match &req.page_server {
        Some(t) => Some(t.connect()?),
        None => None,
    };
    let system = actix::System::new();
    let result = system.block_on(supervise(req, ns, chain, page_server));
    if result.is_err() {
        let _ = std::fs::remove_file(&inventory);
    }
    result
}

/// The tree under `root` as /proc shows it now, without stopping anything (tasks may come
/// and go; the seize finds the final tree).
fn tree_from_proc(root: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        out.push(pid);
        for tid in criu_procfs::task::read_task_ids(pid).unwrap_or_default() {
            todo.extend(criu_procfs::task::read_children(pid, tid).unwrap_or_default());
        }
    }
    out
}

struct Tree {
    /// Every started actor by pid (failed seizes included, to be finished too).
    actors: BTreeMap<i32, Addr<TaskActor>>,
    /// Parent of each task (0 for the root) and its children in found order.
    parent: BTreeMap<i32, i32>,
    children: BTreeMap<i32, Vec<i32>>,
    /// Dead tasks not yet reaped: dumped from /proc only.
    zombies: std::collections::BTreeSet<i32>,
    /// What the task actors share (the file table), once made.
    shared: Option<Arc<DumpShared>>,
}

impl Tree {
    /// Depth-first, parents before children: CRIU's pstree order.
    fn order(&self, root: i32) -> Vec<i32> {
        let mut out = Vec::new();
        let mut stack = vec![root];
        while let Some(pid) = stack.pop() {
            out.push(pid);
            if let Some(c) = self.children.get(&pid) {
                stack.extend(c.iter().rev());
            }
        }
        out
    }
}

async fn supervise(
    req: DumpRequest,
    mut ns: criu_ns::TreeNamespaces,
    chain: iterative::Chain,
    page_server: Option<criu_memory::page_server::Client>,
) -> Result<DumpReport, DumpError> {
    let mut pool = TracerPool::for_this_machine();
    let mut tree = Tree {
        actors: BTreeMap::new(),
        parent: BTreeMap::new(),
        children: BTreeMap::new(),
        zombies: Default::default(),
        shared: None,
    };
    let mut net = crate::network::NetworkLock::new(req.network.clone());
    tracing::info!(target: "progress", phase = "seizing");
    let t_freeze = Instant::now();
    // A cgroup frozen before criu froze it is frozen again once the tasks are let go (unless
    // they are killed).
    let mut was_frozen = None;
    let result = dump_phases(
        &req,
        chain,
        page_server,
        &mut ns,
        &mut pool,
        &mut tree,
        &mut net,
        t_freeze,
        &mut was_frozen,
    )
    .await;
    let release = match (&result, req.release) {
        (Ok(_), r) => r,
        (Err(_), _) => Release::Run,
    };
    let mut result = match result {
        Ok(phases) => crate::fault::boundary(Point::DumpWritten)
            .map_err(DumpError::Interrupted)
            .and_then(|()| run_post_dump(req.post_dump, phases)),
        Err(e) => Err(e),
    };
    let release = if result.is_err() {
        Release::Run
    } else {
        release
    };
    // A failed dump takes back the trackers it made (those of earlier rounds stay: their
    // dump still stands).
    if result.is_err() {
        if let Some(shared) = &tree.shared {
            let made =
                std::mem::take(&mut *shared.chain.made.lock().unwrap_or_else(|e| e.into_inner()));
            for (pid, fd) in made {
                if let Some(a) = tree.actors.get(&pid) {
                    match a.send(task::CloseTracker(fd)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::warn!("pid {pid}: closing tracker fd {fd}: {e}"),
                        Err(_) => tracing::warn!("pid {pid}: its actor is gone"),
                    }
                }
            }
        }
    }
    // A tree that runs on has its connections released. One that is killed or left stopped
    // keeps them locked for the restore, and back in repair mode, so that closing them sends
    // nothing; if that fails, the dump fails and the tree runs on.
    let mut release = release;
    if let Some(shared) = &tree.shared {
        let mut files = shared.files.lock().unwrap_or_else(|e| e.into_inner());
        if release != Release::Run {
            if let Err(e) = files.inet.hold() {
                result = Err(DumpError::Network(format!(
                    "cannot put a connection back in repair mode: {e}"
                )));
                release = Release::Run;
            }
        }
        if release == Release::Run {
            net.release(&mut files);
        }
    }
    // From here criu's own undo is done, or the lock stays for the restore.
    net.dismiss_keeper();
    // Release everything, also on error: every request is queued before any is awaited.
    let pending: Vec<_> = tree
        .actors
        .iter()
        .map(|(&pid, a)| (pid, a.send(Finish(release))))
        .collect();
    for (pid, p) in pending {
        match p.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("releasing {pid}: {e}"),
            Err(_) => tracing::warn!("releasing {pid}: its actor is gone"),
        }
    }
    drop(pool);
    // Frozen until the tasks are let go (or killed), as CRIU counts it; a killed task's
    // memory teardown below is not the tree's frozen time.
    let frozen_time = t_freeze.elapsed().as_micros() as u32;
    if release == Release::Kill {
        wait_dead(tree.actors.keys().copied(), req.timeout).await;
    }
    // As CRIU: a tree killed by the dump leaves its cgroup thawed (a restore into a frozen
    // cgroup could not rebuild its tasks; the restore freezes it again at its end).
    if let Some(f) = was_frozen.filter(|_| release != Release::Kill) {
        if let Err(e) = f.freeze(req.timeout) {
            tracing::error!("dump: cannot freeze {} again: {e}", f.dir().display());
        }
    }
    if let Ok(report) = &mut result {
        report.stats.frozen_time = frozen_time;
        if req.iterative.pre_dump {
            let shared = tree.shared.as_ref().ok_or(DumpError::ActorGone(req.pid))?;
            copy_deferred(&req.dir, shared, report)?;
        }
        images::write_stats(&req.work_dir, &report.stats)?;
    }
    result
}

/// Waits until every killed task is a zombie or gone: a runtime that asked for the dump
/// checks right after the answer that its container stopped (runc: "container still running").
async fn wait_dead(pids: impl Iterator<Item = i32>, timeout: std::time::Duration) {
    let deadline = std::time::Instant::now() + timeout;
    for pid in pids {
        while criu_procfs::read_stat(pid).is_ok_and(|s| !matches!(s.state, 'Z' | 'X')) {
            if std::time::Instant::now() > deadline {
                tracing::warn!("dump: pid {pid} still runs after SIGKILL");
                return;
            }
            actix::clock::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
}

fn run_post_dump(hook: Option<PostDumpHook>, report: DumpReport) -> Result<DumpReport, DumpError> {
    match hook {
        Some(h) => h().map(|()| report).map_err(DumpError::PostDump),
        None => Ok(report),
    }
}

#[allow(clippy::too_many_arguments)]
async fn dump_phases(
    req: &DumpRequest,
    chain: iterative::Chain,
    page_server: Option<criu_memory::page_server::Client>,
    ns: &mut criu_ns::TreeNamespaces,
    pool: &mut TracerPool,
    tree: &mut Tree,
    net: &mut crate::network::NetworkLock,
    t_freeze: Instant,
    was_frozen: &mut Option<criu_cgroups::freezer::Freezer>,
) -> Result<DumpReport, DumpError> {
    // 0. With --freeze-cgroup: freeze, seize and interrupt every task of the frozen tree,
    // thaw (on every path); the interrupted tasks stop before running their own code.
    let mut cg_opts = req.cgroups.clone();
    let mut interrupted = BTreeMap::new();
    if let Some(dir) = &req.freeze_cgroup {
        let (addrs, frozen_before) = seize_frozen(dir, req, pool).await?;
        interrupted = addrs;
        cg_opts.freezer_state = Some(if frozen_before { "FROZEN" } else { "THAWED" }.into());
        if frozen_before {
            *was_frozen = Some(criu_cgroups::freezer::Freezer::open(dir)?);
        }
    }
    let mut cgroups = criu_cgroups::dump::CgroupDump::new(cg_opts)?;

    // 1. Seize, level by level.
    let mut level = vec![(req.pid, 0)];
    while !level.is_empty() {
        let mut asked = Vec::with_capacity(level.len());
        for &(pid, ppid) in &level {
            let timeout = req.timeout;
            let addr = match interrupted.remove(&pid) {
                Some(addr) => addr,
                None => pool.start(move |_| TaskActor::seize(pid, timeout)),
            };
            tree.parent.insert(pid, ppid);
            if ppid != 0 {
                tree.children.entry(ppid).or_default().push(pid);
            }
            asked.push((pid, addr.send(Seized)));
            tree.actors.insert(pid, addr);
        }
        let mut next = Vec::new();
        for (pid, outcome) in answers(asked).await? {
            if outcome.zombie {
                tree.zombies.insert(pid);
            }
            next.extend(
                outcome
                    .children
                    .into_iter()
                    .filter(|c| !tree.parent.contains_key(c))
                    .map(|c| (c, pid)),
            );
        }
        level = next;
    }
    // Interrupted in the frozen cgroup but not found in the tree (gone meanwhile).
    for (pid, addr) in std::mem::take(&mut interrupted) {
        if let Ok(Err(e)) = addr.send(Finish(Release::Run)).await {
            tracing::warn!("releasing {pid}: {e}");
        }
    }
    let freezing_time = t_freeze.elapsed().as_micros() as u32;
    let order = tree.order(req.pid);
    tracing::info!("seized {} task(s) in {} us", order.len(), freezing_time);
    tracing::info!(target: "progress", phase = "dumping", tasks = order.len() as u64);

    crate::fault::boundary(Point::DumpSeized).map_err(DumpError::Interrupted)?;
    // 2. Ids, then every task in parallel.
    let mut alloc = criu_ns::ids::IdAllocator::new();
    let me = std::process::id() as i32;
    let root_ids = alloc.task(me).map_err(|source| TaskError::Proc {
        pid: me,
        what: "namespaces",
        source,
    })?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut files = req.files.clone();
    // The tree's paths are its own root's, reached through the root task.
    if ns.owns(criu_procfs::NsKind::Mnt) {
        files.root = Some(format!("/proc/{}/root", ns.root_pid()).into());
    }
    // A pre-dump takes memory only, and the tree keeps its network.
    if req.iterative.pre_dump {
    } else if ns.owns(criu_procfs::NsKind::Net) {
        net.lock_netns(ns.root_pid()).map_err(DumpError::Network)?;
    } else if req.files.tcp.established {
        net.lock_tree(&order).map_err(DumpError::Network)?;
    }
    files.tcp.guard = Some(net.guard());
    let mut table = criu_files::FileTable::for_dump(files, root_ids);
    if ns.owns(criu_procfs::NsKind::Net) {
        table.unix.net_of = Some(ns.root_pid());
        table.inet.set_tree_netns(ns.root_pid()).map_err(|e| {
            DumpError::Start(format!("pid {}: its network namespace: {e}", ns.root_pid()))
        })?;
    }
    let shared = Arc::new(DumpShared {
        dir: req.dir.clone(),
        files: Mutex::new(table),
        shmem: Mutex::new(Default::default()),
        zero_pfn: criu_memory::dump_pages::zero_page_pfn(),
        copy_threads: (threads / order.len().max(1)).max(1),
        seccomp: Default::default(),
        chain,
        page_server: page_server.map(Mutex::new),
    });
    tree.shared = Some(shared.clone());
    let mut asked = Vec::with_capacity(order.len());
    let mut fd_tables = criu_files::FdTables::default();
    for &pid in &order {
        ns.check_task(pid)?;
    }
    ns.check_pid_inits()?;
    let pids = ns.pid_view();
    // Cgroup sets in pstree order, each leader before its threads (CRIU's numbering).
    let mut cg_sets = BTreeMap::new();
    for &pid in order.iter().filter(|p| !tree.zombies.contains(p)) {
        let mut tids = criu_procfs::task::read_task_ids(pid).map_err(|source| TaskError::Proc {
            pid,
            what: "threads",
            source,
        })?;
        tids.sort_by_key(|&t| (t != pid, t));
        let mut sets = BTreeMap::new();
        for tid in tids {
            // The root in a cgroup namespace of its own: its cgroups as seen inside give the
            // namespace's root.
            let inside = if pid == req.pid && ns.owns(criu_procfs::NsKind::Cgroup) {
                Some(cgroup_seen_inside(pid, tid)?)
            } else {
                None
            };
            sets.insert(tid, cgroups.thread_seen(pid, tid, inside.as_deref())?);
        }
        cg_sets.insert(pid, sets);
    }
    // Memory trackers first, in every task, before any fd table is listed (see `Track`).
    if shared.chain.active() {
        let asked: Vec<_> = order
            .iter()
            .filter_map(|&pid| {
                let addr = tree.actors.get(&pid)?;
                let track = task::Track {
                    shared: shared.clone(),
                    pids,
                };
                Some((pid, addr.send(track)))
            })
            .collect();
        answers(asked).await?;
    }
    // Every task's ids first: the files domain names the network namespace of each socket.
    let mut all_ids = Vec::with_capacity(order.len());
    for &pid in &order {
        let mut ids = if tree.zombies.contains(&pid) {
            Default::default()
        } else {
            alloc.task(pid).map_err(|source| TaskError::Proc {
                pid,
                what: "namespaces",
                source,
            })?
        };
        let mut parent_dumps_fds = false;
        if !tree.zombies.contains(&pid) {
            let parent = tree.parent.get(&pid).copied();
            if let Some(files_id) = fd_tables.shared_with_parent(pid, parent, ids.files_id)? {
                ids.files_id = files_id;
                parent_dumps_fds = true;
            }
        }
        all_ids.push((ids, parent_dumps_fds));
    }
    let root_task_ids = all_ids.first().map(|(ids, _)| *ids);
    let net_ids: BTreeMap<u64, u32> = alloc.numbered(criu_procfs::NsKind::Net).collect();
    {
        let mut t = shared.files.lock().unwrap_or_else(|e| e.into_inner());
        t.tree_ns_ids = root_task_ids.unwrap_or_default();
        t.netns_ids = net_ids.clone();
    }
    for (i, (&pid, &(ids, parent_dumps_fds))) in order.iter().zip(&all_ids).enumerate() {
        let addr = tree.actors.get(&pid).ok_or(DumpError::ActorGone(pid))?;
        asked.push((
            pid,
            addr.send(Collect {
                shared: shared.clone(),
                ids,
                pages_id: i as u32 + 1,
                parent_dumps_fds,
                pids,
                own_ipc_ns: ns.owns(criu_procfs::NsKind::Ipc),
                cg_sets: cg_sets.remove(&pid).unwrap_or_default(),
            }),
        ));
    }
    let done: Vec<TaskDone> = answers(asked).await?.into_iter().map(|(_, d)| d).collect();

    crate::fault::boundary(Point::DumpCollected).map_err(DumpError::Interrupted)?;
    shared.chain.write_records(&req.dir)?;
    if req.iterative.pre_dump {
        // The pages are copied once the tree runs again (see `copy_deferred`).
        let stats = DumpStatsEntry {
            freezing_time,
            shpages_written: Some(0),
            ..Default::default()
        };
        return Ok(DumpReport { tasks: done, stats });
    }

    // 3. Shared memory, once per object.
    let mut shpages = 0u64;
    let mut objects = std::mem::take(&mut *shared.shmem.lock().unwrap_or_else(|e| e.into_inner()));
    let memfds = shared
        .files
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .memfds
        .take_contents();
    objects.extend(memfds);
    for (k, (ino, (file, size))) in objects.into_iter().enumerate() {
        let pages_id = (order.len() + 1 + k) as u32;
        shpages +=
            criu_memory::dump_shmem::dump_shmem_to(shared.pages_to(), ino, pages_id, &file, size)
                .map_err(|e| {
                DumpError::Task(TaskError::Other {
                    pid: req.pid,
                    what: e.to_string(),
                })
            })?;
    }

    // Every page is sent: the page server has written its images once it answers.
    shared.close_page_server()?;

    crate::fault::boundary(Point::DumpShared).map_err(DumpError::Interrupted)?;
    // 4. Global images, the inventory last.
    let mut table = shared.files.lock().unwrap_or_else(|e| e.into_inner());
    let tree_pids: std::collections::BTreeSet<i32> = order.iter().copied().collect();
    shared.seccomp.write(&req.dir)?;
    criu_files::write_images(
        &mut table,
        &req.dir,
        &tree_pids,
        req.release != Release::Kill,
    )?;
    let held_tuns = std::mem::take(&mut table.tun.held);
    drop(table);
    if let Some(ids) = &root_task_ids {
        criu_ns::dump_images(ns, ids, &net_ids, &held_tuns, &req.dir)?;
    }
    images::write_pstree(&req.dir, &done, &tree.parent)?;
    let dumped = done.iter().map(|d| criu_ns::pid::DumpedPids {
        host: d.host_pid,
        pid: d.pid,
        threads: &d.pid_levels,
    });
    criu_ns::pid::dump_levels(ns, dumped, &req.dir)?;
    cgroups.write(&req.dir)?;
    images::write_inventory(
        &req.dir,
        root_ids,
        &req.network,
        req.tcp_close,
        cgroups.criu_set(),
    )?;
    // Last, over every image: a restore checks it before it touches anything.
    let hashed: std::collections::BTreeMap<String, u128> =
        done.iter().filter_map(|d| d.pages_image.clone()).collect();
    let listed = criu_proto::manifest::write(&req.dir, &hashed)?;
    tracing::info!("{listed} images listed in {}", criu_proto::manifest::NAME);

    let mut stats = DumpStatsEntry {
        freezing_time,
        shpages_written: Some(shpages),
        ..Default::default()
    };
    add_page_counts(&mut stats, &done);
    Ok(DumpReport { tasks: done, stats })
}

fn add_page_counts(stats: &mut DumpStatsEntry, done: &[TaskDone]) {
    for d in done {
        stats.pages_scanned += d.pages.scanned;
        stats.pages_written += d.pages.written;
        stats.pages_skipped_parent += d.pages.skipped_parent;
        stats.memdump_time += d.pages.scan_us as u32;
        stats.memwrite_time += d.pages.write_us as u32;
    }
}

/// A pre-dump, once the tree runs again: every task's planned pages copied (a page changed
/// meanwhile is one its tracker saw written: the next dump takes it again), then the
/// manifest.
fn copy_deferred(
    dir: &std::path::Path,
    shared: &DumpShared,
    report: &mut DumpReport,
) -> Result<(), DumpError> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    tracing::info!(target: "progress", phase = "writing");
    let mut hashed = BTreeMap::new();
    for d in report.tasks.iter_mut() {
        let Some(deferred) = d.deferred.take() else {
            continue;
        };
        d.pages = criu_memory::dump_pages::write_pages(
            shared.pages_to(),
            (d.host_pid, d.pid),
            deferred.pages_id,
            &deferred.plan,
            threads,
            true,
        )?;
        if let Some(h) = d.pages.hash {
            let name = criu_proto::ImageKind::PAGES.file_name(Some(u64::from(deferred.pages_id)));
            hashed.insert(name, h);
        }
    }
    add_page_counts(&mut report.stats, &report.tasks);
    shared.close_page_server()?;
    criu_proto::manifest::write(dir, &hashed)?;
    Ok(())
}

/// `/proc/PID/task/TID/cgroup` read by a thread of criu that joined the task's cgroup
/// namespace: the paths the task itself sees.
fn cgroup_seen_inside(pid: i32, tid: i32) -> Result<String, DumpError> {
    let path = format!("/proc/{pid}/task/{tid}/cgroup");
    let fail = |what: String| {
        DumpError::Task(TaskError::Other {
            pid,
            what: format!("cgroups seen inside its cgroup namespace: {what}"),
        })
    };
    criu_ns::enter::in_namespaces_of(pid, &[criu_procfs::NsKind::Cgroup], || {
        std::fs::read_to_string(&path)
    })
    .map_err(|e| fail(e.to_string()))?
    .map_err(|e| fail(format!("cannot read {path}: {e}")))
}

/// `--freeze-cgroup`: freezes `dir` (unless it is frozen already), then seizes and
/// interrupts every task of the tree (frozen, it cannot change), each on its tracer thread,
/// then thaws, whatever happened. Returns the actors by pid and whether the cgroup was frozen
/// before.
async fn seize_frozen(
    dir: &std::path::Path,
    req: &DumpRequest,
    pool: &mut TracerPool,
) -> Result<(BTreeMap<i32, Addr<TaskActor>>, bool), DumpError> {
    let freezer = criu_cgroups::freezer::Freezer::open(dir)?;
    let frozen_before = freezer.is_frozen()?;
    // Thaws the cgroup if criu dies before it does; dropped once it is thawed.
    let mut keeper: Option<criu_tracee::ThawKeeper> = None;
    if !frozen_before {
        keeper = Some(
            criu_tracee::ThawKeeper::start(&freezer)
                .map_err(|e| DumpError::Start(e.to_string()))?,
        );
        freezer.freeze(req.timeout)?;
        criu_tracee::fault::frozen();
    }
    tracing::info!("dump: {} frozen", dir.display());
    let mut actors = BTreeMap::new();
    let mut asked = Vec::new();
    // Each task's actor starts as soon as the walk finds it, so that seizes and the walk
    // overlap (the tree cannot change while frozen).
    let mut todo = vec![req.pid];
    while let Some(pid) = todo.pop() {
        let timeout = req.timeout;
        let addr = pool.start(move |_| TaskActor::interrupt_frozen(pid, timeout));
        // Answered once the actor exists, that is once its threads are interrupted.
        asked.push(addr.send(task::Ping));
        actors.insert(pid, addr);
        for tid in criu_procfs::task::read_task_ids(pid).unwrap_or_default() {
            todo.extend(criu_procfs::task::read_children(pid, tid).unwrap_or_default());
        }
    }
    for a in asked {
        let _ = a.await;
    }
    let thawed = freezer.thaw();
    drop(keeper);
    tracing::info!("dump: {} thawed", dir.display());
    if let Err(e) = thawed {
        for (pid, addr) in actors {
            if let Ok(Err(e)) = addr.send(Finish(Release::Run)).await {
                tracing::warn!("releasing {pid}: {e}");
            }
        }
        return Err(e.into());
    }
    Ok((actors, frozen_before))
}

/// Collects the answers of requests already sent to task actors (they work meanwhile), in
/// order; the first failure is the result once every answer is in.
async fn answers<T, R>(asked: Vec<(i32, R)>) -> Result<Vec<(i32, T)>, DumpError>
where
    R: std::future::Future<Output = Result<Result<T, TaskError>, actix::MailboxError>>,
{
    let mut out = Vec::with_capacity(asked.len());
    let mut first_error = None;
    for (pid, request) in asked {
        match request.await {
            Ok(Ok(v)) => out.push((pid, v)),
            Ok(Err(e)) => {
                first_error.get_or_insert(DumpError::Task(e));
            }
            Err(_) => {
                first_error.get_or_insert(DumpError::ActorGone(pid));
            }
        }
    }
    first_error.map_or(Ok(out), Err)
}
