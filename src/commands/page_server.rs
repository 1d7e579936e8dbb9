//! `criu page-server`: receives the pages of one dump (`dump --page-server`, ours or CRIU's)
//! over TCP and writes them into the images dir as that dump would have written them
//! (the protocol is in memory/src/page_server.rs). Listens on `--address` (default every
//! IPv4 address) and `--port` (default: a free one, logged), serves one connection and exits
//! once the dump closes it. `-d` goes to the background once it listens (its pid to
//! `--pidfile`); `--status-fd` gets a byte when it is ready; `--prev-images-dir` links the
//! dir to the previous round's, whose pagemaps tell the dump which pages it may leave there;
//! `--ps-socket FD` serves a connected socket instead of listening.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;

use criu_memory::page_server::Server;

use crate::app::Dirs;
use crate::cli::Options;

pub fn run(o: &Options, dirs: &Dirs) -> i32 {
    match serve(o, dirs) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            1
        }
    }
}

fn listen(o: &Options) -> Result<TcpListener, String> {
    let ip = match o.address.as_deref() {
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(a) => a.parse::<IpAddr>().map_err(|_| {
            format!(
                "page-server: invalid server address \"{a}\": the address must be in IPv4 or IPv6 format"
            )
        })?,
    };
    let port = o.port.unwrap_or(0);
    tracing::info!("Starting page server on port {port}");
    let addr = SocketAddr::new(ip, port);
    // std's listener sets SO_REUSEADDR, as CRIU's.
    let listener =
        TcpListener::bind(addr).map_err(|e| format!("page-server: cannot bind to {addr}: {e}"))?;
    if port == 0 {
        let got = listener
            .local_addr()
            .map_err(|e| format!("page-server: getsockname: {e}"))?;
        tracing::info!("Using {} port", got.port());
    }
    Ok(listener)
}

/// The environment variable that gives the background page server its listening socket.
const LISTEN_FD_ENV: &str = "CRIU_PAGE_SERVER_LISTEN_FD";

/// Goes to the background once listening: criu has threads already (signals), so it cannot
/// fork; it starts itself again, with the listening socket, its own process group and no
/// stdio (as CRIU's daemon), writes that process's pid to `--pidfile` and exits.
fn daemonize(
    o: &Options,
    listener: Option<&TcpListener>,
    inherited: Option<i32>,
) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fd = match (listener, inherited) {
        (Some(l), _) => {
            let fd = l.as_fd();
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            )
            .map_err(|e| format!("page-server: cannot hand the socket on: {e}"))?;
            fd.as_raw_fd()
        }
        (None, Some(fd)) => fd,
        (None, None) => return Err("page-server: nothing to serve".into()),
    };
    let exe = std::env::current_exe().map_err(|e| format!("page-server: own executable: {e}"))?;
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let child = std::process::Command::new(exe)
        .args(args)
        .env(LISTEN_FD_ENV, fd.to_string())
        .current_dir(
            crate::app::START_DIR
                .get()
                .map_or(Path::new("/"), |p| p.as_path()),
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("page-server: cannot run in the background: {e}"))?;
    let pid = child.id() as i32;
    if let Some(pidfile) = &o.pidfile {
        if let Err(e) = crate::pidfile::write(Path::new(pidfile), pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            return Err(format!("page-server: can't write pidfile: {e}"));
        }
    }
    // Nothing more to the log: the background page server writes it from now on.
    std::process::exit(0);
}

/// For an RPC PAGE_SERVER request: listens here (so that the port is known at once), then
/// hands the socket to a criu of its own running `line` (the request as a command line), in
/// its own process group. Returns that criu's pid and the port.
pub fn start_in_background(o: &Options, line: &[String]) -> Result<(i32, u16), String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let listener = listen(o)?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("page-server: getsockname: {e}"))?
        .port();
    let fd = listener.as_fd();
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .map_err(|e| format!("page-server: cannot hand the socket on: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("page-server: own executable: {e}"))?;
    let child = std::process::Command::new(exe)
        .arg("--no-default-config")
        .args(line)
        .env(LISTEN_FD_ENV, fd.as_raw_fd().to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("page-server: cannot start: {e}"))?;
    Ok((child.id() as i32, port))
}

fn ready(o: &Options) -> Result<(), String> {
    if let Some(fd) = o.status_fd {
        let status =
            criu_sys::fd::own_inherited(fd).map_err(|e| format!("--status-fd {fd}: {e}"))?;
        nix::unistd::write(&status, b"\0").map_err(|e| format!("--status-fd {fd}: {e}"))?;
    }
    Ok(())
}

fn serve(o: &Options, dirs: &Dirs) -> Result<(), String> {
    let dir = dirs.images.as_path();
    if let Some(parent) = &o.prev_images_dir {
        criu_memory::chain::link_parent(dir, Path::new(parent))
            .map_err(|e| format!("page-server: --prev-images-dir: {e}"))?;
    }
    // The background page server (see `daemonize`) gets its socket from the one that
    // started it, which wrote the pidfile.
    let handed = std::env::var(LISTEN_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok());
    let background = o.restore_detached && handed.is_none();
    let take = |fd: i32, what: &str| {
        criu_sys::fd::own_inherited(fd).map_err(|e| format!("{what} {fd}: {e}"))
    };
    let announce = |o: &Options| -> Result<(), String> {
        if handed.is_none() {
            if let Some(pidfile) = &o.pidfile {
                crate::pidfile::write(Path::new(pidfile), std::process::id() as i32)?;
            }
        }
        ready(o)
    };
    let (sock, peer, inherited) = match o.ps_socket {
        Some(fd) => {
            tracing::info!("Reusing ps socket {fd}");
            if o.restore_detached && fd <= 2 {
                return Err(
                    "page-server: standard file descriptors will be closed in daemon mode".into(),
                );
            }
            if background {
                daemonize(o, None, Some(fd))?;
            }
            let owned = take(fd, "--ps-socket")?;
            announce(o)?;
            (TcpStream::from(owned), format!("on --ps-socket {fd}"), true)
        }
        None => {
            let listener = match handed {
                Some(fd) => TcpListener::from(take(fd, "the listening socket")?),
                None => listen(o)?,
            };
            if background {
                daemonize(o, Some(&listener), None)?;
            }
            announce(o)?;
            let (sock, from) = loop {
                match listener.accept() {
                    Ok(c) => break c,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(format!("page-server: can't accept a connection: {e}")),
                }
            };
            drop(listener);
            tracing::info!("Accepted connection from {from}");
            (sock, from.to_string(), false)
        }
    };
    let _ = sock.set_nodelay(true);
    let mut conn: Box<dyn criu_memory::tls::Conn> = match super::support::tls_options(o) {
        Some(t) => t
            .server(sock)
            .map_err(|e| format!("page-server: connection from {peer}: {e}"))?,
        None => Box::new(sock),
    };
    let served = Server::new(dir, peer)
        .serve(conn.as_mut(), !inherited)
        .map_err(|e| e.to_string())?;
    tracing::info!(
        "Page server: {} page(s) written into {} image(s) in {}, {} entr(ies) left to the parent",
        served.pages,
        served.images.len(),
        dir.display(),
        served.parent_entries
    );
    Ok(())
}
