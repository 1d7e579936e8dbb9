//! Tests of the verdict logic and of the checks that live here (not in criu-sys). The kernel
//! facts are found another way: /proc/config.gz, $PATH, securityfs.

use super::*;

/// CONFIG_NAME is y or m in /proc/config.gz.
fn enabled(name: &str) -> bool {
    let out = std::process::Command::new("zcat")
        .arg("/proc/config.gz")
        .output()
        .expect("zcat /proc/config.gz");
    let text = String::from_utf8_lossy(&out.stdout);
    let key = format!("CONFIG_{name}=");
    matches!(
        text.lines().find_map(|l| l.strip_prefix(key.as_str())),
        Some("y") | Some("m")
    )
}

fn feature(name: &str) -> i32 {
    run(&CheckRequest {
        features: vec![name.to_string()],
        ..Default::default()
    })
}

#[test]
fn feature_names_are_criu_names_in_criu_order() {
    let want = [
        "mnt_id",
        "mem_dirty_track",
        "aio_remap",
        "timerfd",
        "tun",
        "tun_ns",
        "userns",
        "fdinfo_lock",
        "seccomp_suspend",
        "seccomp_filters",
        "loginuid",
        "cgroupns",
        "autofs",
        "tcp_half_closed",
        "compat_cr",
        "uffd",
        "uffd-noncoop",
        "can_map_vdso",
        "sk_ns",
        "sk_unix_file",
        "net_diag_raw",
        "nsid",
        "link_nsid",
        "kcmp_epoll",
        "timens",
        "external_net_ns",
        "clone3_set_tid",
        "newifindex",
        "nftables",
        "has_ipt_legacy",
        "pidfd_store",
        "ns_pid",
        "apparmor_stacking",
        "network_lock_nftables",
        "sockopt_buf_lock",
        "memfd_hugetlb",
        "move_mount_set_group",
        "openat2",
        "get_rseq_conf",
        "ipv6_freebind",
        "pagemap_scan",
        "timer_cr_ids",
        "overlayfs_maps",
        "breakpoints",
        "pagemap_scan_guard_pages",
    ];
    assert_eq!(feature_names(), want);
    assert!(want.iter().all(|n| is_known_feature(n)));
    assert!(!is_known_feature("list"));
    assert!(!is_known_feature("no_such_feature"));
}

#[test]
fn extra_and_experimental_lists_name_real_checks() {
    for name in table::EXTRA.iter().chain(table::EXPERIMENTAL) {
        let known =
            table::feature(name).is_some() || table::EXTRA_ONLY.iter().any(|(n, _, _)| n == name);
        assert!(known, "{name} has no check");
    }
}

#[test]
fn unknown_feature_fails() {
    assert_eq!(feature("no_such_feature"), 1);
    // The first unknown name stops the run even after a known one.
    let req = CheckRequest {
        features: vec!["external_net_ns".into(), "bogus".into()],
        ..Default::default()
    };
    assert_eq!(run(&req), 1);
}

#[test]
fn dirty_track_exit_code_follows_kernel_config() {
    // Soft-dirty, or userfaultfd write-protection (with PAGEMAP_SCAN, kernel 6.7 and later).
    let tracks = enabled("MEM_SOFT_DIRTY") || enabled("PTE_MARKER_UFFD_WP");
    let want = if tracks { 0 } else { 1 };
    assert_eq!(feature("mem_dirty_track"), want);
}

#[test]
fn raw_diag_exit_code_follows_kernel_config() {
    let want = if enabled("INET_RAW_DIAG") { 0 } else { 1 };
    assert_eq!(feature("net_diag_raw"), want);
}

#[test]
fn timens_and_mnt_id_follow_kernel_config() {
    assert_eq!(feature("timens"), if enabled("TIME_NS") { 0 } else { 1 });
    assert_eq!(feature("mnt_id"), if enabled("PROC_FS") { 0 } else { 1 });
}

#[test]
fn compat_cr_is_not_supported_by_this_build() {
    assert_eq!(feature("compat_cr"), 1);
}

/// The other route: ask the shell for the binaries and their backend.
#[test]
fn has_ipt_legacy_matches_shell_lookup() {
    let legacy = |names: &str| {
        let script = format!(
            "for b in {names}; do p=$(command -v $b) || continue; $p -V 2>/dev/null | grep -q nf_tables || exit 0; done; exit 1"
        );
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let v4 = legacy("iptables-save iptables-legacy-save");
    let v6 = !std::path::Path::new("/proc/sys/net/ipv6").exists()
        || legacy("ip6tables-save ip6tables-legacy-save");
    assert_eq!(userspace::has_ipt_legacy().is_ok(), v4 && v6);
    assert_eq!(feature("has_ipt_legacy"), if v4 && v6 { 0 } else { 1 });
}

#[test]
fn apparmor_stacking_needs_apparmor_securityfs() {
    let stack = std::fs::read_to_string("/sys/kernel/security/apparmor/features/domain/stack")
        .unwrap_or_default();
    if stack.trim() != "yes" {
        assert_eq!(feature("apparmor_stacking"), 1);
    }
    assert_eq!(
        userspace::apparmor_active(),
        std::path::Path::new("/sys/kernel/security/apparmor").is_dir()
    );
}

#[test]
fn tun_in_extra_tolerates_a_missing_device() {
    let present = std::path::Path::new("/dev/net/tun").exists();
    assert_eq!(
        userspace::tun_if_present().is_ok(),
        !present || enabled("TUN")
    );
}

fn all() -> CheckRequest {
    CheckRequest {
        extra: true,
        experimental: true,
        ..Default::default()
    }
}

#[test]
fn base_check_follows_kernel_config() {
    // Every base check is present on a kernel with C/R support; the sys tests check each.
    let base = evaluate(&CheckRequest::default());
    assert_eq!(
        base.base_failed.is_none(),
        enabled("CHECKPOINT_RESTORE"),
        "{base:?}"
    );
    assert_eq!(
        run(&CheckRequest::default()),
        i32::from(base.base_failed.is_some())
    );
}

/// `--all` names each missing feature that the kernel config says is missing, and no present
/// one; its exit code is 1 exactly when it names any.
#[test]
fn all_reports_the_features_the_kernel_config_lacks() {
    let outcome = evaluate(&all());
    if outcome.base_failed.is_some() {
        assert!(!enabled("CHECKPOINT_RESTORE"), "{outcome:?}");
        return;
    }
    let named = |n: &str| outcome.missing.contains(&n);
    let tracks = enabled("MEM_SOFT_DIRTY") || enabled("PTE_MARKER_UFFD_WP");
    assert_eq!(named("mem_dirty_track"), !tracks, "{outcome:?}");
    for (feature, config) in [
        ("net_diag_raw", "INET_RAW_DIAG"),
        ("timens", "TIME_NS"),
        ("autofs", "AUTOFS_FS"),
        ("cgroupns", "CGROUPS"),
        ("userns", "USER_NS"),
    ] {
        assert_eq!(
            named(feature),
            !enabled(config),
            "--all {} {feature}, CONFIG_{config} is {}: {outcome:?}",
            if named(feature) {
                "reports"
            } else {
                "does not report"
            },
            if enabled(config) { "on" } else { "off" },
        );
    }
    // This build has no compat (32-bit) task support, whatever the kernel has.
    assert!(named("compat_cr"), "{outcome:?}");
    let want = if outcome.missing.is_empty() { 0 } else { 1 };
    assert_eq!(run(&all()), want);
}

#[test]
fn verdict_texts_are_criu_texts() {
    assert_eq!(LOOKS_GOOD, "Looks good.");
    assert_eq!(LOOKS_BAD, "Does not look good.");
    assert_eq!(
        LOOKS_MAYBE,
        "Looks good but some kernel features are missing\nwhich, depending on your process tree, may cause\ndump or restore failure."
    );
}
