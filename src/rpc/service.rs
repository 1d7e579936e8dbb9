//! `criu service`: a unix SOCK_SEQPACKET socket (`--address`, default `criu_service.socket`
//! in the work dir) where each client connection is served by a `criu swrk` of its own, so
//! that one client's dump never shares a process with another's. `-d` puts the service in the
//! background; `--status-fd` gets a byte once it listens; `--pidfile` its pid.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;

use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};

use crate::app::Dirs;
use crate::cli::Options;

fn listen(path: &str) -> Result<OwnedFd, String> {
    // A socket file left by an earlier service is replaced, as CRIU does.
    let _ = std::fs::remove_file(path);
    let sock = socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("service: socket: {e}"))?;
    let addr = UnixAddr::new(path).map_err(|e| format!("service: address {path}: {e}"))?;
    socket::bind(sock.as_raw_fd(), &addr).map_err(|e| format!("service: bind to {path}: {e}"))?;
    socket::listen(&sock, Backlog::new(16).unwrap_or(Backlog::MAXCONN))
        .map_err(|e| format!("service: listen on {path}: {e}"))?;
    Ok(sock)
}

/// Serves until killed.
pub fn serve(o: &Options, dirs: &Dirs) -> i32 {
    match run(o, dirs) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            1
        }
    }
}

fn run(o: &Options, _dirs: &Dirs) -> Result<(), String> {
    let path = o
        .address
        .clone()
        .unwrap_or_else(|| "criu_service.socket".into());
    let sock = listen(&path)?;
    if o.restore_detached {
        // The service has no thread yet, so the child may go on running our code.
        match criu_sys::fork::fork_single_threaded().map_err(|e| format!("service: fork: {e}"))? {
            0 => {
                let _ = nix::unistd::setsid();
            }
            _ => std::process::exit(0),
        }
    }
    if let Some(pidfile) = &o.pidfile {
        crate::pidfile::write(std::path::Path::new(pidfile), std::process::id() as i32)?;
    }
    if let Some(fd) = o.status_fd {
        let status =
            criu_sys::fd::own_inherited(fd).map_err(|e| format!("--status-fd {fd}: {e}"))?;
        let _ = nix::unistd::write(&status, b"\0");
    }
    tracing::info!("The service is ready at {path}");
    let exe = std::env::current_exe().map_err(|e| format!("service: own executable: {e}"))?;
    loop {
        reap_workers();
        let client = match socket::accept(&sock) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("service: accept: {e}")),
        };
        // The worker gets the connection as its fd; accept() gave it without close-on-exec.
        let fd = client.as_raw_fd();
        match Command::new(&exe).arg("swrk").arg(fd.to_string()).spawn() {
            Ok(child) => tracing::info!("Client served by pid {}", child.id()),
            Err(e) => tracing::error!("service: cannot start a worker: {e}"),
        }
    }
}

/// Reaps workers that finished.
fn reap_workers() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}
