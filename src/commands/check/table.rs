//! The feature table: every name `criu check --feature` knows, in CRIU's order, with the
//! check that answers it and how a "no" is logged.

use criu_sys::probe::{self, ProbeResult};

use super::userspace;

/// How a failed check is reported (CRIU logs some misses as errors, some as warnings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
}

/// A check: `Ok(())` when the kernel (or this build) has what it names.
pub type Check = fn() -> ProbeResult;

/// One checkable feature.
pub struct Feature {
    pub name: &'static str,
    pub check: Check,
    pub level: Level,
}

const fn f(name: &'static str, check: Check, level: Level) -> Feature {
    Feature { name, check, level }
}

use Level::{Error, Warn};

/// The names and checks of `--feature`, in the order `--feature list` shows them.
pub static FEATURES: &[Feature] = &[
    f("mnt_id", probe::files::mnt_id, Error),
    f("mem_dirty_track", probe::memory::dirty_track, Warn),
    f("aio_remap", probe::memory::aio_remap, Error),
    f("timerfd", probe::files::timerfd, Error),
    f("tun", probe::sockets::tun, Error),
    f("tun_ns", probe::sockets::tun_netns, Warn),
    f("userns", probe::namespaces::userns, Error),
    f("fdinfo_lock", probe::files::fdinfo_lock, Error),
    f("seccomp_suspend", probe::ptrace::suspend_seccomp, Error),
    f("seccomp_filters", seccomp_filters, Error),
    f("loginuid", probe::process::loginuid, Warn),
    f("cgroupns", probe::namespaces::cgroupns, Error),
    f("autofs", probe::mounts::autofs, Error),
    f("tcp_half_closed", probe::sockets::tcp_half_closed, Error),
    f("compat_cr", userspace::compat_cr, Warn),
    f("uffd", uffd, Error),
    f("uffd-noncoop", uffd_noncoop, Error),
    f("can_map_vdso", probe::memory::can_map_vdso, Warn),
    f("sk_ns", probe::sockets::sk_netns, Warn),
    f("sk_unix_file", probe::sockets::sk_unix_file, Warn),
    f("net_diag_raw", probe::sockets::net_diag_raw, Warn),
    f("nsid", probe::netlink::nsid, Warn),
    f("link_nsid", probe::netlink::link_nsid, Warn),
    f("kcmp_epoll", probe::files::kcmp_epoll, Warn),
    f("timens", probe::namespaces::timens, Error),
    f("external_net_ns", userspace::external_net_ns, Warn),
    f("clone3_set_tid", probe::namespaces::clone3_set_tid, Warn),
    f("newifindex", probe::netlink::newifindex, Error),
    f("nftables", probe::netlink::nftables, Warn),
    f("has_ipt_legacy", userspace::has_ipt_legacy, Warn),
    f("pidfd_store", probe::namespaces::pidfd_store, Warn),
    f("ns_pid", probe::namespaces::ns_pid, Warn),
    f("apparmor_stacking", userspace::apparmor_stacking, Warn),
    f(
        "network_lock_nftables",
        probe::netlink::nftables_concat_set,
        Warn,
    ),
    f("sockopt_buf_lock", probe::sockets::sockopt_buf_lock, Warn),
    f("memfd_hugetlb", probe::memory::memfd_hugetlb, Warn),
    f(
        "move_mount_set_group",
        probe::mounts::move_mount_set_group,
        Warn,
    ),
    f("openat2", probe::files::openat2, Warn),
    f("get_rseq_conf", get_rseq_conf, Warn),
    f("ipv6_freebind", probe::sockets::ipv6_freebind, Warn),
    f("pagemap_scan", probe::memory::pagemap_scan, Warn),
    f("timer_cr_ids", probe::process::timer_cr_ids, Warn),
    f("overlayfs_maps", probe::mounts::overlayfs_maps, Error),
    f("breakpoints", probe::ptrace::hw_breakpoints, Warn),
    f(
        "pagemap_scan_guard_pages",
        probe::memory::pagemap_scan_guard_pages,
        Warn,
    ),
];

/// The checks every `criu check` runs; the first failure ends the check ("Does not look good.").
pub static BASE: &[(&str, Check)] = &[
    ("map_files", probe::memory::map_files),
    ("sock_diag", probe::sockets::sock_diag),
    ("ns_last_pid", probe::namespaces::ns_last_pid),
    ("sock_peek_off", probe::sockets::sock_peek_off),
    ("kcmp", probe::files::kcmp_file),
    ("prctl", probe::process::prctl_cat1),
    ("fcntl", probe::process::fcntl_owner_uids),
    ("proc_stat", probe::process::proc_stat),
    ("tcp", probe::sockets::tcp_repair),
    ("fdinfo_ext", probe::files::fdinfo_ext),
    ("unaligned_vmsplice", probe::memory::unaligned_vmsplice),
    ("tty", probe::files::tty),
    ("so_gets", probe::sockets::so_gets),
    ("ipc", probe::namespaces::ipc),
    ("sigqueueinfo", probe::process::sigqueueinfo),
    ("ptrace_peeksiginfo", probe::ptrace::peeksiginfo_and_sigmask),
    (
        "special_mapping_mremap",
        probe::memory::special_mapping_mremap,
    ),
];

/// The checks `--extra` adds, in CRIU's order; names refer to [`FEATURES`] unless listed in
/// [`EXTRA_ONLY`].
pub static EXTRA: &[&str] = &[
    "prctl_mm_map",
    "seccomp_suspend",
    "seccomp_filters",
    "mem_dirty_track",
    "posix_timers",
    "tun_if_present",
    "timerfd",
    "mnt_id",
    "aio_remap",
    "fdinfo_lock",
    "clone_parent_vs_pid",
    "cgroupns",
    "tcp_window",
    "tcp_half_closed",
    "userns",
    "loginuid",
    "can_map_vdso",
    "uffd",
    "uffd-noncoop",
    "sk_ns",
    "kcmp_epoll",
    "net_diag_raw",
    "clone3_set_tid",
    "timens",
    "newifindex",
    "pidfd_store",
    "ns_pid",
    "network_lock_nftables",
    "sockopt_buf_lock",
    "memfd_hugetlb",
    "move_mount_set_group",
    "openat2",
    "get_rseq_conf",
    "ipv6_freebind",
    "pagemap_scan",
    "overlayfs_maps",
    "timer_cr_ids",
    "pagemap_scan_guard_pages",
];

/// Checks that only `--extra` runs (they have no `--feature` name).
pub static EXTRA_ONLY: &[(&str, Check, Level)] = &[
    ("prctl_mm_map", probe::process::prctl_cat2, Warn),
    ("posix_timers", probe::process::posix_timers, Error),
    ("tun_if_present", userspace::tun_if_present, Error),
    (
        "clone_parent_vs_pid",
        probe::namespaces::clone_parent_vs_pid,
        Error,
    ),
    ("tcp_window", probe::sockets::tcp_repair_window, Error),
];

/// The checks `--experimental` adds.
pub static EXPERIMENTAL: &[&str] = &["autofs", "compat_cr"];

pub fn feature(name: &str) -> Option<&'static Feature> {
    FEATURES.iter().find(|f| f.name == name)
}

fn seccomp_filters() -> ProbeResult {
    probe::ptrace::seccomp_filter_dump().map(drop)
}

fn get_rseq_conf() -> ProbeResult {
    probe::ptrace::rseq_configuration().map(drop).map_err(|e| {
        probe::ProbeError::Missing(format!(
            "ptrace(PTRACE_GET_RSEQ_CONFIGURATION) isn't supported. C/R of processes which are using rseq() won't work. ({e})"
        ))
    })
}

fn uffd() -> ProbeResult {
    probe::memory::uffd_api_features().map(drop)
}

fn uffd_noncoop() -> ProbeResult {
    let want = probe::memory::uffd_features::NON_COOPERATIVE;
    let have = probe::memory::uffd_api_features()?;
    if have & want == want {
        Ok(())
    } else {
        Err(probe::ProbeError::Missing(
            "Non-cooperative UFFD is not supported".into(),
        ))
    }
}
