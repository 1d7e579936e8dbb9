//! POSIX message queues (mq_open): a queue's owner, mode, attributes and messages, read and
//! made again; and every queue of an IPC namespace, in criu-rs's own
//! `ipcns-posix-mq-<ns_id>.img` (CRIU has no image for them).
//!
//! - dump: [`read`] takes a queue's messages through a description of criu's own and puts
//!   them back in the order they came out (highest priority first, oldest first within one
//!   priority), which is the queue's order, so the queue holds the same messages after. A
//!   registered notification (mq_notify) is refused: its `sigev_value` cannot be read from
//!   outside the owner, and putting the messages back into the emptied queue would fire it.
//!   [`dump_ns`] lists the queues of the namespace through a detached mqueue mount made from
//!   a thread in that namespace (fsopen/fsmount), so queues no fd holds come too.
//! - restore: [`create`] makes a queue with its attributes, owner, mode and messages;
//!   [`restore_ns`] makes every queue of the image in the namespace the calling thread is in.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use criu_proto::images::{PosixMqEntry, PosixMqMsg};
use criu_proto::{ImageKind, ImageReader, ImageWriter};
use criu_sys::mqueue;
use nix::errno::Errno;

#[derive(Debug, thiserror::Error)]
pub enum MqError {
    #[error("POSIX message queue /{name}: {what}: {errno}")]
    Kernel {
        name: String,
        what: String,
        errno: Errno,
    },
    #[error("POSIX message queue /{name}: {what}")]
    Bad { name: String, what: String },
    #[error("POSIX message queues: {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] criu_proto::Error),
}

fn kernel(name: &str, what: impl Into<String>) -> impl FnOnce(Errno) -> MqError + '_ {
    let what = what.into();
    move |errno| MqError::Kernel {
        name: name.to_string(),
        what,
        errno,
    }
}

fn bad(name: &str, what: impl Into<String>) -> MqError {
    MqError::Bad {
        name: name.to_string(),
        what: what.into(),
    }
}

/// The largest message size an image may ask for (the kernel's hard limit on msgsize_max).
const MAX_MSGSIZE: i64 = 16 << 20;
/// The most messages an image may ask for (the kernel's hard limit on msg_max).
const MAX_MSGS: i64 = 65536;

/// The notification registered on a queue, from the text a read of it gives
/// (`QSIZE:.. NOTIFY:.. SIGNO:.. NOTIFY_PID:..`): (sigev_notify, signal, pid), or None.
pub fn notification(status: &str) -> Option<(i32, i32, i32)> {
    let field = |key: &str| -> Option<i32> {
        let rest = status.split(key).nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    };
    match field("NOTIFY_PID:") {
        Some(pid) if pid != 0 => Some((field("NOTIFY:")?, field("SIGNO:")?, pid)),
        _ => None,
    }
}

/// Reads the queue `name` through `queue`, criu's own description of it opened O_RDWR with
/// O_NONBLOCK (a fresh open, so its file position is 0): the queue holds the same messages
/// in the same order afterwards.
pub fn read(queue: &OwnedFd, name: &str) -> Result<PosixMqEntry, MqError> {
    let mut text = [0u8; 256];
    let len = nix::sys::uio::pread(queue.as_fd(), &mut text, 0)
        .map_err(kernel(name, "cannot read its status"))?;
    let status = String::from_utf8_lossy(&text[..len]);
    if let Some((how, signo, pid)) = notification(&status) {
        let how = match how {
            libc::SIGEV_SIGNAL => format!("SIGEV_SIGNAL with signal {signo}"),
            libc::SIGEV_NONE => "SIGEV_NONE".to_string(),
            libc::SIGEV_THREAD => "SIGEV_THREAD".to_string(),
            n => format!("sigev_notify {n}"),
        };
        return Err(bad(
            name,
            format!(
                "pid {pid} registered a notification ({how}) with mq_notify, which is not \
                 dumped (its sigev_value cannot be read from outside the task)"
            ),
        ));
    }
    let meta = std::fs::File::from(queue.try_clone().map_err(|e| bad(name, e.to_string()))?)
        .metadata()
        .map_err(|e| bad(name, format!("cannot stat: {e}")))?;
    let attr = mqueue::getattr(queue.as_fd()).map_err(kernel(name, "mq_getattr"))?;
    let msgs = take_all(queue.as_fd(), name, &attr)?;
    put_back(queue.as_fd(), name, &msgs)?;
    Ok(PosixMqEntry {
        name: name.to_string(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        maxmsg: attr.maxmsg,
        msgsize: attr.msgsize,
        msgs,
    })
}

fn take_all(
    queue: BorrowedFd<'_>,
    name: &str,
    attr: &mqueue::MqAttr,
) -> Result<Vec<PosixMqMsg>, MqError> {
    let mut buf = vec![0u8; attr.msgsize.clamp(1, MAX_MSGSIZE) as usize];
    let mut msgs = Vec::with_capacity(attr.curmsgs.clamp(0, MAX_MSGS) as usize);
    loop {
        match mqueue::receive(queue, &mut buf) {
            Ok((len, prio)) => msgs.push(PosixMqMsg {
                prio,
                data: buf[..len].to_vec(),
            }),
            Err(Errno::EAGAIN) => break,
            Err(e) => {
                // What was taken goes back before failing.
                let back = put_back(queue, name, &msgs);
                return Err(back.err().unwrap_or_else(|| kernel(name, "mq_receive")(e)));
            }
        }
    }
    if msgs.len() as i64 != attr.curmsgs {
        let taken = msgs.len();
        put_back(queue, name, &msgs)?;
        return Err(bad(
            name,
            format!(
                "held {} messages but {taken} came out (does a task outside the dump use it?)",
                attr.curmsgs
            ),
        ));
    }
    Ok(msgs)
}

fn put_back(queue: BorrowedFd<'_>, name: &str, msgs: &[PosixMqMsg]) -> Result<(), MqError> {
    for (i, m) in msgs.iter().enumerate() {
        mqueue::send(queue, &m.data, m.prio).map_err(kernel(
            name,
            format!(
                "cannot put message {} of {} back (the rest are lost)",
                i + 1,
                msgs.len()
            ),
        ))?;
    }
    Ok(())
}

/// Checks what an image says about a queue before anything is made from it.
fn check(e: &PosixMqEntry) -> Result<(), MqError> {
    let name = &e.name;
    if name.is_empty() || name.contains('/') || name.contains('\0') || name.len() > 255 {
        return Err(bad(name, "not a queue name"));
    }
    if !(1..=MAX_MSGS).contains(&e.maxmsg) || !(1..=MAX_MSGSIZE).contains(&e.msgsize) {
        return Err(bad(
            name,
            format!("bad attributes: maxmsg {}, msgsize {}", e.maxmsg, e.msgsize),
        ));
    }
    if e.msgs.len() as i64 > e.maxmsg {
        return Err(bad(
            name,
            format!("{} messages in a queue of {}", e.msgs.len(), e.maxmsg),
        ));
    }
    if let Some(m) = e.msgs.iter().find(|m| m.data.len() as i64 > e.msgsize) {
        return Err(bad(
            name,
            format!(
                "a message of {} bytes in a queue of {}-byte messages",
                m.data.len(),
                e.msgsize
            ),
        ));
    }
    Ok(())
}

/// Makes the queue `e` (which must not exist) in the calling thread's IPC namespace, with its
/// attributes, owner, mode and messages, and returns criu's description of it (O_RDWR,
/// O_NONBLOCK, close-on-exec). With `unlinked` its name is removed again at once.
pub fn create(e: &PosixMqEntry, unlinked: bool) -> Result<OwnedFd, MqError> {
    check(e)?;
    let name = &e.name;
    let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NONBLOCK | libc::O_CLOEXEC;
    let fd = mqueue::open(name, flags, e.mode & 0o777, Some((e.maxmsg, e.msgsize)))
        .map_err(kernel(name, "mq_open O_CREAT|O_EXCL"))?;
    let made = fill(&fd, e);
    if unlinked || made.is_err() {
        mqueue::unlink(name).map_err(kernel(name, "mq_unlink"))?;
    }
    made?;
    Ok(fd)
}

fn fill(fd: &OwnedFd, e: &PosixMqEntry) -> Result<(), MqError> {
    let name = &e.name;
    // mq_open applied criu's umask; the mode is set again whole.
    nix::sys::stat::fchmod(
        fd.as_fd(),
        nix::sys::stat::Mode::from_bits_truncate(e.mode & 0o7777),
    )
    .map_err(kernel(name, "fchmod"))?;
    nix::unistd::fchown(
        fd.as_fd(),
        Some(nix::unistd::Uid::from_raw(e.uid)),
        Some(nix::unistd::Gid::from_raw(e.gid)),
    )
    .map_err(kernel(name, "fchown"))?;
    put_back(fd.as_fd(), name, &e.msgs)
}

/// The mqueue filesystem of the IPC namespace the calling thread is in (one per namespace),
/// as a mount of its own that is never attached anywhere.
fn ns_fs() -> Result<OwnedFd, MqError> {
    use rustix::mount::{fsconfig_create, fsmount, fsopen, FsMountFlags, FsOpenFlags};
    let io = |what: &str| {
        let what = what.to_string();
        move |e: rustix::io::Errno| MqError::Io {
            what,
            source: std::io::Error::from_raw_os_error(e.raw_os_error()),
        }
    };
    let fs = fsopen("mqueue", FsOpenFlags::FSOPEN_CLOEXEC).map_err(io("fsopen mqueue"))?;
    fsconfig_create(&fs).map_err(io("create an mqueue filesystem"))?;
    fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        rustix::mount::MountAttrFlags::empty(),
    )
    .map_err(io("fsmount mqueue"))
}

/// The device of the mqueue filesystem of `pid`'s IPC namespace: the queues of that
/// namespace, and no others, are files of it.
pub fn fs_dev_of(pid: i32) -> Result<u64, MqError> {
    let dev = crate::enter::in_namespaces_of(pid, &[criu_procfs::NsKind::Ipc], || {
        let mnt = ns_fs()?;
        let meta = std::fs::File::from(mnt)
            .metadata()
            .map_err(|source| MqError::Io {
                what: "stat the mqueue filesystem".into(),
                source,
            })?;
        Ok::<_, MqError>(meta.dev())
    });
    dev.map_err(|e| MqError::Io {
        what: format!("ipc namespace of pid {pid}"),
        source: std::io::Error::other(e.to_string()),
    })?
}

/// The queues of the IPC namespace the calling thread is in, read as [`read`] does, in name
/// order.
pub fn list_ns() -> Result<Vec<PosixMqEntry>, MqError> {
    let mnt = ns_fs()?;
    let root = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&mnt));
    let mut names = Vec::new();
    let dir = std::fs::read_dir(&root).map_err(|source| MqError::Io {
        what: "list the mqueue filesystem".into(),
        source,
    })?;
    for entry in dir {
        let entry = entry.map_err(|source| MqError::Io {
            what: "list the mqueue filesystem".into(),
            source,
        })?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let queue = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(Path::new(&root).join(&name))
            .map_err(|e| bad(&name, format!("cannot open: {e}")))?;
        out.push(read(&OwnedFd::from(queue), &name)?);
    }
    Ok(out)
}

/// Writes the queues of the calling thread's IPC namespace to `ipcns-posix-mq-<ns_id>.img`;
/// how many.
pub fn dump_ns(ns_id: u32, dir: &Path) -> Result<u32, MqError> {
    let queues = list_ns()?;
    let mut w = ImageWriter::create(dir, &ImageKind::POSIX_MQ, Some(u64::from(ns_id)))?;
    for q in &queues {
        w.write(q)?;
    }
    w.finish()?;
    Ok(queues.len() as u32)
}

/// Makes every queue of `ipcns-posix-mq-<ns_id>.img` (if the dump wrote one) in the calling
/// thread's (fresh) IPC namespace; how many.
pub fn restore_ns(ns_id: u32, dir: &Path) -> Result<u32, MqError> {
    let Some(mut r) =
        ImageReader::open_if_exists(dir, &ImageKind::POSIX_MQ, Some(u64::from(ns_id)))?
    else {
        return Ok(0);
    };
    let mut n = 0;
    while let Some(e) = r.read::<PosixMqEntry>()? {
        drop(create(&e, false)?);
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, msgs: &[(u32, &[u8])]) -> PosixMqEntry {
        PosixMqEntry {
            name: name.to_string(),
            mode: 0o640,
            uid: 0,
            gid: 0,
            maxmsg: 5,
            msgsize: 32,
            msgs: msgs
                .iter()
                .map(|&(prio, data)| PosixMqMsg {
                    prio,
                    data: data.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn notification_is_read_from_the_status_text() {
        let none = "QSIZE:0          NOTIFY:0     SIGNO:0     NOTIFY_PID:0     \n";
        assert_eq!(notification(none), None);
        let sig = "QSIZE:12         NOTIFY:0     SIGNO:10    NOTIFY_PID:4242  \n";
        assert_eq!(notification(sig), Some((0, 10, 4242)));
        assert_eq!(notification("garbage"), None);
    }

    #[test]
    fn bad_entries_are_refused_before_anything_is_made() {
        let mut e = entry("a/b", &[]);
        assert!(check(&e)
            .unwrap_err()
            .to_string()
            .contains("not a queue name"));
        e.name = "q".into();
        e.maxmsg = 0;
        assert!(check(&e).is_err());
        let mut e = entry("q", &[(1, &[0u8; 33])]);
        assert!(check(&e).unwrap_err().to_string().contains("33 bytes"));
        e.msgs = (0..6).map(|_| e.msgs[0].clone()).collect();
        assert!(check(&e).is_err());
    }

    #[test]
    fn a_queue_made_again_holds_its_messages_and_reads_the_same_twice() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("needs root (fchown): skipped");
            return;
        }
        let name = format!("criu-rs-ns-test-{}", std::process::id());
        let want = entry(
            &name,
            &[(7, b"seven"), (3, b"three-a"), (3, b"three-b"), (0, b"")],
        );
        let fd = create(&want, true).unwrap();
        let got = read(&fd, &name).unwrap();
        assert_eq!(got, want);
        // The read put everything back.
        let again = read(&fd, &name).unwrap();
        assert_eq!(again, want);
        // Unlinked: the name is free again.
        assert_eq!(
            mqueue::open(&name, libc::O_RDONLY, 0, None).unwrap_err(),
            Errno::ENOENT
        );
    }
}
