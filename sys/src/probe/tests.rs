//! Each probe's answer is compared with the same fact found another way: the kernel config
//! (/proc/config.gz), the kernel version, other /proc files, or a different syscall.
//! These run as root on the test machine.

use super::*;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

/// CONFIG_NAME from /proc/config.gz: Some("y"/"m"/value) or None when not set.
pub(super) fn kconfig(name: &str) -> Option<String> {
    static CONFIG: OnceLock<String> = OnceLock::new();
    let text = CONFIG.get_or_init(|| {
        let out = std::process::Command::new("zcat")
            .arg("/proc/config.gz")
            .output()
            .expect("zcat /proc/config.gz");
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    let key = format!("CONFIG_{name}=");
    text.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .map(str::to_string)
}

pub(super) fn enabled(name: &str) -> bool {
    matches!(kconfig(name).as_deref(), Some("y") | Some("m"))
}

/// (major, minor) of the running kernel, from uname.
pub(super) fn version() -> (u32, u32) {
    let rel = nix::sys::utsname::uname().expect("uname");
    let rel = rel.release().to_string_lossy().into_owned();
    let mut it = rel
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

pub(super) fn at_least(major: u32, minor: u32) -> bool {
    version() >= (major, minor)
}

pub(super) fn agree(name: &str, probe: ProbeResult, truth: bool) {
    assert_eq!(
        probe.is_ok(),
        truth,
        "{name}: probe said {probe:?}, the independent route says {truth}"
    );
}

#[test]
fn config_is_readable() {
    // Guards the helpers: every kernel has CONFIG_MMU set, none has a config named like this.
    assert_eq!(kconfig("MMU").as_deref(), Some("y"));
    assert_eq!(kconfig("NO_SUCH_OPTION_FOR_CRIU"), None);
}

// ---- memory ----

#[test]
fn soft_dirty_matches_config() {
    agree(
        "mem_dirty_track",
        memory::soft_dirty(),
        enabled("MEM_SOFT_DIRTY"),
    );
}

#[test]
fn map_files_matches_proc() {
    // Another route: list the directory and resolve its first link.
    let first = std::fs::read_dir("/proc/self/map_files")
        .ok()
        .and_then(|mut d| d.next()?.ok());
    let resolves = first
        .map(|e| std::fs::read_link(e.path()).is_ok())
        .unwrap_or(false);
    agree("map_files", memory::map_files(), resolves);
}

#[test]
fn pagemap_scan_matches_version() {
    agree(
        "pagemap_scan",
        memory::pagemap_scan(),
        at_least(6, 7) && enabled("PROC_PAGE_MONITOR"),
    );
}

/// The other route to guard pages: MADV_GUARD_INSTALL, then pagemap's PM_GUARD_REGION bit.
#[test]
fn pagemap_scan_guard_pages_matches_pagemap_bit() {
    const MADV_GUARD_INSTALL: libc::c_int = 102;
    const PM_GUARD_REGION: u64 = 1 << 58;
    // SAFETY: a fresh private anonymous page, unmapped below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    // SAFETY: advises our own page.
    let guarded = unsafe { libc::madvise(p, 4096, MADV_GUARD_INSTALL) } == 0;
    let entry = memory_pagemap_entry(p as usize);
    // SAFETY: unmaps the page mapped above.
    unsafe { libc::munmap(p, 4096) };
    agree(
        "pagemap_scan_guard_pages",
        memory::pagemap_scan_guard_pages(),
        guarded && entry & PM_GUARD_REGION != 0,
    );
}

fn memory_pagemap_entry(addr: usize) -> u64 {
    let f = std::fs::File::open("/proc/self/pagemap").expect("open pagemap");
    let mut buf = [0u8; 8];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, (addr / 4096 * 8) as u64)
        .expect("read pagemap");
    u64::from_le_bytes(buf)
}

#[test]
fn uffd_matches_config_and_features() {
    let feats = memory::uffd_api_features();
    assert_eq!(feats.is_ok(), enabled("USERFAULTFD"), "uffd: {feats:?}");
    assert!(
        std::path::Path::new("/proc/sys/vm/unprivileged_userfaultfd").exists() == feats.is_ok()
    );
    if let Ok(f) = feats {
        let nc = memory::uffd_features::NON_COOPERATIVE;
        assert_eq!(
            f & nc == nc,
            at_least(4, 11),
            "non-cooperative uffd features"
        );
        assert_eq!(
            f & memory::uffd_features::WP_ASYNC != 0,
            at_least(6, 7) && enabled("HAVE_ARCH_USERFAULTFD_WP"),
            "WP_ASYNC"
        );
    }
}

#[test]
fn memfd_hugetlb_matches_config() {
    agree(
        "memfd_hugetlb",
        memory::memfd_hugetlb(),
        enabled("HUGETLBFS"),
    );
}

#[test]
fn aio_remap_matches_config() {
    agree("aio_remap", memory::aio_remap(), enabled("AIO"));
}

#[test]
fn special_mapping_mremap_matches_version() {
    agree(
        "special_mapping_mremap",
        memory::special_mapping_mremap(),
        at_least(4, 14),
    );
}

#[test]
fn vmsplice_matches_version() {
    agree(
        "unaligned_vmsplice",
        memory::unaligned_vmsplice(),
        at_least(3, 0),
    );
}

#[test]
fn vdso_mapping_matches_config() {
    agree(
        "can_map_vdso",
        memory::can_map_vdso(),
        enabled("CHECKPOINT_RESTORE"),
    );
    agree(
        "compat vdso",
        memory::can_map_compat_vdso(),
        enabled("CHECKPOINT_RESTORE") && enabled("IA32_EMULATION"),
    );
}

// ---- ptrace ----

#[test]
fn peeksiginfo_matches_version() {
    agree(
        "ptrace_peeksiginfo",
        ptrace::peeksiginfo_and_sigmask(),
        at_least(3, 11),
    );
}

#[test]
fn getsigmask_reads_the_tracee() {
    let mask = ptrace::sigmask_of_child_blocking(libc::SIGUSR2).expect("GETSIGMASK");
    assert_ne!(
        mask & (1 << (libc::SIGUSR2 - 1)),
        0,
        "mask {mask:#x} lacks SIGUSR2"
    );
}

#[test]
fn seccomp_probes_match_config() {
    agree(
        "seccomp_suspend",
        ptrace::suspend_seccomp(),
        enabled("SECCOMP") && enabled("CHECKPOINT_RESTORE"),
    );
    let len = ptrace::seccomp_filter_dump();
    assert_eq!(
        len.is_ok(),
        enabled("SECCOMP_FILTER") && enabled("CHECKPOINT_RESTORE"),
        "{len:?}"
    );
    if let Ok(n) = len {
        assert_eq!(n, 4, "our filter has 4 instructions");
    }
}

#[test]
fn rseq_configuration_matches_glibc() {
    let conf = ptrace::rseq_configuration();
    assert_eq!(conf.is_ok(), at_least(5, 13) && enabled("RSEQ"), "{conf:?}");
    if let Ok(c) = conf {
        // glibc registers every thread with this x86 signature; the forked child inherits it.
        assert_eq!(c.signature, 0x5305_3053);
        assert!(c.rseq_abi_size >= 32);
    }
}

#[test]
fn breakpoints_match_config() {
    agree(
        "breakpoints",
        ptrace::hw_breakpoints(),
        enabled("HAVE_HW_BREAKPOINT"),
    );
}

// ---- sockets ----

#[test]
fn namespace_probes_match_config() {
    agree(
        "ns_last_pid",
        namespaces::ns_last_pid(),
        std::path::Path::new("/proc/sys/kernel/ns_last_pid").exists(),
    );
    agree("userns", namespaces::userns(), enabled("USER_NS"));
    agree("cgroupns", namespaces::cgroupns(), enabled("CGROUPS"));
    agree("timens", namespaces::timens(), enabled("TIME_NS"));
    agree(
        "clone3_set_tid",
        namespaces::clone3_set_tid(),
        at_least(5, 5),
    );
    agree(
        "clone_parent_vs_pid",
        namespaces::clone_parent_vs_pid(),
        enabled("PID_NS"),
    );
    agree("pidfd_store", namespaces::pidfd_store(), at_least(5, 6));
    agree(
        "ipc",
        namespaces::ipc(),
        enabled("SYSVIPC") && enabled("CHECKPOINT_RESTORE"),
    );
}

/// Runs `f` on a new thread in a new IPC namespace, as `uid` (real, effective and saved: a
/// non-zero uid leaves the thread no capabilities). Only that thread changes: the raw
/// setresuid syscall, unlike glibc's, does not touch the other threads.
fn in_ipc_ns_as<T: Send>(uid: u32, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWIPC).expect("unshare ipc");
            if uid != 0 {
                // SAFETY: setresuid with integer arguments, for this thread only.
                let r = unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) };
                assert_eq!(r, 0, "setresuid({uid}): {}", Errno::last());
            }
            f()
        })
        .join()
        .expect("ipc namespace thread")
    })
}

/// The other route to "can set IPC ids": write sem_next_id, then see semget() hand out that
/// very id.
fn can_set_sem_id() -> bool {
    const WANT: i32 = 4242;
    if std::fs::write("/proc/sys/kernel/sem_next_id", WANT.to_string()).is_err() {
        return false;
    }
    // SAFETY: semget with integer arguments.
    let id = unsafe { libc::semget(libc::IPC_PRIVATE, 1, 0o600) };
    if id >= 0 {
        // SAFETY: removes the set just made.
        unsafe { libc::semctl(id, 0, libc::IPC_RMID) };
    }
    id == WANT
}

#[test]
fn ipc_probe_asks_the_kernel_for_root_and_non_root() {
    let root = in_ipc_ns_as(0, || (namespaces::ipc(), can_set_sem_id()));
    agree("ipc as root", root.0, root.1);
    assert_eq!(
        root.1,
        enabled("SYSVIPC") && enabled("CHECKPOINT_RESTORE"),
        "root sets IPC ids where the kernel has the interface"
    );
    // nobody holds no CAP_CHECKPOINT_RESTORE: the kernel refuses, so must the probe.
    let nobody = in_ipc_ns_as(65534, || (namespaces::ipc(), can_set_sem_id()));
    agree("ipc as nobody", nobody.0, nobody.1);
}

/// NSpid in /proc/self/status ends with our pid as getpid() sees it.
#[test]
fn ns_pid_matches_getpid() {
    let status = std::fs::read_to_string("/proc/thread-self/../../status").unwrap_or_default();
    let last = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|v| v.split_whitespace().last()?.parse::<u32>().ok());
    agree(
        "ns_pid",
        namespaces::ns_pid(),
        last == Some(std::process::id()),
    );
}

// ---- files ----

#[test]
fn fdinfo_probes_match_config() {
    agree("eventfd", files::fdinfo_eventfd(), enabled("EVENTFD"));
    agree("epoll", files::fdinfo_epoll(), enabled("EPOLL"));
    agree("signalfd", files::fdinfo_signalfd(), enabled("SIGNALFD"));
    agree("inotify", files::fdinfo_inotify(), enabled("INOTIFY_USER"));
    agree(
        "timerfd",
        files::timerfd(),
        enabled("TIMERFD") && enabled("CHECKPOINT_RESTORE"),
    );
    agree("tty", files::tty(), enabled("UNIX98_PTYS"));
}

/// mnt_id in fdinfo equals the mount id statx() reports for the same fd.
#[test]
fn mnt_id_matches_statx() {
    let f = std::fs::File::open("/proc/self/status").expect("open");
    // SAFETY: a zeroed statx buffer is valid; statx fills it for our own fd.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: empty path with AT_EMPTY_PATH on our own fd; `stx` is live.
    let r = unsafe {
        libc::statx(
            f.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    let info = files::fdinfo(f.as_raw_fd()).expect("fdinfo");
    let shown = info
        .lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse::<u64>().ok());
    agree(
        "mnt_id",
        files::mnt_id(),
        r == 0 && shown == Some(stx.stx_mnt_id),
    );
}

/// A POSIX lock (another lock type than the probe's flock) shows as `lock:` in fdinfo.
#[test]
fn fdinfo_lock_matches_posix_lock() {
    let path = std::env::temp_dir().join(format!("criu-check-lock-{}", std::process::id()));
    let f = std::fs::File::create(&path).expect("create");
    // SAFETY: a zeroed flock is valid; F_SETLK reads it.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    // SAFETY: F_SETLK with a live flock on our own fd.
    let locked = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl) } == 0;
    let shown = files::fdinfo(f.as_raw_fd())
        .map(|s| s.contains("lock:"))
        .unwrap_or(false);
    drop(f);
    let _ = std::fs::remove_file(&path);
    agree("fdinfo_lock", files::fdinfo_lock(), locked && shown);
}

#[test]
fn kcmp_probes_match_config() {
    let kcmp = enabled("KCMP") || enabled("CHECKPOINT_RESTORE");
    agree("kcmp", files::kcmp_file(), kcmp);
    agree("kcmp_epoll", files::kcmp_epoll(), kcmp && at_least(4, 13));
}

/// openat2 with a too-small struct fails with EINVAL where the call exists, ENOSYS where not.
#[test]
fn openat2_matches_direct_call() {
    // SAFETY: raw openat2 with a NUL-terminated path and a NULL how of size 0: fails either way.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c".".as_ptr(),
            0usize,
            0usize,
        )
    };
    let exists = r < 0 && nix::errno::Errno::last() != nix::errno::Errno::ENOSYS;
    agree("openat2", files::openat2(), exists);
}

// ---- process ----

#[test]
fn process_probes_match_config() {
    agree(
        "prctl",
        process::prctl_cat1(),
        enabled("CHECKPOINT_RESTORE"),
    );
    agree(
        "prctl_mm_map",
        process::prctl_cat2(),
        enabled("CHECKPOINT_RESTORE"),
    );
    agree(
        "fcntl",
        process::fcntl_owner_uids(),
        enabled("CHECKPOINT_RESTORE"),
    );
    agree("proc_stat", process::proc_stat(), at_least(3, 5));
    agree("sigqueueinfo", process::sigqueueinfo(), true);
    agree(
        "posix_timers",
        process::posix_timers(),
        enabled("CHECKPOINT_RESTORE") && enabled("POSIX_TIMERS"),
    );
    agree("loginuid", process::loginuid(), enabled("AUDITSYSCALL"));
    agree("timer_cr_ids", process::timer_cr_ids(), at_least(6, 15));
}

#[test]
fn mm_map_size_is_the_struct_size() {
    // struct prctl_mm_map: 13 u64 fields, a pointer to auxv, auxv_size and exe_fd (u32 each).
    assert_eq!(
        process::prctl_mm_map_size().expect("PR_SET_MM_MAP_SIZE"),
        104
    );
}

// ---- mounts ----

#[test]
fn mount_probes_match_config() {
    agree("autofs", mounts::autofs(), enabled("AUTOFS_FS"));
    agree(
        "move_mount_set_group",
        mounts::move_mount_set_group(),
        at_least(5, 15),
    );
    agree(
        "overlayfs_maps",
        mounts::overlayfs_maps(),
        enabled("OVERLAY_FS") && at_least(4, 19),
    );
}

/// No probe leaves a mount behind in our own mount namespace.
#[test]
fn mount_probes_leave_no_mounts() {
    let before = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let _ = mounts::autofs();
    let _ = mounts::move_mount_set_group();
    let _ = mounts::overlayfs_maps();
    let after = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert_eq!(before, after);
}
