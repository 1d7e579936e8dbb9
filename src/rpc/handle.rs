//! What each request type does. A request that acts on a tree or images becomes the command
//! line that says the same (see `opts`) and runs through the same code as `criu dump` or
//! `criu restore`; its answer carries the result or the error.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use criu_proto::rpc::{
    CriuDumpResp, CriuFeatures, CriuOpts, CriuPageServerInfo, CriuReq, CriuReqType, CriuResp,
    CriuRestoreResp, CriuVersion,
};

use super::opts::{words, ClientDirs};
use super::session::Session;
use crate::cli::{self, Parsed};

/// The answer to `req`.
pub fn answer(session: &Arc<Session>, req: &CriuReq) -> CriuResp {
    let kind = CriuReqType::try_from(req.r#type).unwrap_or(CriuReqType::Empty);
    let mut resp = CriuResp {
        r#type: kind as i32,
        success: true,
        ..Default::default()
    };
    let done = match kind {
        CriuReqType::Version => {
            resp.version = Some(version());
            Ok(())
        }
        CriuReqType::FeatureCheck => {
            // Memory tracking and the pidfd store as `check --feature` probes them; lazy
            // pages are not done yet.
            resp.features = Some(CriuFeatures {
                mem_track: Some(criu_sys::probe::memory::dirty_track().is_ok()),
                lazy_pages: Some(false),
                pidfd_store: Some(criu_sys::probe::namespaces::pidfd_store().is_ok()),
            });
            Ok(())
        }
        CriuReqType::WaitPid => wait_pid(req.pid).map(|status| resp.status = Some(status)),
        CriuReqType::Dump => run(session, req, &["dump"]).map(|_| {
            resp.dump = Some(CriuDumpResp {
                restored: Some(false),
            });
        }),
        CriuReqType::Restore => run(session, req, &["restore", "--restore-detached"])
            .map(|ran| resp.restore = Some(CriuRestoreResp { pid: ran.value })),
        CriuReqType::Check => run(session, req, &["check"]).map(drop),
        CriuReqType::CpuinfoDump => run(session, req, &["cpuinfo", "dump"]).map(drop),
        CriuReqType::CpuinfoCheck => run(session, req, &["cpuinfo", "check"]).map(drop),
        // After a PRE_DUMP the session waits for the next round (swrk's loop).
        CriuReqType::PreDump | CriuReqType::SinglePreDump => {
            run(session, req, &["pre-dump"]).map(drop)
        }
        // The page server runs on in a criu of its own, a child of this one (so a WAIT_PID of
        // the session gets its exit status, which PAGE_SERVER_CHLD is for); the answer names
        // it and its port.
        CriuReqType::PageServer | CriuReqType::PageServerChld => {
            run(session, req, &["page-server"]).map(|ran| {
                resp.ps = Some(CriuPageServerInfo {
                    pid: Some(ran.value),
                    port: ran.port.map(i32::from),
                    ..Default::default()
                });
            })
        }
        CriuReqType::Notify | CriuReqType::Empty => Err("Invalid req".to_string()),
    };
    if let Err(e) = done {
        tracing::error!("{e}");
        resp.success = false;
        resp.cr_errmsg = Some(e);
    }
    resp
}

/// CRIU 4.2, which go-criu and runc check for; our own version goes in `gitid`.
fn version() -> CriuVersion {
    CriuVersion {
        major_number: 4,
        minor_number: 2,
        gitid: Some(format!("criu-rs-{}", env!("CARGO_PKG_VERSION"))),
        ..Default::default()
    }
}

fn wait_pid(pid: Option<u32>) -> Result<i32, String> {
    let pid = pid.ok_or("WAIT_PID without a pid")? as i32;
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)
        .map_err(|e| format!("wait for pid {pid}: {e}"))?;
    Ok(match status {
        nix::sys::wait::WaitStatus::Exited(_, code) => code << 8,
        nix::sys::wait::WaitStatus::Signaled(_, sig, _) => sig as i32,
        _ => 0,
    })
}

/// A path criu can use for the client's `fd`: what the fd's link names, if criu sees the
/// same thing there, else the fd itself through /proc.
fn client_dir(client: i32, fd: i32) -> Result<String, String> {
    let proc_path = format!("/proc/{client}/fd/{fd}");
    let meta = std::fs::metadata(&proc_path).map_err(|e| format!("fd {fd} of the client: {e}"))?;
    if !meta.is_dir() {
        return Err(format!("fd {fd} of the client is not a directory"));
    }
    let same = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()))
    };
    match std::fs::read_link(&proc_path) {
        Ok(p) if same(&p) => Ok(p.display().to_string()),
        _ => Ok(proc_path),
    }
}

fn dirs_of(session: &Session, opts: &CriuOpts) -> Result<ClientDirs, String> {
    let client = session.client.0;
    let images = if opts.images_dir_fd >= 0 {
        client_dir(client, opts.images_dir_fd)?
    } else {
        opts.images_dir.clone().unwrap_or_else(|| ".".into())
    };
    let work = opts
        .work_dir_fd
        .map(|fd| client_dir(client, fd))
        .transpose()?;
    Ok(ClientDirs { images, work })
}

/// A client that is not root may act only on its own processes and its own images.
fn permitted(session: &Session, opts: &CriuOpts, dirs: &ClientDirs) -> Result<(), String> {
    let uid = session.client.1;
    if uid == 0 {
        return Ok(());
    }
    let owner = |path: &str| std::fs::metadata(path).map(|m| m.uid()).ok();
    if owner(&dirs.images) != Some(uid) {
        return Err(format!(
            "uid {uid} does not own the images dir {}",
            dirs.images
        ));
    }
    if let Some(pid) = opts.pid {
        if owner(&format!("/proc/{pid}")) != Some(uid) {
            return Err(format!("uid {uid} may not checkpoint pid {pid}"));
        }
    }
    Ok(())
}

/// What a request's command gave: an exit code or the restored root's pid (a page server's
/// pid, with its port).
struct Ran {
    value: i32,
    port: Option<u16>,
}

/// Runs `command` with the request's options as criu's own command line would; for a
/// restore, the root's pid; for a page server, its pid.
fn run(session: &Arc<Session>, req: &CriuReq, command: &[&str]) -> Result<Ran, String> {
    let mut opts = req.opts.clone().unwrap_or_default();
    // A dump without a pid dumps the client itself, as CRIU does.
    if command[0] == "dump" && opts.pid.is_none() {
        opts.pid = Some(session.client.0);
    }
    let dirs = dirs_of(session, &opts)?;
    permitted(session, &opts, &dirs)?;
    let mut line: Vec<String> = command.iter().map(|w| w.to_string()).collect();
    line.extend(words(&opts, &dirs)?);
    let inv = match cli::parse(&line) {
        Ok(Parsed::Run(inv)) => inv,
        Ok(_) => return Err("the request reads as a request for help".into()),
        Err(e) => return Err(format!("{e:?}")),
    };
    let dirs = crate::app::setup(&inv)?;
    tracing::info!(
        "RPC request from pid {}: criu {}",
        session.client.0,
        line.join(" ")
    );
    let refused = crate::commands::support::refusals(&inv.command, &inv.options);
    if !refused.is_empty() {
        return Err(refused.join("; "));
    }
    let pidfd_store = match opts.pidfd_store_sk {
        Some(sk) => Some(Arc::new(pidfd_store(session.client.0, sk)?)),
        None => None,
    };
    // As CRIU: the master goes to the client with a NOTIFY, so only to one that takes them.
    let notifies = opts.notify_scripts == Some(true);
    let orphan_pts_master = (opts.orphan_pts_master == Some(true)).then(|| {
        let s = session.clone();
        criu_files::OrphanPtsMaster(Arc::new(move |master| {
            if !notifies {
                return Err(
                    "the master goes to the client with a NOTIFY: set notify_scripts".into(),
                );
            }
            s.notify_with_fd("orphan-pts-master", master)
        }))
    });
    crate::commands::request_only::set(Some(crate::commands::request_only::RequestOnly {
        pidfd_store,
        orphan_pts_master,
    }));
    let notifier = opts.notify_scripts == Some(true);
    if notifier {
        let s = session.clone();
        crate::scripts::set_notifier(Some(Box::new(move |action, pid| {
            s.notify(action.name(), pid)
        })));
    }
    let o = &inv.options;
    let done = |value| Ran { value, port: None };
    let result = match &inv.command {
        cli::Command::Dump => crate::commands::dump::dump(o, &dirs).map(|()| done(0)),
        cli::Command::PreDump => crate::commands::dump::pre_dump(o, &dirs).map(|()| done(0)),
        cli::Command::Restore { .. } => crate::commands::restore::restore(o, &dirs).map(done),
        cli::Command::PageServer => crate::commands::page_server::start_in_background(o, &line)
            .map(|(pid, port)| Ran {
                value: pid,
                port: Some(port),
            }),
        cli::Command::Check => code(crate::commands::check::run_options(o), "check").map(done),
        cli::Command::CpuinfoDump => {
            code(crate::commands::cpuinfo::dump(&dirs.images), "cpuinfo dump").map(done)
        }
        cli::Command::CpuinfoCheck => code(
            crate::commands::cpuinfo::check(&dirs.images, o.cpu_cap),
            "cpuinfo check",
        )
        .map(done),
        other => Err(format!("{} requests are not supported", other.name())),
    };
    if notifier {
        crate::scripts::set_notifier(None);
    }
    crate::commands::request_only::set(None);
    result.map_err(|e| {
        crate::log::last_error()
            .filter(|l| l.contains(&e))
            .unwrap_or(e)
    })
}

/// The client's pidfd store socket `sk` (a copy taken through a pidfd of the client), named
/// as CRIU names it on first use.
fn pidfd_store(client: i32, sk: i32) -> Result<criu_process::pidfd_store::PidfdStore, String> {
    let sock = criu_sys::pidfd::take_fd(client, sk)
        .map_err(|e| format!("pidfd_store_sk {sk} of the client: {e}"))?;
    let name = format!("X/criu-pidfd-store-{client}-{sk}-{}", std::process::id());
    criu_process::pidfd_store::PidfdStore::open(sock, &name).map_err(|e| e.to_string())
}

/// An exit code as a result; the log holds what went wrong.
fn code(exit: i32, what: &str) -> Result<i32, String> {
    if exit == 0 {
        Ok(0)
    } else {
        Err(crate::log::last_error().unwrap_or_else(|| format!("{what} failed")))
    }
}
