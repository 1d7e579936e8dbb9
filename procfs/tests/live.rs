//! Read the real /proc files of this test process and check them against what the process
//! knows about itself from system calls. Tests may run in parallel threads, so each looks
//! only at things it created itself.

use criu_procfs::*;
use nix::unistd::{getgid, gettid, getuid};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;

fn me() -> i32 {
    std::process::id() as i32
}

#[test]
fn stat_and_status_match_syscalls() {
    let (pid, tid) = (me(), gettid().as_raw());
    let st = read_stat(pid).unwrap();
    let s = read_status(pid).unwrap();
    assert_eq!((st.pid, s.pid, s.tgid), (pid, pid, pid));
    assert_eq!(st.ppid, std::os::unix::process::parent_id() as i32);
    assert_eq!(s.ppid, st.ppid);
    assert_eq!(st.comm, s.name);
    assert_eq!(st.comm, values::read_comm(pid).unwrap());
    assert_eq!(s.uid[0], getuid().as_raw());
    assert_eq!(s.gid[0], getgid().as_raw());
    assert_eq!(s.vpid(), pid);
    assert_eq!(st.pgrp, nix::unistd::getpgrp().as_raw());
    assert_eq!(st.session, nix::unistd::getsid(None).unwrap().as_raw());
    let tst = read_thread_stat(pid, tid).unwrap();
    assert_eq!(tst.pid, tid);
    assert_eq!(tst.state, 'R');
    // The code of this test lies between start_code and end_code.
    let code = stat_and_status_match_syscalls as *const () as u64;
    assert!(
        st.start_code <= code && code < st.end_code,
        "{code:#x} not in code"
    );
}

#[test]
fn thread_name_and_signal_mask_per_thread() {
    use nix::sys::signal::{SigSet, Signal};
    let pid = me();
    std::thread::spawn(move || {
        let name = std::ffi::CString::new("t) (x y").unwrap();
        nix::sys::prctl::set_name(&name).unwrap();
        let mut set = SigSet::empty();
        set.add(Signal::SIGUSR2);
        set.add(Signal::SIGWINCH);
        set.thread_block().unwrap();
        let tid = gettid().as_raw();
        let st = read_thread_stat(pid, tid).unwrap();
        let s = read_thread_status(pid, tid).unwrap();
        assert_eq!(st.comm, "t) (x y");
        assert_eq!(s.name, "t) (x y");
        assert_eq!(values::read_thread_comm(pid, tid).unwrap(), "t) (x y");
        let want = (1u64 << (libc::SIGUSR2 - 1)) | (1u64 << (libc::SIGWINCH - 1));
        assert_eq!(s.sig_blk & want, want);
        assert_eq!(st.blocked & want, want);
        assert!(read_task_ids(pid).unwrap().contains(&tid));
    })
    .join()
    .unwrap();
}

#[test]
fn limits_match_getrlimit() {
    use nix::sys::resource::{getrlimit, Resource};
    let rows = read_limits(me()).unwrap();
    for (res, num) in [
        (Resource::RLIMIT_NOFILE, libc::RLIMIT_NOFILE),
        (Resource::RLIMIT_STACK, libc::RLIMIT_STACK),
        (Resource::RLIMIT_CORE, libc::RLIMIT_CORE),
    ] {
        let (soft, hard) = getrlimit(res).unwrap();
        let row = rows.iter().find(|r| r.resource == num).unwrap();
        assert_eq!((row.soft, row.hard), (soft, hard), "{}", row.name);
    }
}

#[test]
fn maps_smaps_and_map_files_cover_our_code() {
    let pid = me();
    let code = maps_smaps_and_map_files_cover_our_code as *const () as u64;
    let maps = read_maps(pid).unwrap();
    let vma = maps
        .iter()
        .find(|v| v.start <= code && code < v.end)
        .unwrap();
    assert!(vma.perms.exec && vma.perms.read && !vma.perms.write && !vma.perms.shared);
    let exe = std::env::current_exe().unwrap();
    assert_eq!(
        vma.name,
        VmaName::File {
            path: exe.clone(),
            deleted: false
        }
    );
    assert_eq!(vma.inode, std::fs::metadata(&exe).unwrap().ino());
    assert!(maps.iter().any(|v| v.name == VmaName::Vdso));

    let smaps = read_smaps(pid).unwrap();
    let e = smaps.iter().find(|e| e.vma.start == vma.start).unwrap();
    assert_eq!(e.vma, *vma);
    assert!(e
        .vm_flags
        .contains(VmFlags::READ | VmFlags::EXEC | VmFlags::MAYREAD));
    assert!(!e.vm_flags.contains(VmFlags::WRITE));
    assert!(
        e.unknown_flags.is_empty(),
        "kernel flags unknown to us: {:?}",
        e.unknown_flags
    );
    assert!(e.rss > 0);

    let files = read_map_files(pid).unwrap();
    let f = files.iter().find(|f| f.start == vma.start).unwrap();
    assert_eq!((f.end, &f.target), (vma.end, &exe));
    assert!(std::fs::metadata(maps::map_file_path(pid, f.start, f.end)).is_ok());
}

#[test]
fn fdinfo_fd_links_and_locks_of_a_file() {
    let pid = me();
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(b"0123456789").unwrap();
    file.lock().unwrap(); // flock(LOCK_EX)
    let fd = file.as_raw_fd();
    let info = read_fdinfo(pid, fd).unwrap();
    assert_eq!(info.pos, 10);
    assert_eq!(info.flags & libc::O_ACCMODE as u32, libc::O_RDWR as u32);
    assert_eq!(info.ino, Some(file.metadata().unwrap().ino()));
    assert!(read_mountinfo(pid)
        .unwrap()
        .iter()
        .any(|m| m.mnt_id == info.mnt_id));
    let lock = info
        .locks
        .iter()
        .find(|l| l.kind == LockKind::Flock)
        .unwrap();
    assert_eq!(
        (lock.lock_type, lock.pid, lock.inode),
        (LockType::Write, pid, info.ino)
    );
    let all = read_locks().unwrap();
    assert!(all
        .iter()
        .any(|l| l.kind == LockKind::Flock && l.pid == pid && l.inode == info.ino));

    let (reader, _writer) = std::io::pipe().unwrap();
    // Other test threads open and close fds meanwhile, so look only at ours.
    let numbers = fd::read_fd_numbers(pid).unwrap();
    assert!(numbers.contains(&fd) && numbers.contains(&reader.as_raw_fd()));
    let target = |n: i32| parse_fd_target(&fd::read_fd_link(pid, n).unwrap());
    assert!(matches!(target(fd), FdTarget::Path { deleted: true, .. }));
    let pipe_ino = std::fs::metadata(format!("/proc/self/fd/{}", reader.as_raw_fd()))
        .unwrap()
        .ino();
    assert_eq!(target(reader.as_raw_fd()), FdTarget::Pipe(pipe_ino));
}

#[test]
fn mountinfo_cgroup_and_namespaces() {
    let pid = me();
    let mounts = read_mountinfo(pid).unwrap();
    assert!(mounts
        .iter()
        .any(|m| m.mount_point == std::path::Path::new("/")));
    assert!(mounts.iter().any(|m| m.fstype == "proc"));
    let cg = read_cgroup(pid).unwrap();
    assert!(!cg.is_empty());
    let links = read_ns_links(pid).unwrap();
    for kind in [
        NsKind::Net,
        NsKind::Mnt,
        NsKind::Pid,
        NsKind::User,
        NsKind::Uts,
        NsKind::Ipc,
    ] {
        let l = links
            .iter()
            .find(|l| l.kind == kind && !l.for_children)
            .unwrap();
        let ino = std::fs::metadata(format!("/proc/self/ns/{}", kind.name()))
            .unwrap()
            .ino();
        assert_eq!(l.ino, ino, "{kind:?}");
        assert_eq!(read_ns(pid, kind).unwrap(), *l);
    }
}

#[test]
fn children_cmdline_auxv_and_values() {
    let pid = me();
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let kids = read_children(pid, gettid().as_raw()).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(kids.contains(&(child.id() as i32)), "{kids:?}");

    let args: Vec<_> = std::env::args_os().collect();
    assert_eq!(read_cmdline(pid).unwrap(), args);
    assert!(read_environ(pid)
        .unwrap()
        .iter()
        .all(|e| e.as_encoded_bytes().contains(&b'=')));

    let auxv = read_auxv(pid).unwrap();
    let at = |k: u64| auxv.iter().find(|(t, _)| *t == k).map(|(_, v)| *v);
    assert_eq!(at(libc::AT_PAGESZ), Some(PAGE_SIZE));
    assert_eq!(at(libc::AT_UID), Some(u64::from(getuid().as_raw())));

    assert_eq!(
        read_personality(pid).unwrap(),
        nix::sys::personality::get().unwrap().bits() as u32
    );
    let adj = read_oom_score_adj(pid).unwrap();
    assert!((-1000..=1000).contains(&adj));
    assert_eq!(
        read_timerslack_ns(pid).unwrap(),
        nix::sys::prctl::get_timerslack().unwrap() as u64
    );
    read_loginuid(pid).unwrap();
}

#[test]
fn posix_timer_is_listed() {
    use nix::sys::signal::{SigEvent, SigevNotify, Signal};
    use nix::sys::timer::Timer;
    use nix::time::ClockId;
    let ev = SigEvent::new(SigevNotify::SigevSignal {
        signal: Signal::SIGALRM,
        si_value: 0x5eed,
    });
    let _timer = Timer::new(ClockId::CLOCK_MONOTONIC, ev).unwrap();
    let timers = read_timers(me()).unwrap();
    let t = timers.iter().find(|t| t.sigev_value == 0x5eed).unwrap();
    assert_eq!(
        (t.signo, t.clock_id, t.sigev_notify),
        (libc::SIGALRM, libc::CLOCK_MONOTONIC, libc::SIGEV_SIGNAL)
    );
    assert_eq!(t.notify_pid, me());
}

#[test]
fn pagemap_finds_touched_pages() {
    // A large zeroed allocation is fresh mmap memory: no page is present until written.
    const PAGES: usize = 256;
    let mut buf = vec![0u8; (PAGES + 2) * PAGE_SIZE as usize];
    let first = (buf.as_ptr() as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let off = (first - buf.as_ptr() as u64) as usize;
    for i in (0..PAGES).step_by(2) {
        buf[off + i * PAGE_SIZE as usize] = 1;
    }
    let end = first + PAGES as u64 * PAGE_SIZE;
    let pm = Pagemap::open(me()).unwrap();
    let runs = pm.present_runs(first, end).unwrap();
    let want: Vec<PageRun> = (0..PAGES as u64)
        .step_by(2)
        .map(|i| PageRun {
            start: first + i * PAGE_SIZE,
            pages: 1,
        })
        .collect();
    assert_eq!(runs, want);
    let entries = pm.entries(first, end).unwrap();
    assert_eq!(entries.len(), PAGES);
    assert!(entries[0].exclusive() && !entries[0].file_or_shared());
    assert!(entries[0].pfn().unwrap() > 0, "root reads real PFNs");
    assert!(!entries[1].present());
    // Unaligned ranges are refused with the path in the message.
    let err = pm.present_runs(first + 1, end).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("/proc/{}/pagemap: bad range", me())),
        "{err}"
    );
    std::hint::black_box(&buf);
}

#[test]
fn missing_task_is_not_found() {
    // pid_max is at most 2^22, so this pid cannot exist.
    let err = read_stat(1 << 23).unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.path(), std::path::Path::new("/proc/8388608/stat"));
    assert!(err
        .to_string()
        .starts_with("cannot read /proc/8388608/stat: No such file"));
}

/// Every process on the machine parses: a wide sample of real files (kernel threads,
/// daemons, shells). Processes that exit meanwhile are skipped; parse errors fail.
#[test]
fn every_process_on_this_machine_parses() {
    fn ok<T>(r: Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) if e.is_not_found() => None,
            // Other users' processes may refuse some files; that is not a parse problem.
            Err(ProcError::Read { .. }) => None,
            Err(e) => panic!("{e}"),
        }
    }
    let mut checked = 0;
    for ent in std::fs::read_dir("/proc").unwrap() {
        let Some(pid) = ent
            .unwrap()
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if ok(read_stat(pid)).is_none() {
            continue;
        }
        ok(read_status(pid));
        ok(read_maps(pid));
        ok(read_smaps(pid));
        ok(read_limits(pid));
        ok(read_mountinfo(pid));
        ok(read_cgroup(pid));
        ok(read_ns_links(pid));
        ok(read_timers(pid));
        ok(read_auxv(pid));
        ok(read_cmdline(pid));
        for tid in ok(read_task_ids(pid)).unwrap_or_default() {
            ok(read_thread_stat(pid, tid));
            ok(read_children(pid, tid));
        }
        for fd in ok(fd::read_fd_numbers(pid)).unwrap_or_default() {
            ok(read_fdinfo(pid, fd));
            ok(fd::read_fd_link(pid, fd));
        }
        checked += 1;
    }
    assert!(checked > 10, "only {checked} processes");
}
