//! Unix sockets at restore, made in criu before the tasks take them. Sockets that are each
//! other's peers become a socketpair; named sockets are bound (a stale socket file is removed
//! first, the file gets its mode and owner back), listeners listen, then the remaining
//! connections are made by name: a client whose connection was not accepted yet connects to its
//! listener again, so the task's accept() finds it. Queued messages are sent again, in order,
//! from the peer (or, for a named datagram socket, from a throwaway socket); a socket whose
//! peer was gone gets one end of a socketpair whose other end is closed after the refill.
//! Shut-down directions, options and file status flags come last.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

use criu_proto::images::{FdTypes, SkPacketEntry, UnixSkEntry};
use criu_proto::{ImageKind, ImageReader};
use nix::errno::Errno;
use nix::sys::socket::{
    self, setsockopt, sockopt, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};

use crate::netns::NetNamespaces;
use crate::registry::{RestoreFileOptions, SharedError, SharedFiles};
use crate::root::FsRoot;
use criu_proto::dump_images::DumpImages;

mod ghost;
mod inflight;
mod opts;

use opts::finish;

const TCP_ESTABLISHED: u32 = 1;
const TCP_LISTEN: u32 = 10;
/// `unix_sk_entry.uflags`: a socket outside the dumped tree.
const USK_EXTERN: u32 = 1;
/// Send buffer of the socket that refills a queue: large enough for any queue that fit before.
const REFILL_SNDBUF: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
#[error("unix socket {ino}: {what}")]
pub struct UnixRestoreError {
    pub ino: u32,
    pub what: String,
}

fn fail(ino: u32, what: impl Into<String>) -> UnixRestoreError {
    UnixRestoreError {
        ino,
        what: what.into(),
    }
}

fn sys(ino: u32, what: &'static str) -> impl Fn(Errno) -> UnixRestoreError {
    move |e| fail(ino, format!("{what}: {e}"))
}

/// Makes every unix socket a task's fd names and hands each to `shared`.
pub fn open_all(
    images: &DumpImages,
    opts: &RestoreFileOptions,
    shared: &mut SharedFiles,
) -> Result<(), SharedError> {
    let wanted = images.fd_ids_of_type(FdTypes::Unixsk);
    if wanted.is_empty() {
        return Ok(());
    }
    let entries: Vec<&UnixSkEntry> = images
        .files
        .values()
        .filter(|f| f.r#type == FdTypes::Unixsk as i32)
        .filter_map(|f| f.usk.as_ref())
        .collect();
    let queues = read_queues(images)?;
    let inherited: BTreeSet<u32> = entries
        .iter()
        .map(|e| e.id)
        .filter(|&id| shared.is_inherited(id))
        .collect();
    let root = shared.root.clone();
    let netns = std::mem::take(&mut shared.netns);
    let made = build(
        &entries,
        &queues,
        opts,
        &inherited,
        (&root, &netns),
        &|id, for_id, made| inflight::open(images, shared, id, for_id, made),
    );
    shared.netns = netns;
    let mut made = made?;
    for id in wanted {
        if inherited.contains(&id) {
            continue;
        }
        let fd = made
            .remove(&id)
            .ok_or(SharedError::Missing { id, kind: "usk" })?;
        let fown = images.files.get(&id).and_then(|f| f.usk.as_ref());
        if let Some(e) = fown {
            shared.restore_fown(id, &fd, &e.fown)?;
        }
        shared.add_description(id, fd);
    }
    Ok(())
}

/// One queued message: its bytes and the files.img ids of the fds it carries.
#[derive(Debug, Default)]
pub struct Msg {
    bytes: Vec<u8>,
    rights: Vec<u32>,
}

/// sk-queues.img: the messages of each socket by its files.img id, in order.
fn read_queues(images: &DumpImages) -> Result<HashMap<u32, Vec<Msg>>, SharedError> {
    let mut out: HashMap<u32, Vec<Msg>> = HashMap::new();
    let Some(mut img) = ImageReader::open_if_exists(&images.dir, &ImageKind::SK_QUEUES, None)?
    else {
        return Ok(out);
    };
    while let Some(p) = img.read::<SkPacketEntry>()? {
        let bytes = img.read_payload(u64::from(p.length))?;
        let mut rights = Vec::new();
        for scm in p.scm {
            if scm.r#type != libc::SCM_RIGHTS as u32 {
                return Err(SharedError::Unix(fail(
                    0,
                    format!(
                        "file {}: queued control message of type {}",
                        p.id_for, scm.r#type
                    ),
                )));
            }
            rights.extend(scm.rights);
        }
        out.entry(p.id_for).or_default().push(Msg { bytes, rights });
    }
    Ok(out)
}

fn sock_type(e: &UnixSkEntry) -> Result<SockType, UnixRestoreError> {
    match e.r#type as i32 {
        libc::SOCK_STREAM => Ok(SockType::Stream),
        libc::SOCK_DGRAM => Ok(SockType::Datagram),
        libc::SOCK_SEQPACKET => Ok(SockType::SeqPacket),
        t => Err(fail(e.ino, format!("unknown socket type {t}"))),
    }
}

fn stream_like(e: &UnixSkEntry) -> bool {
    e.r#type != libc::SOCK_DGRAM as u32
}

/// Where the socket's name lives: the file of a path name, or `None` for an abstract one.
fn name_path(e: &UnixSkEntry) -> Option<PathBuf> {
    if e.name.first().is_none_or(|&b| b == 0) {
        return None;
    }
    // The kernel shows a path name with its terminating NUL.
    let bytes = e.name.split(|&b| b == 0).next().unwrap_or_default();
    let name = PathBuf::from(String::from_utf8_lossy(bytes).into_owned());
    Some(match &e.name_dir {
        Some(dir) if name.is_relative() => PathBuf::from(dir).join(name),
        _ => name,
    })
}

/// Runs `call`, a socket call given the name of socket `ino`, where that name is the task's:
/// the kernel keeps the name as given, so it cannot go through `FsRoot::resolve`.
fn by_name<T: Send>(
    root: &FsRoot,
    ino: u32,
    what: &'static str,
    call: impl FnOnce() -> nix::Result<T> + Send,
) -> Result<T, UnixRestoreError> {
    root.run_in(call)
        .map_err(|e| fail(ino, format!("{what}: {e}")))?
        .map_err(sys(ino, what))
}

fn address(e: &UnixSkEntry) -> Result<UnixAddr, UnixRestoreError> {
    match name_path(e) {
        Some(path) => UnixAddr::new(&path),
        None => UnixAddr::new_abstract(e.name.get(1..).unwrap_or_default()),
    }
    .map_err(sys(e.ino, "socket address"))
}

/// Whether the socket is bound again: not for a connected stream (an accepted socket shows its
/// listener's name, which cannot be bound twice).
fn binds(e: &UnixSkEntry) -> bool {
    let connected_stream = stream_like(e) && e.state == TCP_ESTABLISHED;
    !e.name.is_empty() && !connected_stream
}

/// Runs `make` in the network namespace of socket `e` (abstract names live there).
fn in_netns<T: Send>(
    e: &UnixSkEntry,
    netns: &NetNamespaces,
    make: impl FnOnce() -> Result<T, UnixRestoreError> + Send,
) -> Result<T, UnixRestoreError> {
    netns.run(e.ns_id, make).map_err(|w| fail(e.ino, w))?
}

fn new_socket(e: &UnixSkEntry, netns: &NetNamespaces) -> Result<OwnedFd, UnixRestoreError> {
    let kind = sock_type(e)?;
    in_netns(e, netns, || {
        socket::socket(
            AddressFamily::Unix,
            kind,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(sys(e.ino, "socket"))
    })
}

fn new_pair(
    e: &UnixSkEntry,
    netns: &NetNamespaces,
) -> Result<(OwnedFd, OwnedFd), UnixRestoreError> {
    let kind = sock_type(e)?;
    in_netns(e, netns, || {
        socket::socketpair(
            AddressFamily::Unix,
            kind,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )
        .map_err(sys(e.ino, "socketpair"))
    })
}

/// Opens a file in flight by its files.img id, for a refill of the queue of socket `for_id`;
/// `made` are the sockets made so far.
type OpenInFlight<'a> =
    dyn Fn(u32, u32, &BTreeMap<u32, OwnedFd>) -> Result<inflight::InFlight, UnixRestoreError> + 'a;

/// Where the fds a refilled message carries come from: the unix sockets made here, or `open`
/// for other files.
#[derive(Clone, Copy)]
struct Rights<'a> {
    made: &'a BTreeMap<u32, OwnedFd>,
    open: &'a OpenInFlight<'a>,
    /// Where a name sent to is seen from.
    root: &'a FsRoot,
}

/// Sends `msgs` from `from` (to its peer, or to `to` when given), with the fds they carry.
fn refill(
    ino: u32,
    for_id: u32,
    from: &OwnedFd,
    to: Option<&UnixAddr>,
    msgs: &[Msg],
    rights: Rights,
) -> Result<(), UnixRestoreError> {
    if msgs.is_empty() {
        return Ok(());
    }
    setsockopt(from, sockopt::SndBufForce, &REFILL_SNDBUF).map_err(sys(ino, "SO_SNDBUFFORCE"))?;
    let root = rights.root;
    for m in msgs {
        let mut opened = Vec::new();
        let mut raw = Vec::with_capacity(m.rights.len());
        for &id in &m.rights {
            match rights.made.get(&id) {
                Some(fd) => raw.push(fd.as_raw_fd()),
                None => {
                    let fd = (rights.open)(id, for_id, rights.made)?;
                    raw.push(fd.raw());
                    opened.push(fd);
                }
            }
        }
        let rights = [socket::ControlMessage::ScmRights(&raw)];
        let cmsgs = if raw.is_empty() { &[][..] } else { &rights[..] };
        let send = || {
            socket::sendmsg(
                from.as_raw_fd(),
                &[std::io::IoSlice::new(&m.bytes)],
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                to,
            )
        };
        let sent = match to {
            Some(_) => by_name(root, ino, "refill the queue", send)?,
            None => send().map_err(sys(ino, "refill the queue"))?,
        };
        if sent != m.bytes.len() {
            return Err(fail(
                ino,
                format!("queue refill: {sent} of {} bytes sent", m.bytes.len()),
            ));
        }
    }
    Ok(())
}

/// Binds `fd` to the name of `e`, with the socket file as it was (a removed file is dealt with
/// in `ghost`).
fn bind(e: &UnixSkEntry, fd: &OwnedFd, root: &FsRoot) -> Result<(), UnixRestoreError> {
    // The socket file as criu reaches it.
    let path = name_path(e).map(|p| root.resolve(p));
    if let Some(p) = &path {
        // A socket file left by the dumped process would make bind fail.
        if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket()) {
            std::fs::remove_file(p)
                .map_err(|err| fail(e.ino, format!("remove stale {}: {err}", p.display())))?;
        }
    }
    let addr = address(e)?;
    by_name(root, e.ino, "bind", || socket::bind(fd.as_raw_fd(), &addr))?;
    let (Some(p), Some(perms)) = (path, &e.file_perms) else {
        return Ok(());
    };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(perms.mode & 0o7777))
        .map_err(|err| fail(e.ino, format!("chmod {}: {err}", p.display())))?;
    nix::unistd::chown(
        &p,
        Some(nix::unistd::Uid::from_raw(perms.uid)),
        Some(nix::unistd::Gid::from_raw(perms.gid)),
    )
    .map_err(sys(e.ino, "chown of the socket file"))?;
    Ok(())
}

fn listen(e: &UnixSkEntry, fd: &OwnedFd) -> Result<(), UnixRestoreError> {
    if e.state != TCP_LISTEN {
        return Ok(());
    }
    let backlog = socket::Backlog::new(e.backlog.min(i32::MAX as u32) as i32)
        .map_err(sys(e.ino, "backlog"))?;
    socket::listen(fd, backlog).map_err(sys(e.ino, "listen"))
}

/// Sends the queue of the named socket `e` again from a throwaway socket.
fn refill_by_name(
    e: &UnixSkEntry,
    msgs: &[Msg],
    rights: Rights,
    netns: &NetNamespaces,
) -> Result<(), UnixRestoreError> {
    if msgs.is_empty() {
        return Ok(());
    }
    let kind = sock_type(e)?;
    let sender = in_netns(e, netns, || {
        socket::socket(AddressFamily::Unix, kind, SockFlag::SOCK_CLOEXEC, None)
            .map_err(sys(e.ino, "socket for the refill"))
    })?;
    refill(e.ino, e.id, &sender, Some(&address(e)?), msgs, rights)
}

fn connect(
    e: &UnixSkEntry,
    fd: &OwnedFd,
    target: &UnixSkEntry,
    root: &FsRoot,
) -> Result<(), UnixRestoreError> {
    if target.name.is_empty() {
        return Err(fail(
            e.ino,
            format!(
                "peer {} has no name to connect to (a socket connected outside the tree comes \
                 back only through --inherit-fd)",
                target.ino
            ),
        ));
    }
    let addr = address(target)?;
    by_name(root, e.ino, "connect", || {
        socket::connect(fd.as_raw_fd(), &addr)
    })
}

/// Sockets made, and what is still to do once all exist.
#[derive(Default)]
struct Build<'a> {
    made: BTreeMap<u32, OwnedFd>,
    /// (socket, the peer it connects to by name).
    to_connect: Vec<(&'a UnixSkEntry, &'a UnixSkEntry)>,
    /// Queues sent again by the peer: (receiver id, sender id).
    from_peer: Vec<(u32, u32)>,
    /// Queues sent again by the other end of a pair, closed afterwards: (receiver, that end).
    from_mate: Vec<(&'a UnixSkEntry, OwnedFd)>,
    /// Named sockets whose queue is sent again by name.
    by_name: Vec<&'a UnixSkEntry>,
    /// Sockets bound to a name whose file was removed.
    ghosts: Vec<&'a UnixSkEntry>,
}

impl<'a> Build<'a> {
    /// Binds and listens now, or later for a removed name; `refill` when the queue is still
    /// to be sent by name.
    fn place(
        &mut self,
        e: &'a UnixSkEntry,
        fd: &OwnedFd,
        refill: bool,
        root: &FsRoot,
    ) -> Result<(), UnixRestoreError> {
        if !binds(e) {
            return listen(e, fd);
        }
        if refill {
            self.by_name.push(e);
        }
        if e.deleted == Some(true) && name_path(e).is_some() {
            self.ghosts.push(e);
            return Ok(());
        }
        bind(e, fd, root)?;
        listen(e, fd)
    }
}

/// Makes all sockets but the `inherited` ones (given by criu's caller, left as they are);
/// returns them by files.img id. The other end of a pair whose end is inherited cannot join
/// it again (an unnamed pair is connected for good): it comes back as a connection whose
/// other end is closed, or, for a datagram socket whose inherited peer has a name, connected
/// to that name.
fn build(
    entries: &[&UnixSkEntry],
    queues: &HashMap<u32, Vec<Msg>>,
    opts: &RestoreFileOptions,
    inherited: &BTreeSet<u32>,
    (root, netns): (&FsRoot, &NetNamespaces),
    open: &OpenInFlight,
) -> Result<BTreeMap<u32, OwnedFd>, UnixRestoreError> {
    let by_ino: HashMap<u32, &UnixSkEntry> = entries.iter().map(|e| (e.ino, *e)).collect();
    let queue_of = |e: &UnixSkEntry| queues.get(&e.id).map_or(&[][..], Vec::as_slice);
    let mut b = Build::default();
    let mut ordered: Vec<&UnixSkEntry> = entries.to_vec();
    ordered.sort_by_key(|e| e.id);
    for &e in &ordered {
        if e.uflags & USK_EXTERN != 0 || b.made.contains_key(&e.id) || inherited.contains(&e.id) {
            continue;
        }
        let peer = by_ino.get(&e.peer).copied().filter(|p| p.ino != e.ino);
        let mutual = peer.filter(|p| p.peer == e.ino && p.uflags & USK_EXTERN == 0);
        let mate_inherited = mutual.filter(|p| inherited.contains(&p.id));
        let mutual = mutual.filter(|p| !inherited.contains(&p.id));
        if let Some(p) = mutual {
            let (fa, fb) = new_pair(e, netns)?;
            b.place(e, &fa, false, root)?;
            b.place(p, &fb, false, root)?;
            b.made.insert(e.id, fa);
            b.made.insert(p.id, fb);
            b.from_peer.push((e.id, p.id));
            b.from_peer.push((p.id, e.id));
            continue;
        }
        let queue = queue_of(e);
        // A connection whose other end is gone, or an unnamed socket holding messages from a
        // peer that is gone: one end of a pair, the other end closed after the refill.
        let orphan = match mate_inherited {
            Some(p) => stream_like(e) || p.name.is_empty(),
            None => {
                e.peer == 0
                    && ((stream_like(e) && e.state == TCP_ESTABLISHED)
                        || (!queue.is_empty() && !binds(e)))
            }
        };
        if let Some(p) = mate_inherited.filter(|_| orphan) {
            tracing::warn!(
                "unix socket {}: its peer {} is inherited; it comes back connected to a closed end",
                e.ino,
                p.ino
            );
        }
        let fd = if orphan {
            let (fa, fb) = new_pair(e, netns)?;
            b.from_mate.push((e, fb));
            fa
        } else {
            if !queue.is_empty() && !binds(e) {
                return Err(fail(e.ino, "queued data but no way to send it again"));
            }
            new_socket(e, netns)?
        };
        b.place(e, &fd, !orphan && !queue.is_empty(), root)?;
        if e.peer != 0 && !orphan {
            // A datagram socket may be connected to itself.
            let target = by_ino
                .get(&e.peer)
                .copied()
                .ok_or_else(|| fail(e.ino, format!("peer {} not in the images", e.peer)))?;
            if target.uflags & USK_EXTERN != 0 && !opts.ext_unix_sk {
                return Err(fail(
                    e.ino,
                    format!(
                        "peer {} is outside the restored tree; consider --ext-unix-sk",
                        e.peer
                    ),
                ));
            }
            b.to_connect.push((e, target));
        }
        b.made.insert(e.id, fd);
    }
    // Queues once every socket exists (messages may carry sockets), and before connects: a
    // connected datagram socket takes messages only from its peer.
    let rights = Rights {
        made: &b.made,
        open,
        root,
    };
    for &(to, from) in &b.from_peer {
        let e = entries.iter().find(|e| e.id == to).copied();
        let (ino, queue) = (e.map_or(0, |e| e.ino), e.map_or(&[][..], queue_of));
        refill(ino, to, &b.made[&from], None, queue, rights)?;
    }
    for (e, mate) in std::mem::take(&mut b.from_mate) {
        refill(e.ino, e.id, &mate, None, queue_of(e), rights)?;
    }
    for e in b
        .by_name
        .iter()
        .filter(|e| !b.ghosts.iter().any(|g| g.id == e.id))
    {
        refill_by_name(e, queue_of(e), rights, netns)?;
    }
    // A removed name exists only while its socket's queue is refilled and its clients connect.
    for g in std::mem::take(&mut b.ghosts) {
        let fd = &b.made[&g.id];
        let refill_now = b.by_name.iter().any(|e| e.id == g.id);
        let (now, later): (Vec<_>, Vec<_>) =
            b.to_connect.drain(..).partition(|(_, t)| t.ino == g.ino);
        b.to_connect = later;
        ghost::bound_for_a_while(g, root, || {
            let addr = address(g)?;
            by_name(root, g.ino, "bind", || socket::bind(fd.as_raw_fd(), &addr))?;
            listen(g, fd)?;
            if refill_now {
                refill_by_name(g, queue_of(g), rights, netns)?;
            }
            for (e, t) in &now {
                connect(e, &b.made[&e.id], t, root)?;
            }
            Ok(())
        })?;
    }
    for (e, target) in &b.to_connect {
        connect(e, &b.made[&e.id], target, root)?;
    }
    for &e in &ordered {
        if let Some(fd) = b.made.get(&e.id) {
            finish(e, fd)?;
        }
    }
    Ok(b.made)
}
