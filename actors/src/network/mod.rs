//! The network lock of a dump (CRIU's): TCP connections are kept off the network from before
//! they are read until they are restored. A tree in the host's network namespace has its
//! connections locked in one batch before any is read (one missed then, as its socket is
//! read); a tree with its own namespace has the whole namespace locked before any socket is
//! read (with the `network-lock` scripts). When the dump fails or the tree runs on, the lock
//! goes; a tree that is killed keeps it, and its connections go back into repair mode first.
//! When criu dies instead, its [`keeper`] takes the connections out of repair mode and the
//! lock away.

pub mod keeper;

use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};

use criu_netdev::lock::{self, Conn, Method};

/// What the orchestrator is told about the lock.
#[derive(Clone)]
pub struct NetworkOptions {
    pub method: Method,
    /// Names the lock (the nftables table) so that restore finds it; goes to the inventory.
    pub run_id: String,
    /// The `network-lock`/`network-unlock` action scripts, run for a tree with its own
    /// network namespace, as CRIU does.
    pub scripts: Option<LockScripts>,
    /// The [`keeper`] program (criu's own binary); None: no keeper.
    pub keeper_exe: Option<std::path::PathBuf>,
}

/// Runs the `network-lock` (true) or `network-unlock` (false) action scripts.
#[derive(Clone)]
pub struct LockScripts(pub Arc<dyn Fn(bool) -> Result<(), String> + Send + Sync>);

impl std::fmt::Debug for LockScripts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockScripts")
    }
}

impl std::fmt::Debug for NetworkOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NetworkOptions({:?}, {})", self.method, self.run_id)
    }
}

/// The lock as taken by one dump.
pub struct NetworkLock {
    opts: NetworkOptions,
    /// The root of a tree with its own network namespace, once that namespace is locked.
    netns_of: Option<i32>,
    /// Connections locked so far.
    locked: Arc<Mutex<Vec<Conn>>>,
    /// Whether the namespace of `netns_of` was locked (it had connections).
    netns_locked: bool,
    /// Undoes the lock and repair mode if criu dies; started at the first change.
    keeper: Arc<keeper::KeeperSlot>,
}

/// Every TCP connection (local, remote) held by `pids` (with `whole_ns`, every one of the
/// namespace), as sock_diag lists them in the calling thread's network namespace; a closed
/// one that sock_diag does not list is left to the files domain.
fn connections_of(pids: &[i32], whole_ns: bool) -> Result<Vec<Conn>, String> {
    use std::os::unix::fs::MetadataExt;
    let mut inodes = std::collections::HashSet::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(m) = std::fs::metadata(fd.path()) {
                if m.mode() & libc::S_IFMT == libc::S_IFSOCK {
                    inodes.insert(m.ino() as u32);
                }
            }
        }
    }
    let mut out = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        let list = criu_files::inet::diag::list(family, libc::IPPROTO_TCP)
            .map_err(|e| format!("sock_diag: {e}"))?;
        out.extend(
            list.iter()
                .filter(|(ino, d)| {
                    (whole_ns || inodes.contains(ino))
                        && criu_files::inet::is_connection(
                            u32::from(d.state),
                            u32::from(d.dst.port()),
                        )
                })
                .map(|(_, d)| Conn {
                    local: d.src,
                    remote: d.dst,
                }),
        );
    }
    Ok(out)
}

impl NetworkLock {
    pub fn new(opts: NetworkOptions) -> Self {
        let keeper = Arc::new(keeper::KeeperSlot::new(opts.keeper_exe.clone()));
        NetworkLock {
            opts,
            netns_of: None,
            locked: Arc::default(),
            netns_locked: false,
            keeper,
        }
    }

    /// A tree with its own network namespace (root `pid`): the whole namespace is locked.
    pub fn lock_netns(&mut self, pid: i32) -> Result<(), String> {
        if let Some(run) = &self.opts.scripts {
            (run.0)(true).map_err(|e| format!("network-lock script: {e}"))?;
        }
        self.netns_of = Some(pid);
        // Only TCP connections need the traffic held; a namespace without any is left
        // untouched (the lock's chains would stay behind in it as empty ones).
        let (method, run_id) = (self.opts.method, self.opts.run_id.clone());
        let in_netns = |work: &(dyn Fn() -> Result<bool, String> + Sync)| {
            criu_ns::enter::in_namespaces_of(pid, &[criu_procfs::NsKind::Net], work)
                .map_err(|e| e.to_string())
                .and_then(|r| r)
                .map_err(|e| format!("network lock of pid {pid}'s namespace: {e}"))
        };
        let has_connections = in_netns(&|| Ok(!connections_of(&[pid], true)?.is_empty()))?;
        let locked = has_connections && method != Method::Skip && {
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
                .map_err(|e| format!("network lock: cannot open /proc/{pid}/ns/net: {e}"))?;
            let word = keeper::Word::Netns {
                method,
                run_id: run_id.clone(),
            };
            self.keeper.tell(&word, Some(ns.as_fd()))?;
            in_netns(&|| {
                lock::lock_netns(method, &run_id)
                    .map(|()| true)
                    .map_err(|e| e.to_string())
            })?
        };
        self.netns_locked = locked;
        Ok(())
    }

    /// A tree in the host's namespace (`pids`, frozen): its connections are locked in one
    /// batch before any is read, instead of one by one.
    pub fn lock_tree(&mut self, pids: &[i32]) -> Result<(), String> {
        if self.opts.method == Method::Skip {
            return Ok(());
        }
        let conns = connections_of(pids, false)?;
        if conns.is_empty() {
            return Ok(());
        }
        for conn in &conns {
            self.keeper
                .tell(&conn_word(self.opts.method, &self.opts.run_id, conn), None)?;
        }
        lock::lock_connections(self.opts.method, &self.opts.run_id, &conns)
            .map_err(|e| e.to_string())?;
        tracing::info!("locked {} TCP connection(s)", conns.len());
        self.locked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(conns);
        Ok(())
    }

    /// What the files domain calls before a connection enters repair mode: the keeper gets a
    /// copy of the socket and, in the host's namespace, the connection is locked.
    pub fn guard(&self) -> criu_files::inet::dump::ConnGuard {
        let per_connection = self.netns_of.is_none() && self.opts.method != Method::Skip;
        let (locked, keeper) = (self.locked.clone(), self.keeper.clone());
        let (method, run_id) = (self.opts.method, self.opts.run_id.clone());
        let f = move |c: &criu_files::inet::dump::Entering<'_>| {
            let conn = Conn {
                local: c.local,
                remote: c.remote,
            };
            let seen = || {
                locked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&conn)
            };
            if per_connection && !seen() {
                keeper.tell(&conn_word(method, &run_id, &conn), None)?;
                lock::lock_connections(method, &run_id, std::slice::from_ref(&conn))
                    .map_err(|e| e.to_string())?;
                locked.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
            }
            let word = keeper::Word::Repair {
                reuseaddr: c.reuseaddr,
            };
            keeper.tell(&word, Some(c.sock))
        };
        criu_files::inet::dump::ConnGuard(Arc::new(f))
    }

    /// criu has undone what it had to, or the dump stands (the lock stays for the restore):
    /// the keeper goes without undoing anything.
    pub fn dismiss_keeper(&self) {
        self.keeper.dismiss();
    }

    /// The dump failed or the tree runs on: the connections talk again, the lock goes.
    pub fn release(&mut self, table: &mut criu_files::FileTable) {
        let resumed = table.inet.resume();
        if !resumed.is_empty() {
            tracing::info!("{} TCP connection(s) released", resumed.len());
        }
        let conns = std::mem::take(&mut *self.locked.lock().unwrap_or_else(|e| e.into_inner()));
        if !conns.is_empty() {
            if let Err(e) = lock::unlock_connections(self.opts.method, &self.opts.run_id, &conns) {
                tracing::error!("network unlock: {e}");
            }
        }
        if let Some(pid) = self.netns_of.take() {
            let (method, run_id) = (self.opts.method, self.opts.run_id.clone());
            let undone = criu_ns::enter::in_namespaces_of(pid, &[criu_procfs::NsKind::Net], || {
                lock::unlock_netns(method, &run_id)
            });
            match undone {
                _ if !std::mem::take(&mut self.netns_locked) => {}
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("network unlock: {e}"),
                Err(e) => tracing::error!("network unlock of pid {pid}'s namespace: {e}"),
            }
            if let Some(run) = &self.opts.scripts {
                if let Err(e) = (run.0)(false) {
                    tracing::error!("network-unlock script: {e}");
                }
            }
        }
    }
}

/// CRIU's numbers for the lock method in the inventory.
pub fn inventory_method(m: Method) -> u32 {
    match m {
        Method::Iptables => 0,
        Method::Nftables => 1,
        Method::Skip => 2,
    }
}

/// The method an inventory names (CRIU's numbers; iptables when absent).
pub fn method_of_inventory(n: Option<u32>) -> Method {
    match n {
        Some(1) => Method::Nftables,
        Some(2) => Method::Skip,
        _ => Method::Iptables,
    }
}

/// What tells the keeper that `conn` is about to be locked.
fn conn_word(method: Method, run_id: &str, conn: &Conn) -> keeper::Word {
    keeper::Word::Conn {
        method,
        run_id: run_id.to_string(),
        conn: conn.clone(),
    }
}

/// A new run id, a UUID as CRIU makes one.
pub fn new_run_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| format!("{:x}", std::process::id()))
}

/// The restore half: the connections come back in repair mode behind the lock the dump left
/// (a tree with its own network namespace gets its new namespace locked first), leave repair
/// mode once every task holds them, and the lock goes just before the tree runs.
pub struct RestoreLock {
    opts: NetworkOptions,
    conns: Vec<Conn>,
}

/// Where the restored tree's network is, for its unlock (root pids as criu sees them).
#[derive(Debug, Clone, Copy)]
pub enum TreeNetns {
    /// criu's own.
    Host,
    /// A namespace the restore made.
    New(i32),
    /// A namespace the dump locked, joined (`--join-ns net`) rather than made.
    Joined(i32),
}

impl RestoreLock {
    /// The lock of the dump in `images`; `scripts` as at dump. The method and run id are the
    /// dump's (the inventory's), as in CRIU.
    pub fn of_images(
        images: &criu_proto::dump_images::DumpImages,
        scripts: Option<LockScripts>,
    ) -> Self {
        let inv = &images.inventory;
        // Connections dumped with --tcp-close were never locked.
        let conns = criu_files::inet::restore::connections(images)
            .into_iter()
            .filter(|_| inv.tcp_close != Some(true))
            .map(|(local, remote)| Conn { local, remote })
            .collect();
        RestoreLock {
            opts: NetworkOptions {
                method: method_of_inventory(inv.network_lock_method),
                run_id: inv.dump_criu_run_id.clone().unwrap_or_default(),
                scripts,
                keeper_exe: None,
            },
            conns,
        }
    }

    /// In the tree's new network namespace, before any socket is made.
    pub fn lock_new_netns(&self) -> Result<(), String> {
        if self.conns.is_empty() {
            return Ok(());
        }
        lock::lock_netns(self.opts.method, &self.opts.run_id).map_err(|e| e.to_string())
    }

    /// Unlocks: the tree's new namespace, or one it joined that the dump may have left locked
    /// (a lock is there whenever the namespace had connections, the tree's or not), or the
    /// dumped connections in the host's.
    pub fn unlock(&self, netns: TreeNetns) -> Result<(), String> {
        let in_ns = match netns {
            TreeNetns::New(pid) => Some((pid, !self.conns.is_empty())),
            TreeNetns::Joined(pid) => Some((pid, true)),
            TreeNetns::Host => None,
        };
        match in_ns {
            Some((pid, locked)) => {
                let (method, run_id) = (self.opts.method, self.opts.run_id.clone());
                if locked {
                    criu_ns::enter::in_namespaces_of(pid, &[criu_procfs::NsKind::Net], || {
                        lock::unlock_netns(method, &run_id)
                    })
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                }
                if let Some(run) = &self.opts.scripts {
                    (run.0)(false).map_err(|e| format!("network-unlock script: {e}"))?;
                }
                Ok(())
            }
            None if self.conns.is_empty() => Ok(()),
            None => lock::unlock_connections(self.opts.method, &self.opts.run_id, &self.conns)
                .map_err(|e| e.to_string()),
        }
    }
}
