//! A request's `criu_opts` as the command line that says the same: the RPC and the command
//! line then share one parser, one options structure and one list of what each command
//! honours (an option set in a request that the command does not honour is refused by name,
//! as on the command line).

use criu_proto::rpc::{CriuCgMode, CriuNetworkLockMethod, CriuOpts, CriuPreDumpMode};

/// CLONE_NEWNET, the only namespace `empty_ns` may name.
const CLONE_NEWNET: u32 = 0x4000_0000;

/// Where the client's directories are, as paths criu can use.
pub struct ClientDirs {
    pub images: String,
    pub work: Option<String>,
}

/// The words after the command word(s) for `opts`.
pub fn words(opts: &CriuOpts, dirs: &ClientDirs) -> Result<Vec<String>, String> {
    let mut w: Vec<String> = vec!["-D".into(), dirs.images.clone()];
    let mut arg = |name: &str, value: String| {
        w.push(format!("--{name}"));
        w.push(value);
    };
    if let Some(work) = &dirs.work {
        arg("work-dir", work.clone());
    }
    // As CRIU: the log is a name in the work dir, criu.log unless the request names one.
    let log = opts.log_file.clone().unwrap_or_else(|| "criu.log".into());
    if log.contains('/') {
        return Err(format!(
            "log_file {log}: no subdirectories are allowed in its name"
        ));
    }
    if opts.log_to_stderr != Some(true) {
        arg("log-file", log);
    }
    if let Some(pid) = opts.pid {
        arg("tree", pid.to_string());
    }
    if let Some(root) = &opts.root {
        arg("root", root.clone());
    }
    if let Some(parent) = &opts.parent_img {
        arg("prev-images-dir", parent.clone());
    }
    if let Some(limit) = opts.ghost_limit {
        arg("ghost-limit", limit.to_string());
    }
    if let Some(t) = opts.timeout {
        arg("timeout", t.to_string());
    }
    if let Some(fd) = opts.status_fd {
        arg("status-fd", fd.to_string());
    }
    // As CRIU: a request's config file that does not exist is skipped (runc always names
    // /etc/criu/runc.conf).
    if let Some(c) = opts
        .config_file
        .as_ref()
        .filter(|c| std::path::Path::new(c).exists())
    {
        arg("config", c.clone());
    }
    for (name, value) in [
        ("lsm-profile", &opts.lsm_profile),
        ("lsm-mount-context", &opts.lsm_mount_context),
        ("freeze-cgroup", &opts.freeze_cgroup),
        ("cgroup-props", &opts.cgroup_props),
        ("cgroup-props-file", &opts.cgroup_props_file),
        ("cgroup-yard", &opts.cgroup_yard),
        ("tls-cacert", &opts.tls_cacert),
        ("tls-cacrl", &opts.tls_cacrl),
        ("tls-cert", &opts.tls_cert),
        ("tls-key", &opts.tls_key),
    ] {
        if let Some(v) = value {
            arg(name, v.clone());
        }
    }
    for (name, values) in [
        ("external", &opts.external),
        ("skip-mnt", &opts.skip_mnt),
        ("enable-fs", &opts.enable_fs),
        ("irmap-scan-path", &opts.irmap_scan_paths),
        ("cgroup-dump-controller", &opts.cgroup_dump_controller),
        ("exec-cmd", &opts.exec_cmd),
    ] {
        for v in values {
            arg(name, v.clone());
        }
    }
    for m in &opts.ext_mnt {
        arg("ext-mount-map", format!("{}:{}", m.key, m.val));
    }
    for f in &opts.inherit_fd {
        arg("inherit-fd", format!("fd[{}]:{}", f.fd, f.key));
    }
    for v in &opts.veths {
        arg("veth-pair", format!("{}={}", v.if_in, v.if_out));
    }
    for c in &opts.cg_root {
        let root = match &c.ctrl {
            Some(ctrl) => format!("{ctrl}:{}", c.path),
            None => c.path.clone(),
        };
        arg("cgroup-root", root);
    }
    for j in &opts.join_ns {
        let mut value = format!("{}:{}", j.ns, j.ns_file);
        if let Some(extra) = &j.extra_opt {
            value.push(',');
            value.push_str(extra);
        }
        arg("join-ns", value);
    }
    for u in &opts.unix_sk_ino {
        arg("external", format!("unix[{}]", u.inode));
    }
    if let Some(ns) = opts.empty_ns {
        if ns & !CLONE_NEWNET != 0 {
            return Err(format!(
                "empty_ns {ns:#x}: only the network namespace can be empty"
            ));
        }
        if ns != 0 {
            arg("empty-ns", "net".into());
        }
    }
    if let Some(m) = opts.network_lock {
        let name = match CriuNetworkLockMethod::try_from(m) {
            Ok(CriuNetworkLockMethod::Iptables) => "iptables",
            Ok(CriuNetworkLockMethod::Nftables) => "nftables",
            Ok(CriuNetworkLockMethod::Skip) => "skip",
            Err(_) => return Err(format!("network_lock {m}: unknown method")),
        };
        arg("network-lock", name.into());
    }
    if let Some(m) = opts.pre_dump_mode {
        let name = match CriuPreDumpMode::try_from(m) {
            Ok(CriuPreDumpMode::Splice) => "splice",
            Ok(CriuPreDumpMode::VmRead) => "read",
            Err(_) => return Err(format!("pre_dump_mode {m}: unknown mode")),
        };
        arg("pre-dump-mode", name.into());
    }
    if let Some(ps) = &opts.ps {
        if let Some(a) = &ps.address {
            arg("address", a.clone());
        }
        if let Some(p) = ps.port {
            arg("port", p.to_string());
        }
    }
    // pidfd_store_sk and orphan_pts_master have no command-line option: the request gives them
    // to the command it runs itself (commands::request_only).
    if opts.auto_ext_mnt == Some(true) {
        arg("ext-mount-map", "auto".into());
    }
    // Attached-only values.
    if let Some(cap) = opts.cpu_cap {
        w.push(format!("--cpu-cap={cap}"));
    }
    if opts.manage_cgroups == Some(true) || opts.manage_cgroups_mode.is_some() {
        let mode = match opts.manage_cgroups_mode.map(CriuCgMode::try_from) {
            None => String::new(),
            Some(Ok(m)) => format!("={}", m.as_str_name().to_ascii_lowercase()),
            Some(Err(_)) => return Err("manage_cgroups_mode: unknown mode".into()),
        };
        w.push(format!("--manage-cgroups{mode}"));
    }
    if let Some(level) = opts.log_level {
        w.push(format!("-v{level}"));
    }
    let flags = [
        (opts.leave_running, "leave-running"),
        (opts.leave_stopped, "leave-stopped"),
        (opts.ext_unix_sk, "ext-unix-sk"),
        (opts.tcp_established, "tcp-established"),
        (opts.tcp_skip_in_flight, "skip-in-flight"),
        (opts.tcp_close, "tcp-close"),
        (opts.evasive_devices, "evasive-devices"),
        (opts.shell_job, "shell-job"),
        (opts.file_locks, "file-locks"),
        (opts.track_mem, "track-mem"),
        (opts.auto_dedup, "auto-dedup"),
        (opts.link_remap, "link-remap"),
        (opts.force_irmap, "force-irmap"),
        (opts.rst_sibling, "restore-sibling"),
        (opts.ext_sharing, "enable-external-sharing"),
        (opts.ext_masters, "enable-external-masters"),
        (opts.weak_sysctls, "weak-sysctls"),
        (opts.lazy_pages, "lazy-pages"),
        (opts.tls, "tls"),
        (opts.tls_no_cn_verify, "tls-no-cn-verify"),
        (opts.mntns_compat_mode, "mntns-compat-mode"),
        (opts.skip_file_rwx_check, "skip-file-rwx-check"),
        (opts.unprivileged, "unprivileged"),
        (opts.display_stats, "display-stats"),
    ];
    for (on, name) in flags {
        if on == Some(true) {
            w.push(format!("--{name}"));
        }
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use criu_proto::rpc::InheritFd;

    #[test]
    fn a_runc_like_request_reads_as_its_command_line() {
        let opts = CriuOpts {
            images_dir_fd: 5,
            pid: Some(42),
            log_file: Some("dump.log".into()),
            log_level: Some(4),
            tcp_established: Some(true),
            leave_running: Some(false),
            inherit_fd: vec![InheritFd {
                key: "pipe:[7]".into(),
                fd: 3,
            }],
            empty_ns: Some(CLONE_NEWNET),
            ..Default::default()
        };
        let dirs = ClientDirs {
            images: "/img".into(),
            work: None,
        };
        let w = words(&opts, &dirs).unwrap().join(" ");
        assert_eq!(
            w,
            "-D /img --log-file dump.log --tree 42 --inherit-fd fd[3]:pipe:[7] --empty-ns net -v4 --tcp-established"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        let dirs = ClientDirs {
            images: "/img".into(),
            work: None,
        };
        let sub = CriuOpts {
            log_file: Some("../x.log".into()),
            ..Default::default()
        };
        assert!(words(&sub, &dirs).is_err());
        let ns = CriuOpts {
            empty_ns: Some(0x2000_0000),
            ..Default::default()
        };
        assert!(words(&ns, &dirs).is_err());
        let lock = CriuOpts {
            network_lock: Some(9),
            ..Default::default()
        };
        assert!(words(&lock, &dirs).is_err());
    }
}
