//! `criu dump`: checkpoint a process tree into the images dir.

use std::path::Path;
use std::time::Duration;

use criu_actors::dump::{self, DumpRequest, Release};
use criu_actors::network::{LockScripts, NetworkOptions};
use criu_files::DumpFileOptions;
use criu_netdev::lock::Method;

use crate::app::Dirs;
use crate::cli::options::{FinalState, NetworkLock};
use crate::cli::values::cpu_cap;
use crate::cli::Options;
use crate::scripts::{Action, ActionScripts};

/// `--network-lock` (iptables when not given, as CRIU).
pub fn lock_method(o: &Options) -> Method {
    match o.network_lock {
        None | Some(NetworkLock::Iptables) => Method::Iptables,
        Some(NetworkLock::Nftables) => Method::Nftables,
        Some(NetworkLock::Skip) => Method::Skip,
    }
}

/// The `network-lock` and `network-unlock` action scripts, with the tree's root pid.
pub fn lock_scripts(scripts: &std::sync::Arc<ActionScripts>, pid: Option<i32>) -> LockScripts {
    let scripts = scripts.clone();
    LockScripts(std::sync::Arc::new(move |lock| {
        let action = if lock {
            Action::NetworkLock
        } else {
            Action::NetworkUnlock
        };
        scripts.run(action, pid).map_err(|e| e.to_string())
    }))
}

/// Reports an error (the logger copies errors to stderr when the log is a file).
fn fail(message: &str) -> i32 {
    tracing::error!("{message}");
    tracing::error!("Dumping FAILED.");
    1
}

pub fn run(o: &Options, dirs: &Dirs) -> i32 {
    match dump(o, dirs) {
        Ok(()) => 0,
        Err(e) => fail(&e),
    }
}

/// `criu pre-dump`: the tree's memory while it runs on (see `iterative`).
pub fn run_pre(o: &Options, dirs: &Dirs) -> i32 {
    match pre_dump(o, dirs) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            tracing::error!("Pre-dumping FAILED.");
            1
        }
    }
}

/// Dumps the tree of `-t` into the images dir.
pub fn dump(o: &Options, dirs: &Dirs) -> Result<(), String> {
    dump_as(o, dirs, false)
}

pub fn pre_dump(o: &Options, dirs: &Dirs) -> Result<(), String> {
    dump_as(o, dirs, true)
}

fn dump_as(o: &Options, dirs: &Dirs, pre_dump: bool) -> Result<(), String> {
    let _armed = criu_actors::interrupt::arm();
    let images = dirs.images.as_path();
    let Some(pid) = o.tree else {
        return Err("Tree id is not specified (use -t PID)".into());
    };
    let scripts = match ActionScripts::new(&o.action_scripts, images) {
        Ok(s) => std::sync::Arc::new(s),
        Err(e) => return Err(e.to_string()),
    };
    if let Err(e) = scripts.run(Action::PreDump, Some(pid)) {
        return Err(format!("Pre dump script failed: {e}"));
    }
    if o.cpu_cap & cpu_cap::IMAGE != 0 && crate::commands::cpuinfo::dump(images) != 0 {
        return Err("cannot write the cpuinfo image".into());
    }
    let release = match o.final_state {
        _ if pre_dump => Release::Run,
        FinalState::Dead => Release::Kill,
        FinalState::Running => Release::Run,
        FinalState::Stopped => Release::Stop,
    };
    let page_server = page_server_target(o)?;
    let asked = super::request_only::current();
    let pidfd_store = asked.pidfd_store;
    let network = NetworkOptions {
        method: lock_method(o),
        run_id: criu_actors::network::new_run_id(),
        scripts: Some(lock_scripts(&scripts, Some(pid))),
        keeper_exe: Some("/proc/self/exe".into()),
    };
    let req = DumpRequest {
        pid,
        dir: images.to_path_buf(),
        work_dir: dirs.work.clone(),
        release,
        timeout: Duration::from_secs(u64::from(o.timeout.max(1))),
        // A pre-dump runs the pre-dump script only, as CRIU's.
        post_dump: (!pre_dump).then(|| -> dump::PostDumpHook {
            Box::new(move || {
                scripts
                    .run(Action::PostDump, Some(pid))
                    .map_err(|e| e.to_string())
            })
        }),
        network,
        ns: criu_ns::DumpOptions {
            empty_net: o.empty_ns_net,
            ext_net: external_nets(o),
            mounts: super::mount_opts::mount_options(o),
            memory_only: pre_dump,
        },
        tcp_close: o.tcp_close,
        files: DumpFileOptions {
            ghost_limit: o.ghost_limit,
            link_remap: o.link_remap,
            ext_unix_sk: ext_unix_sk(o),
            tcp: criu_files::inet::dump::TcpOptions {
                established: o.tcp_established,
                close: o.tcp_close,
                skip_in_flight: o.skip_in_flight,
                guard: None,
            },
            file_locks: o.file_locks,
            evasive_devices: o.evasive_devices,
            force_irmap: o.force_irmap,
            shell_job: o.shell_job,
            orphan_pts_master: asked.orphan_pts_master.is_some(),
            root: None,
        },
        cgroups: criu_cgroups::dump::DumpOptions {
            mode: cgroup_mode(o),
            props: criu_cgroups::props::PropTable::new(
                o.cgroup_props.as_deref(),
                o.cgroup_props_file.as_deref().map(Path::new),
            )
            .map_err(|e| e.to_string())?,
            controllers: o.cgroup_dump_controllers.clone(),
            roots: o.cgroup_roots.clone(),
            yard: cgroup_yard(o, images),
            freezer_state: None,
        },
        freeze_cgroup: o.freeze_cgroup.as_ref().map(std::path::PathBuf::from),
        iterative: dump::iterative::Iterative {
            pre_dump,
            parent: o.prev_images_dir.as_ref().map(std::path::PathBuf::from),
            track_mem: o.track_mem,
            pidfd_store: pidfd_store.clone(),
        },
        page_server,
    };
    match dump::run(req) {
        Ok(report) => {
            if o.auto_dedup && o.prev_images_dir.is_some() {
                super::dedup::dedup(images)?;
            }
            // For the next dump of the series: none follows one that killed the tree.
            if let Some(store) = pidfd_store.as_ref().filter(|_| release != Release::Kill) {
                let pids: Vec<i32> = report.tasks.iter().map(|t| t.host_pid).collect();
                store.leave(&pids).map_err(|e| e.to_string())?;
            }
            let s = &report.stats;
            tracing::info!(
                "Dumped {} task(s): {} pages written of {} scanned, {} left to the parent; frozen {} us",
                report.tasks.len(),
                s.pages_written,
                s.pages_scanned,
                s.pages_skipped_parent,
                s.frozen_time
            );
            if o.display_stats {
                println!("Displaying dump stats:");
                println!("Freezing time: {} us", s.freezing_time);
                println!("Frozen time: {} us", s.frozen_time);
                println!("Memory dump time: {} us", s.memdump_time);
                println!("Memory write time: {} us", s.memwrite_time);
                println!(
                    "Memory pages scanned: {} (0x{:x})",
                    s.pages_scanned, s.pages_scanned
                );
                println!(
                    "Memory pages written: {} (0x{:x})",
                    s.pages_written, s.pages_written
                );
            }
            if pre_dump {
                tracing::info!("Pre-dumping finished successfully");
            } else {
                tracing::info!("Dumping finished successfully");
            }
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// `--page-server` with `--address` and `--port`, or with `--ps-socket FD`.
fn page_server_target(o: &Options) -> Result<Option<dump::PageServerTarget>, String> {
    if !o.page_server {
        return Ok(None);
    }
    // Over --ps-socket the server's name is --address, if given.
    let tls = super::support::tls_options(o).map(|t| {
        let name = o.address.clone().unwrap_or_else(|| "localhost".into());
        (name, t)
    });
    if let Some(fd) = o.ps_socket {
        let how = dump::PageServerLink::Socket(fd);
        return Ok(Some(dump::PageServerTarget { how, tls }));
    }
    let address = o
        .address
        .clone()
        .ok_or("--page-server needs --address (the page server's host)")?;
    let port = o
        .port
        .ok_or("--page-server needs --port (the page server's port)")?;
    let how = dump::PageServerLink::Tcp { address, port };
    Ok(Some(dump::PageServerTarget { how, tls }))
}

/// `--external net[INODE]:KEY`: network namespaces left outside the dump, by inode.
/// `--manage-cgroups`; CRIU's default (soft) without it; ignore with `--unprivileged`.
pub fn cgroup_mode(o: &Options) -> criu_cgroups::Mode {
    use crate::cli::values::CgroupMode as M;
    use criu_cgroups::Mode;
    // As CRIU: an unprivileged criu leaves cgroups alone.
    if o.unprivileged {
        return Mode::Ignore;
    }
    match o.manage_cgroups {
        None | Some(M::Soft) => Mode::Soft,
        Some(M::None) => Mode::None,
        Some(M::Props) => Mode::Props,
        Some(M::Full) => Mode::Full,
        Some(M::Strict) => Mode::Strict,
        Some(M::Ignore) => Mode::Ignore,
    }
}

/// `--cgroup-yard`, a relative path taken from the work directory (as CRIU, which works
/// there).
pub fn cgroup_yard(o: &Options, work: &Path) -> Option<std::path::PathBuf> {
    o.cgroup_yard.as_ref().map(|y| work.join(y))
}

fn external_nets(o: &Options) -> Vec<(u64, String)> {
    o.external
        .iter()
        .filter_map(|e| {
            let (ino, key) = e.strip_prefix("net[")?.split_once("]:")?;
            Some((ino.parse().ok()?, key.to_string()))
        })
        .collect()
}

/// `--ext-unix-sk[=INO,...]` and `--external unix[INO]` (the same exception, as in CRIU): an
/// empty list allows any socket, inodes name the sockets allowed.
fn ext_unix_sk(o: &Options) -> Option<Vec<u64>> {
    let named = o.external.iter().filter_map(|e| {
        e.strip_prefix("unix[")?
            .strip_suffix(']')?
            .parse::<u64>()
            .ok()
    });
    let inodes: Vec<u64> = o.ext_unix_sk_inodes.iter().copied().chain(named).collect();
    if o.ext_unix_sk && o.ext_unix_sk_inodes.is_empty() {
        Some(Vec::new())
    } else {
        (!inodes.is_empty()).then_some(inodes)
    }
}
