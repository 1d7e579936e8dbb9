//! Unix sockets of a dump. The kernel's list of unix sockets (sock_diag, asked once per dump)
//! gives each socket's type, state, name, peer, pending connections and shut-down directions;
//! criu takes a copy of the task's socket with pidfd_getfd to read its options and to copy its
//! receive queue without consuming it. Each socket is one `unix_sk_entry` in files.img (a
//! socket inode has one open description), its queue goes to sk-queues.img.

mod diag;
mod queue;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use criu_procfs::FdTarget;
use criu_proto::images::{
    FdTypes, FileEntry, FilePermsEntry, ScmEntry, SkPacketEntry, UnixSkEntry,
};
use criu_proto::{ImageKind, ImageWriter};

pub use diag::UnixDiag;

use crate::table::{FileTable, FilesError};

/// `unix_sk_entry.uflags`: the socket is outside the dumped tree (`--ext-unix-sk`).
pub const USK_EXTERN: u32 = 1;

/// Socket states as unix sockets use the TCP names.
pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_LISTEN: u8 = 10;

#[derive(Debug, thiserror::Error)]
pub enum UnixError {
    #[error("cannot list unix sockets with sock_diag: {0}")]
    Diag(std::io::Error),
    #[error("pid {pid}: fd {fd}: unix socket:[{ino}]: {what}")]
    Socket {
        pid: i32,
        fd: i32,
        ino: u32,
        what: String,
    },
    #[error("pid {pid}: fd {fd}: unix socket:[{ino}]: queue: {source}")]
    Queue {
        pid: i32,
        fd: i32,
        ino: u32,
        source: queue::QueueError,
    },
    #[error("sk-queues.img: {0}")]
    Image(#[from] criu_proto::Error),
    #[error(transparent)]
    Fown(#[from] crate::fown::dump::FownError),
}

/// Where a dumped socket was seen first.
#[derive(Debug, Clone, Copy)]
struct Holder {
    pid: i32,
    fd: i32,
    id: u32,
}

/// The unix sockets of one dump.
#[derive(Debug, Default)]
pub struct UnixSockets {
    /// Every unix socket of the network namespace, by inode; asked for on the first socket.
    diag: Option<HashMap<u32, UnixDiag>>,
    /// A task of the tree's own network namespace, where sock_diag is asked; criu's if none.
    pub net_of: Option<i32>,
    /// Sockets dumped so far, by inode.
    dumped: HashMap<u32, Holder>,
    /// Queued messages, in order: (files.img id of the receiving socket, bytes, files.img ids
    /// of the fds they carry).
    queues: Vec<(u32, Vec<u8>, Vec<u32>)>,
    /// criu's copies of fds in flight, kept open until the end of the dump so that their
    /// numbers are not reused while descriptions are told apart by (pid, fd).
    inflight: Vec<std::os::fd::RawFd>,
}

impl UnixSockets {
    fn diag(&mut self) -> Result<&HashMap<u32, UnixDiag>, UnixError> {
        if self.diag.is_none() {
            let list = match self.net_of {
                Some(pid) => {
                    criu_ns::enter::in_namespaces_of(pid, &[criu_procfs::NsKind::Net], diag::list)
                        .map_err(|e| UnixError::Diag(std::io::Error::other(e.to_string())))?
                }
                None => diag::list(),
            };
            self.diag = Some(list.map_err(UnixError::Diag)?);
        }
        Ok(self.diag.get_or_insert_with(HashMap::new))
    }

    /// The list, with the sockets of `sock`'s network namespace added when `ino` (`sock`'s)
    /// is not in it yet: a task of the tree may hold one of another namespace (inodes are
    /// unique across namespaces).
    fn diag_of(
        &mut self,
        ino: u32,
        sock: std::os::fd::BorrowedFd<'_>,
    ) -> Result<&HashMap<u32, UnixDiag>, UnixError> {
        if !self.diag()?.contains_key(&ino) {
            let more = crate::sock_diag::in_netns_of(sock, diag::list).map_err(UnixError::Diag)?;
            if let Some(list) = self.diag.as_mut() {
                list.extend(more);
            }
        }
        self.diag()
    }
}

fn lock(table: &std::sync::Mutex<FileTable>) -> std::sync::MutexGuard<'_, FileTable> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

/// The files.img id of unix socket `ino`, dumping it when first seen. The table is not held while
/// the queue is read: fds in flight in it are dumped as files of their own.
pub(crate) fn socket_id(
    pid: i32,
    fd: i32,
    ino: u64,
    flags: u32,
    sock: std::os::fd::BorrowedFd<'_>,
    table: &std::sync::Mutex<FileTable>,
) -> Result<u32, FilesError> {
    let ino32 = ino as u32;
    let (sk, peer, id) = {
        let mut t = lock(table);
        let Some(sk) = t.unix.diag_of(ino32, sock)?.get(&ino32).cloned() else {
            return Err(FilesError::Unsupported {
                pid,
                fd,
                kind: format!("socket:[{ino}] (not a unix socket)"),
            });
        };
        if let Some(h) = t.unix.dumped.get(&ino32) {
            return Ok(h.id);
        }
        let peer = peer_of(pid, fd, &sk, t.unix.diag()?)?;
        // Claimed now so that a task sharing the socket gets the same id; filled in below.
        let id = t.claim(FdTypes::Unixsk);
        t.unix.dumped.insert(ino32, Holder { pid, fd, id });
        (sk, peer, id)
    };
    let root = lock(table).root.clone();
    let (entry, queue) = describe(pid, fd, flags, &sk, peer, &root)?;
    let mut packets = Vec::with_capacity(queue.len());
    for p in queue {
        lock(table).unix.inflight.extend(&p.fds);
        let mut rights = Vec::with_capacity(p.fds.len());
        for &f in &p.fds {
            rights.push(inflight_id(f, pid, table)?);
        }
        packets.push((id, p.bytes, rights));
    }
    let mut t = lock(table);
    if let Some(e) = t.entry_mut(id) {
        e.usk = Some(UnixSkEntry { id, ..entry });
    }
    t.unix.queues.extend(packets);
    Ok(id)
}

/// The files.img id of a file in flight, which criu now holds as its own `fd`, in the queue
/// of a socket `holder` holds.
fn inflight_id(
    fd: i32,
    holder: i32,
    table: &std::sync::Mutex<FileTable>,
) -> Result<u32, FilesError> {
    let me = std::process::id() as i32;
    let link = criu_procfs::fd::read_fd_link(me, fd).map_err(|source| FilesError::Proc {
        pid: me,
        what: format!("fd {fd} in flight"),
        source,
    })?;
    let entry = match criu_procfs::parse_fd_target(&link) {
        FdTarget::Path { path, deleted } => {
            crate::collect::dump_path_fd(me, fd, &path, deleted, table)?
        }
        FdTarget::Pipe(ino) => crate::collect::dump_pipe_fd(me, fd, ino, table)?,
        FdTarget::Socket(ino) => crate::socket::dump_socket_fd(me, fd, ino, table)?,
        FdTarget::AnonInode(name) if name == "[eventpoll]" => {
            crate::epoll::dump::dump_inflight_epoll(fd, holder, table)?
        }
        _ => {
            return Err(FilesError::Unsupported {
                pid: me,
                fd,
                kind: format!("{} in flight in a unix socket queue", link.display()),
            })
        }
    };
    Ok(entry.id)
}

/// The error about socket `ino` at `pid`'s `fd`, worded by `what`.
fn socket_err(pid: i32, fd: i32, ino: u32) -> impl Fn(String) -> UnixError {
    move |what| UnixError::Socket { pid, fd, ino, what }
}

/// A stream or seqpacket socket: one that connects, unlike a datagram one.
fn is_stream_like(sk: &UnixDiag) -> bool {
    sk.kind != libc::SOCK_DGRAM as u8
}

/// The peer to record: a client whose connection is not accepted yet names its listener.
fn peer_of(
    pid: i32,
    fd: i32,
    sk: &UnixDiag,
    all: &HashMap<u32, UnixDiag>,
) -> Result<u32, UnixError> {
    let fail = socket_err(pid, fd, sk.ino);
    let stream_like = is_stream_like(sk);
    if sk.state == TCP_LISTEN && sk.icons.contains(&0) {
        return Err(fail(
            "a pending connection's client is already closed".into(),
        ));
    }
    if sk.peer != 0 || !stream_like || sk.state != TCP_ESTABLISHED {
        return Ok(sk.peer);
    }
    match all.values().find(|l| l.icons.contains(&sk.ino)) {
        Some(l) if l.state == TCP_LISTEN => {
            if sk.rqlen.1 != 0 {
                return Err(fail(format!(
                    "{} bytes sent on a connection not accepted yet",
                    sk.rqlen.1
                )));
            }
            Ok(l.ino)
        }
        Some(l) => Err(fail(format!(
            "pending connection on socket {} that does not listen",
            l.ino
        ))),
        // A connection whose other end is gone: restored as a pair with one end closed.
        None => Ok(0),
    }
}

/// The entry of one socket (id still 0) and its queued messages.
fn describe(
    pid: i32,
    fd: i32,
    flags: u32,
    sk: &UnixDiag,
    peer: u32,
    root: &crate::root::FsRoot,
) -> Result<(UnixSkEntry, Vec<queue::Packet>), UnixError> {
    let fail = socket_err(pid, fd, sk.ino);
    let stream_like = is_stream_like(sk);
    let sock = criu_sys::pidfd::take_fd(pid, fd)
        .map_err(|e| fail(format!("cannot take a copy with pidfd_getfd: {e}")))?;
    let opts = crate::sk_opts::dump::read(std::os::fd::AsFd::as_fd(&sock), libc::AF_UNIX)
        .map_err(|(what, e)| fail(format!("getsockopt({what}): {e}")))?;
    // Only a connected stream has a queue; reading an unconnected one fails.
    let queue = if sk.state == TCP_LISTEN || (stream_like && sk.state != TCP_ESTABLISHED) {
        Vec::new()
    } else {
        queue::peek_queue(&sock, sk.kind == libc::SOCK_STREAM as u8).map_err(|source| {
            UnixError::Queue {
                pid,
                fd,
                ino: sk.ino,
                source,
            }
        })?
    };
    let mut entry = UnixSkEntry {
        ino: sk.ino,
        r#type: u32::from(sk.kind),
        state: u32::from(sk.state),
        flags,
        backlog: if sk.state == TCP_LISTEN {
            sk.rqlen.1
        } else {
            0
        },
        peer,
        fown: crate::fown::dump::read(pid, fd, flags)?,
        opts,
        name: sk.name.clone(),
        shutdown: (sk.shutdown != 0).then_some(i32::from(sk.shutdown & 3)),
        ..Default::default()
    };
    if let Some((vfs_ino, _)) = sk.vfs {
        path_state(pid, &mut entry, vfs_ino, root);
    }
    Ok((entry, queue))
}

/// For a path-bound socket: the socket file's mode and owner, or that it was removed. A
/// relative name is resolved against the task's cwd, kept in `name_dir`.
fn path_state(pid: i32, entry: &mut UnixSkEntry, vfs_ino: u32, root: &crate::root::FsRoot) {
    let bytes = entry.name.split(|&b| b == 0).next().unwrap_or_default();
    let name = String::from_utf8_lossy(bytes).into_owned();
    let path = if name.starts_with('/') {
        Path::new(&name).to_path_buf()
    } else {
        let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
            entry.deleted = Some(true);
            return;
        };
        entry.name_dir = Some(cwd.display().to_string());
        cwd.join(&name)
    };
    match std::fs::symlink_metadata(root.resolve(&path)) {
        Ok(m) if m.ino() as u32 == vfs_ino => {
            entry.file_perms = Some(FilePermsEntry {
                mode: m.mode(),
                uid: m.uid(),
                gid: m.gid(),
            });
        }
        _ => entry.deleted = Some(true),
    }
}

/// After every task: checks that each socket's peer is in the dump (or, with
/// `--ext-unix-sk`, adds an entry for an outside datagram peer it can reconnect to by name, or
/// for any outside peer of a socket `--ext-unix-sk=INO`/`--external unix[INO]` names), then
/// writes sk-queues.img.
pub fn finish(table: &mut FileTable, dir: &Path) -> Result<(), UnixError> {
    let mut outside: Vec<(u32, UnixDiag)> = Vec::new();
    for f in table.entries() {
        let Some(usk) = f.usk.as_ref() else { continue };
        if usk.peer == 0 || usk.uflags & USK_EXTERN != 0 {
            continue;
        }
        if table.unix.dumped.contains_key(&usk.peer) || outside.iter().any(|o| o.0 == usk.peer) {
            continue;
        }
        let h = table.unix.dumped[&usk.ino];
        let fail = socket_err(h.pid, h.fd, usk.ino);
        let listed = |inos: &Vec<u64>| inos.contains(&u64::from(usk.ino));
        // A socket named by inode is one whose outside peer is given back at restore by
        // --inherit-fd (a runtime's stdio socket): any type goes.
        let named = table.opts.ext_unix_sk.as_ref().is_some_and(listed);
        let allowed = table.opts.ext_unix_sk.as_ref().is_some_and(|inos| {
            inos.is_empty() || listed(inos) || inos.contains(&u64::from(usk.peer))
        });
        if !allowed {
            return Err(fail(format!(
                "connected to socket {} outside the dumped tree (see --ext-unix-sk)",
                usk.peer
            )));
        }
        let peer = table
            .unix
            .diag
            .as_ref()
            .and_then(|d| d.get(&usk.peer))
            .cloned()
            .ok_or_else(|| fail(format!("peer {} is gone", usk.peer)))?;
        if !named && (usk.r#type != libc::SOCK_DGRAM as u32 || peer.name.is_empty()) {
            return Err(fail(format!(
                "connected to outside socket {}: only a named datagram peer can be reconnected",
                usk.peer
            )));
        }
        outside.push((usk.peer, peer));
    }
    for (_, peer) in outside {
        table.add(|id| FileEntry {
            r#type: FdTypes::Unixsk as i32,
            id,
            usk: Some(UnixSkEntry {
                id,
                ino: peer.ino,
                r#type: u32::from(peer.kind),
                state: u32::from(peer.state),
                uflags: USK_EXTERN,
                name: peer.name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let mut w = ImageWriter::create(dir, &ImageKind::SK_QUEUES, None)?;
    queue::close_all(&std::mem::take(&mut table.unix.inflight));
    for (id, bytes, rights) in &table.unix.queues {
        let scm = if rights.is_empty() {
            Vec::new()
        } else {
            vec![ScmEntry {
                r#type: libc::SCM_RIGHTS as u32,
                rights: rights.clone(),
            }]
        };
        w.write(&SkPacketEntry {
            id_for: *id,
            length: bytes.len() as u32,
            scm,
        })?;
        w.write_payload(bytes)?;
    }
    w.finish()?;
    Ok(())
}
