//! `/proc/PID/fdinfo/FD`: position, flags and mount of an open file, plus lines that depend
//! on what the file is (eventfd, epoll, inotify, fanotify, signalfd, timerfd, pidfd, bpf map)
//! and its locks.

use crate::error::{ParseError, Result};
use crate::locks::{parse_lock_line, FileLock};
use crate::read::{pid_path, read_parsed};
use crate::text::{self, fields, find, lines, need, show, tagged_pairs};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FdInfo {
    pub pos: i64,
    /// O_* flags as the kernel keeps them (printed in octal).
    pub flags: u32,
    pub mnt_id: i32,
    /// Inode number of the open file (kernel 5.3 and later).
    pub ino: Option<u64>,
    /// Locks held through this open file.
    pub locks: Vec<FileLock>,
    pub eventfd: Option<EventfdInfo>,
    /// One per watched fd; empty for an epoll with nothing registered.
    pub epoll_targets: Vec<EpollTarget>,
    /// One per watch; empty for an inotify with no watches.
    pub inotify_watches: Vec<InotifyWatch>,
    pub fanotify: Option<FanotifyInfo>,
    pub signalfd_mask: Option<u64>,
    pub timerfd: Option<TimerfdInfo>,
    pub pidfd: Option<PidfdInfo>,
    pub bpf_map: Option<BpfMapInfo>,
    /// For a pty master: the slave's index.
    pub tty_index: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventfdInfo {
    pub count: u64,
    /// Kernel 5.13 and later.
    pub id: Option<u32>,
    /// Kernel 6.4 and later.
    pub semaphore: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpollTarget {
    pub tfd: i32,
    pub events: u32,
    pub data: u64,
    /// pos, ino and sdev of the target file (kernel 3.19 and later).
    pub pos: Option<i64>,
    pub ino: Option<u64>,
    /// Kernel-encoded device; see [`split_kernel_dev`].
    pub sdev: Option<u32>,
}

/// An exportfs file handle, as inotify and fanotify print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHandle {
    pub bytes: u32,
    pub handle_type: i32,
    pub handle: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InotifyWatch {
    pub wd: i32,
    pub ino: u64,
    /// Kernel-encoded device; see [`split_kernel_dev`].
    pub sdev: u32,
    pub mask: u32,
    pub ignored_mask: u32,
    /// Absent when the kernel cannot export handles.
    pub fhandle: Option<FileHandle>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FanotifyInfo {
    /// fanotify_init flags.
    pub flags: u32,
    /// fanotify_init event_f_flags.
    pub event_flags: u32,
    pub marks: Vec<FanotifyMark>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanotifyMark {
    pub target: FanotifyTarget,
    pub mflags: u32,
    pub mask: u32,
    pub ignored_mask: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FanotifyTarget {
    Inode {
        ino: u64,
        sdev: u32,
        fhandle: Option<FileHandle>,
    },
    Mount {
        mnt_id: i32,
    },
    Filesystem {
        sdev: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerfdInfo {
    pub clockid: i32,
    pub ticks: u64,
    /// TFD_TIMER_* flags (printed in octal).
    pub settime_flags: u32,
    /// Time left until expiry: (seconds, nanoseconds).
    pub it_value: (u64, u64),
    pub it_interval: (u64, u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidfdInfo {
    /// -1 once the process is gone, 0 if it is outside the reader's pid namespace.
    pub pid: i32,
    /// Ids in each nested pid namespace, outermost first.
    pub ns_pid: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BpfMapInfo {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub map_extra: Option<u64>,
    pub memlock: u64,
    pub map_id: u32,
    pub frozen: bool,
}

/// The kernel's internal dev_t (major << 20 | minor), as fdinfo prints sdev, to (major, minor).
pub fn split_kernel_dev(sdev: u32) -> (u32, u32) {
    (sdev >> 20, sdev & 0xfffff)
}

/// Timerfd lines arrive one by one; they are collected here and checked at the end.
#[derive(Default)]
struct TimerParts {
    clockid: Option<i32>,
    ticks: Option<u64>,
    settime_flags: Option<u32>,
    it_value: Option<(u64, u64)>,
    it_interval: Option<(u64, u64)>,
}

pub fn parse_fdinfo(text: impl AsRef<[u8]>) -> Result<FdInfo, ParseError> {
    let mut info = FdInfo::default();
    let mut seen_pos = false;
    let mut seen_flags = false;
    let mut timer = TimerParts::default();
    let mut eventfd: Option<EventfdInfo> = None;
    for (n, line) in lines(text.as_ref()) {
        let Some((key, value)) = text::key_value(line) else {
            return Err(ParseError::new(n, format!("no ':' in {}", show(line))));
        };
        let what = text::lossy(key);
        let what = what.as_str();
        match key {
            b"pos" => {
                info.pos = text::dec(value, n, what)?;
                seen_pos = true;
            }
            b"flags" => {
                info.flags = text::oct_u32(value, n, what)?;
                seen_flags = true;
            }
            b"mnt_id" => info.mnt_id = text::dec(value, n, what)?,
            b"ino" => info.ino = Some(text::dec(value, n, what)?),
            // An empty lock line means its owner is not visible from here (old kernels).
            b"lock" if value.is_empty() => {}
            b"lock" => info.locks.push(parse_lock_line(value, n)?),
            b"eventfd-count" => {
                let count = text::hex_u64(value, n, what)?;
                eventfd
                    .get_or_insert(EventfdInfo {
                        count,
                        id: None,
                        semaphore: None,
                    })
                    .count = count;
            }
            b"eventfd-id" => {
                let e = eventfd
                    .as_mut()
                    .ok_or_else(|| ParseError::new(n, "eventfd-id before eventfd-count"))?;
                e.id = Some(text::dec(value, n, what)?);
            }
            b"eventfd-semaphore" => {
                let e = eventfd
                    .as_mut()
                    .ok_or_else(|| ParseError::new(n, "eventfd-semaphore before eventfd-count"))?;
                e.semaphore = Some(text::dec::<u32>(value, n, what)? != 0);
            }
            b"tfd" => info.epoll_targets.push(parse_tfd(line, n)?),
            b"inotify wd" => info.inotify_watches.push(parse_inotify(line, n)?),
            b"fanotify flags" => {
                let p = tagged_pairs(line);
                let f = info.fanotify.get_or_insert_with(FanotifyInfo::default);
                f.flags = text::hex_u32(need(&p, "flags", n)?, n, "fanotify flags")?;
                f.event_flags =
                    text::hex_u32(need(&p, "event-flags", n)?, n, "fanotify event-flags")?;
            }
            b"fanotify ino" | b"fanotify mnt_id" | b"fanotify sdev" => {
                let mark = parse_fanotify_mark(line, n)?;
                info.fanotify
                    .get_or_insert_with(FanotifyInfo::default)
                    .marks
                    .push(mark);
            }
            b"sigmask" => info.signalfd_mask = Some(text::hex_u64(value, n, what)?),
            b"clockid" => timer.clockid = Some(text::dec(value, n, what)?),
            b"ticks" => timer.ticks = Some(text::dec(value, n, what)?),
            b"settime flags" => timer.settime_flags = Some(text::oct_u32(value, n, what)?),
            b"it_value" => timer.it_value = Some(parse_timespec(value, n, what)?),
            b"it_interval" => timer.it_interval = Some(parse_timespec(value, n, what)?),
            b"Pid" => {
                info.pidfd
                    .get_or_insert(PidfdInfo {
                        pid: 0,
                        ns_pid: Vec::new(),
                    })
                    .pid = text::dec(value, n, what)?
            }
            b"NSpid" => {
                let ids = fields(value)
                    .map(|f| text::dec(f, n, what))
                    .collect::<Result<_, _>>()?;
                info.pidfd
                    .get_or_insert(PidfdInfo {
                        pid: 0,
                        ns_pid: Vec::new(),
                    })
                    .ns_pid = ids;
            }
            b"tty-index" => info.tty_index = Some(text::dec(value, n, what)?),
            b"map_type" | b"key_size" | b"value_size" | b"max_entries" | b"map_flags"
            | b"map_extra" | b"memlock" | b"map_id" | b"frozen" => {
                let m = info.bpf_map.get_or_insert_with(BpfMapInfo::default);
                match key {
                    b"map_type" => m.map_type = text::dec(value, n, what)?,
                    b"key_size" => m.key_size = text::dec(value, n, what)?,
                    b"value_size" => m.value_size = text::dec(value, n, what)?,
                    b"max_entries" => m.max_entries = text::dec(value, n, what)?,
                    b"map_flags" => m.map_flags = text::hex_u32(value, n, what)?,
                    b"map_extra" => m.map_extra = Some(text::hex_u64(value, n, what)?),
                    b"memlock" => m.memlock = text::dec(value, n, what)?,
                    b"map_id" => m.map_id = text::dec(value, n, what)?,
                    _ => m.frozen = text::dec::<u32>(value, n, what)? != 0,
                }
            }
            _ => {} // lines of kinds nobody asked for (tun "iff", bpf progs, ...)
        }
    }
    if !seen_pos || !seen_flags {
        return Err(ParseError::whole(if seen_pos {
            "no flags line"
        } else {
            "no pos line"
        }));
    }
    info.eventfd = eventfd;
    info.timerfd = finish_timer(timer)?;
    Ok(info)
}

fn finish_timer(t: TimerParts) -> Result<Option<TimerfdInfo>, ParseError> {
    let Some(clockid) = t.clockid else {
        if t.ticks.is_some() || t.it_value.is_some() {
            return Err(ParseError::whole("timerfd lines without a clockid line"));
        }
        return Ok(None);
    };
    let missing = |what: &str| ParseError::whole(format!("timerfd has no {what} line"));
    Ok(Some(TimerfdInfo {
        clockid,
        ticks: t.ticks.ok_or_else(|| missing("ticks"))?,
        settime_flags: t.settime_flags.ok_or_else(|| missing("settime flags"))?,
        it_value: t.it_value.ok_or_else(|| missing("it_value"))?,
        it_interval: t.it_interval.ok_or_else(|| missing("it_interval"))?,
    }))
}

/// `(99, 999810730)`.
fn parse_timespec(v: &[u8], n: usize, what: &str) -> Result<(u64, u64), ParseError> {
    let bad = || ParseError::new(n, format!("bad {what} {}", show(v)));
    let inner = v
        .strip_prefix(b"(")
        .and_then(|v| v.strip_suffix(b")"))
        .ok_or_else(bad)?;
    let comma = inner.iter().position(|&b| b == b',').ok_or_else(bad)?;
    Ok((
        text::dec(text::trim(&inner[..comma]), n, what)?,
        text::dec(text::trim(&inner[comma + 1..]), n, what)?,
    ))
}

/// `tfd:        7 events: 80000019 data:         deadbeef  pos:0 ino:40f sdev:10`
fn parse_tfd(line: &[u8], n: usize) -> Result<EpollTarget, ParseError> {
    let p = tagged_pairs(line);
    let opt_hex = |k: &str| find(&p, k).map(|v| text::hex_u64(v, n, k)).transpose();
    Ok(EpollTarget {
        tfd: text::dec(need(&p, "tfd", n)?, n, "tfd")?,
        events: text::hex_u32(need(&p, "events", n)?, n, "events")?,
        data: text::hex_u64(need(&p, "data", n)?, n, "data")?,
        pos: find(&p, "pos")
            .map(|v| text::dec(v, n, "pos"))
            .transpose()?,
        ino: opt_hex("ino")?,
        sdev: find(&p, "sdev")
            .map(|v| text::hex_u32(v, n, "sdev"))
            .transpose()?,
    })
}

fn hex32(p: &[(&[u8], &[u8])], key: &str, n: usize) -> Result<u32, ParseError> {
    text::hex_u32(need(p, key, n)?, n, key)
}

fn parse_fhandle(p: &[(&[u8], &[u8])], n: usize) -> Result<Option<FileHandle>, ParseError> {
    let Some(bytes) = find(p, "fhandle-bytes") else {
        return Ok(None);
    };
    let handle_type = hex32(p, "fhandle-type", n)?;
    Ok(Some(FileHandle {
        bytes: text::hex_u32(bytes, n, "fhandle-bytes")?,
        handle_type: handle_type as i32,
        handle: text::hex_bytes(need(p, "f_handle", n)?, n, "f_handle")?,
    }))
}

/// `inotify wd:2 ino:263 sdev:fe00000 mask:2 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:6302000000000000`
fn parse_inotify(line: &[u8], n: usize) -> Result<InotifyWatch, ParseError> {
    let p = tagged_pairs(line);
    Ok(InotifyWatch {
        wd: hex32(&p, "wd", n)? as i32,
        ino: text::hex_u64(need(&p, "ino", n)?, n, "ino")?,
        sdev: hex32(&p, "sdev", n)?,
        mask: hex32(&p, "mask", n)?,
        ignored_mask: hex32(&p, "ignored_mask", n)?,
        fhandle: parse_fhandle(&p, n)?,
    })
}

/// `fanotify ino:3c4a7 sdev:fe00000 mflags:0 mask:28 ignored_mask:0 fhandle-bytes:8 ...`,
/// `fanotify mnt_id:1b mflags:0 mask:20 ignored_mask:0`, or `fanotify sdev:...` for a
/// whole filesystem.
fn parse_fanotify_mark(line: &[u8], n: usize) -> Result<FanotifyMark, ParseError> {
    let p = tagged_pairs(line);
    let target = if let Some(ino) = find(&p, "ino") {
        FanotifyTarget::Inode {
            ino: text::hex_u64(ino, n, "ino")?,
            sdev: hex32(&p, "sdev", n)?,
            fhandle: parse_fhandle(&p, n)?,
        }
    } else if let Some(mnt) = find(&p, "mnt_id") {
        FanotifyTarget::Mount {
            mnt_id: text::hex_u32(mnt, n, "mnt_id")? as i32,
        }
    } else {
        FanotifyTarget::Filesystem {
            sdev: hex32(&p, "sdev", n)?,
        }
    };
    Ok(FanotifyMark {
        target,
        mflags: hex32(&p, "mflags", n)?,
        mask: hex32(&p, "mask", n)?,
        ignored_mask: hex32(&p, "ignored_mask", n)?,
    })
}

pub fn read_fdinfo(pid: i32, fd: i32) -> Result<FdInfo> {
    read_parsed(pid_path(pid, &format!("fdinfo/{fd}")), |b| parse_fdinfo(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locks::{LockKind, LockType};

    fn sample(name: &str) -> FdInfo {
        let path = format!(
            "{}/tests/data/fdinfo/{name}.txt",
            env!("CARGO_MANIFEST_DIR")
        );
        parse_fdinfo(std::fs::read(&path).unwrap()).unwrap()
    }

    #[test]
    fn regular_file_with_locks() {
        let f = sample("posix+ofd");
        assert_eq!(
            (f.pos, f.flags, f.mnt_id, f.ino),
            (0, 0o100002, 27, Some(10011077))
        );
        assert_eq!(f.flags & libc::O_ACCMODE as u32, libc::O_RDWR as u32);
        assert_eq!(f.locks.len(), 2);
        assert_eq!(
            (f.locks[0].kind.clone(), f.locks[0].start, f.locks[0].end),
            (LockKind::Posix, 10, Some(29))
        );
        assert_eq!(
            (f.locks[1].kind.clone(), f.locks[1].lock_type),
            (LockKind::Ofd, LockType::Read)
        );
        let f = sample("deleted-flock");
        assert_eq!(f.locks[0].kind, LockKind::Flock);
        assert_eq!(f.locks[0].inode, f.ino);
        let f = sample("memfd");
        assert_eq!((f.mnt_id, f.ino), (0, Some(1032)));
        assert!(
            f.locks.is_empty() && f.eventfd.is_none() && f.timerfd.is_none() && f.pidfd.is_none()
        );
    }

    #[test]
    fn eventfd_epoll_signalfd() {
        let f = sample("eventfd");
        assert_eq!(
            f.eventfd,
            Some(EventfdInfo {
                count: 5,
                id: Some(1),
                semaphore: Some(true)
            })
        );
        assert_eq!(f.flags, 0o4002); // O_NONBLOCK | O_RDWR
        let f = sample("epoll");
        assert_eq!(f.flags & libc::O_CLOEXEC as u32, libc::O_CLOEXEC as u32);
        assert_eq!(
            f.epoll_targets,
            vec![EpollTarget {
                tfd: 7,
                events: 0x80000019,
                data: 0xdeadbeef,
                pos: Some(0),
                ino: Some(0x40f),
                sdev: Some(0x10)
            }]
        );
        assert_eq!(
            f.epoll_targets[0].events,
            (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLET) as u32
        );
        // Old kernels print only the first three fields.
        let old = parse_fdinfo("pos:\t0\nflags:\t02\nmnt_id:\t9\ntfd:        5 events:       19 data: 0000000000000005\n").unwrap();
        assert_eq!(old.epoll_targets[0].data, 5);
        assert_eq!(old.epoll_targets[0].pos, None);
        let f = sample("signalfd");
        assert_eq!(
            f.signalfd_mask,
            Some((1 << (libc::SIGUSR1 - 1)) | (1 << (libc::SIGTERM - 1)))
        );
    }

    #[test]
    fn inotify_and_fanotify() {
        let f = sample("inotify");
        assert_eq!(f.inotify_watches.len(), 2);
        let w = &f.inotify_watches[1];
        assert_eq!(
            (w.wd, w.ino, w.sdev, w.ignored_mask),
            (1, 0x3c4a7, 0xfe00000, 0)
        );
        assert_eq!(w.mask, libc::IN_CREATE | libc::IN_DELETE);
        assert_eq!(split_kernel_dev(w.sdev), (0xfe, 0));
        assert_eq!(
            w.fhandle,
            Some(FileHandle {
                bytes: 8,
                handle_type: 1,
                handle: vec![0xa7, 0xc4, 3, 0, 0, 0, 0, 0]
            })
        );
        assert_eq!(f.inotify_watches[0].mask, libc::IN_MODIFY);

        let f = sample("fanotify").fanotify.unwrap();
        assert_eq!((f.flags, f.event_flags), (0, 0x8000));
        assert_eq!(f.marks.len(), 2);
        assert_eq!(f.marks[0].target, FanotifyTarget::Mount { mnt_id: 0x1b });
        assert_eq!(f.marks[0].mask, 0x20);
        let FanotifyTarget::Inode { ino, sdev, fhandle } = &f.marks[1].target else {
            panic!("not an inode mark")
        };
        assert_eq!((*ino, *sdev), (0x3c4a7, 0xfe00000));
        assert_eq!(fhandle.as_ref().unwrap().handle.len(), 8);
        assert_eq!(f.marks[1].mask, 0x28);
        let fs = parse_fdinfo(
            "pos:\t0\nflags:\t02\nfanotify sdev:fe00000 mflags:0 mask:8 ignored_mask:0\n",
        )
        .unwrap();
        assert_eq!(
            fs.fanotify.unwrap().marks[0].target,
            FanotifyTarget::Filesystem { sdev: 0xfe00000 }
        );
        // Without exportfs the handle fields are missing.
        let bare =
            parse_fdinfo("pos:\t0\nflags:\t0\ninotify wd:3 ino:1 sdev:2 mask:4 ignored_mask:0\n")
                .unwrap();
        assert_eq!(bare.inotify_watches[0].fhandle, None);
    }

    #[test]
    fn timerfd_and_pidfd() {
        let t = sample("timerfd").timerfd.unwrap();
        assert_eq!(t.clockid, libc::CLOCK_MONOTONIC);
        assert_eq!((t.ticks, t.settime_flags), (0, 0));
        assert_eq!(t.it_value.0, 99);
        assert!(t.it_value.1 < 1_000_000_000);
        assert_eq!(t.it_interval, (1, 500));
        let p = sample("pidfd");
        assert_eq!(
            p.pidfd,
            Some(PidfdInfo {
                pid: 20519,
                ns_pid: vec![20519]
            })
        );
        assert_eq!(p.ino, Some(20520));
    }

    #[test]
    fn bpf_map_and_tty() {
        let text = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t7\nmap_type:\t1\nkey_size:\t4\nvalue_size:\t8\n\
                    max_entries:\t16\nmap_flags:\t0x1\nmap_extra:\t0x0\nmemlock:\t4096\nmap_id:\t12\nfrozen:\t1\n";
        let m = parse_fdinfo(text).unwrap().bpf_map.unwrap();
        assert_eq!(
            (m.map_type, m.key_size, m.value_size, m.max_entries),
            (1, 4, 8, 16)
        );
        assert_eq!(
            (m.map_flags, m.map_extra, m.memlock, m.map_id, m.frozen),
            (1, Some(0), 4096, 12, true)
        );
        let t = parse_fdinfo("pos:\t0\nflags:\t0100002\nmnt_id:\t26\ntty-index:\t3\n").unwrap();
        assert_eq!(t.tty_index, Some(3));
    }

    #[test]
    fn broken_fdinfo() {
        let err = |t: &str| parse_fdinfo(t).unwrap_err().to_string();
        assert_eq!(err("flags:\t02\n"), "no pos line");
        assert_eq!(err("pos:\t0\n"), "no flags line");
        assert_eq!(err("pos:\t0\nflags:\t9\n"), "line 2: bad flags \"9\"");
        assert_eq!(
            err("pos:\t0\nflags:\t0\nclockid: 1\nticks: 0\n"),
            "timerfd has no settime flags line"
        );
        assert_eq!(
            err("pos:\t0\nflags:\t0\nit_value: (1 2)\n"),
            "line 3: bad it_value \"(1 2)\""
        );
        assert_eq!(
            err("pos:\t0\nflags:\t0\ntfd: 1 events: 1\n"),
            "line 3: no data field"
        );
        assert_eq!(
            err("pos:\t0\nflags:\t0\ninotify wd:1 ino:zz\n"),
            "line 3: bad ino \"zz\""
        );
        assert_eq!(
            err("pos:\t0\nflags:\t0\nlock:\t1: FLOCK\n"),
            "line 3: expected 8 columns in lock line \"1: FLOCK\""
        );
        assert_eq!(err("garbage\n"), "line 1: no ':' in \"garbage\"");
    }
}
