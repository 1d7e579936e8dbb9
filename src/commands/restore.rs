//! `criu restore`.

use std::path::Path;
use std::time::Duration;

use criu_actors::restore::{NsStage, RestoreError, RestoreRequest};
use criu_files::RestoreFileOptions;

use crate::app::Dirs;
use crate::cli::Options;
use crate::scripts::{Action, ActionScripts};

pub fn run(o: &Options, dirs: &Dirs) -> i32 {
    let done = restore(o, dirs).and_then(|root| {
        if o.restore_detached {
            Ok(0)
        } else {
            wait_for(root)
        }
    });
    match done {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            1
        }
    }
}

/// Restores the tree; its root pid once it runs.
pub fn restore(o: &Options, dirs: &Dirs) -> Result<i32, String> {
    let _armed = criu_actors::interrupt::arm();
    if o.restore_sibling && !o.restore_detached {
        return Err("--restore-sibling only makes sense with --restore-detached".into());
    }
    let started = std::time::Instant::now();
    let scripts = std::sync::Arc::new(
        ActionScripts::new(&o.action_scripts, &dirs.images).map_err(|e| e.to_string())?,
    );
    scripts
        .run(Action::PreRestore, None)
        .map_err(|e| e.to_string())?;
    let inherit_fds: Vec<(i32, String)> = o
        .inherit_fds
        .iter()
        .map(|s| parse_inherit_fd(s))
        .collect::<Result<_, _>>()?;
    let joins = o
        .join_ns
        .iter()
        .map(|j| criu_ns::join::parse(j))
        .collect::<Result<_, _>>()?;
    let req = RestoreRequest {
        images_dir: dirs.images.clone(),
        timeout: Duration::from_secs(u64::from(o.timeout.max(1))),
        shell_job: o.shell_job,
        sibling: o.restore_sibling,
        files: RestoreFileOptions {
            inherit_fds: inherit_fds.clone(),
            ext_unix_sk: o.ext_unix_sk,
            file_locks: o.file_locks,
            tcp_established: o.tcp_established,
            tcp_close: o.tcp_close,
            skip_file_rwx_check: o.skip_file_rwx_check,
            root: None,
            orphan_pts_master: super::request_only::current().orphan_pts_master,
        },
        ns: criu_ns::RestoreOptions {
            empty_net: o.empty_ns_net,
            joins,
            inherited: inherit_fds,
            mounts: super::mount_opts::mount_options(o),
            weak_sysctls: o.weak_sysctls,
            net_outside: net_outside(o),
        },
        network_scripts: Some(super::dump::lock_scripts(&scripts, None)),
        cgroups: criu_cgroups::restore::RestoreOptions {
            mode: super::dump::cgroup_mode(o),
            roots: o.cgroup_roots.clone(),
            yard: super::dump::cgroup_yard(o, &dirs.work),
        },
        // This very binary, even if a package upgrade replaced its file meanwhile.
        watchdog_exe: Some("/proc/self/exe".into()),
    };
    let at_ns = |stage, root| {
        let action = match stage {
            NsStage::Made => Action::SetupNamespaces,
            NsStage::Filled => Action::PostSetupNamespaces,
        };
        scripts.run(action, Some(root)).map_err(|e| e.to_string())
    };
    let root = criu_actors::restore::run(&req, at_ns, |root| {
        if let Some(pidfile) = &o.pidfile {
            crate::pidfile::write(Path::new(pidfile), root)?;
        }
        // CRIU runs pre-resume after the network unlock; here it comes just before it.
        [Action::PostRestore, Action::PreResume]
            .into_iter()
            .try_for_each(|action| scripts.run(action, Some(root)))
            .map_err(|e| e.to_string())
    })
    .map_err(|e| match e {
        RestoreError::Task(m) => m,
        other => other.to_string(),
    })?;
    tracing::info!("Restore finished successfully. Tasks resumed.");
    // The tree runs: neither a failing dedup nor a failing post-resume script undoes it.
    if o.auto_dedup {
        if let Err(e) = super::dedup::after_restore(&dirs.images) {
            tracing::error!("{e}");
        }
    }
    if let Err(e) = scripts.run(Action::PostResume, Some(root)) {
        tracing::error!("{e}");
    }
    write_stats(&dirs.work, started.elapsed());
    Ok(root)
}

/// Without `-d`, criu waits for the restored root and exits with its status.
fn wait_for(pid: i32) -> Result<i32, String> {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("restore: cannot wait for pid {pid}: {e}")),
        }
    }
}

/// `stats-restore`, as CRIU writes it after a restore, into the work dir. A failure to write it
/// is only logged.
fn write_stats(work: &Path, took: std::time::Duration) {
    use criu_proto::images::{RestoreStatsEntry, StatsEntry};
    let entry = StatsEntry {
        dump: None,
        restore: Some(RestoreStatsEntry {
            restore_time: took.as_micros() as u32,
            ..Default::default()
        }),
    };
    let written =
        criu_proto::ImageWriter::create(work, &criu_proto::ImageKind::STATS_RESTORE, None)
            .and_then(|mut w| w.write(&entry).and_then(|_| w.finish().map(drop)));
    if let Err(e) = written {
        tracing::warn!("cannot write stats-restore: {e}");
    }
}

/// `fd[N]:RESOURCE`, as --inherit-fd takes it.
fn parse_inherit_fd(arg: &str) -> Result<(i32, String), String> {
    let bad = || format!("--inherit-fd {arg}: expected fd[N]:RESOURCE");
    let rest = arg.strip_prefix("fd[").ok_or_else(bad)?;
    let (n, resource) = rest.split_once("]:").ok_or_else(bad)?;
    let fd = n
        .parse::<i32>()
        .ok()
        .filter(|&fd| fd >= 0)
        .ok_or_else(bad)?;
    if resource.is_empty() {
        return Err(bad());
    }
    Ok((fd, resource.to_string()))
}

/// `--veth-pair` and the veth and macvlan `--external`s.
fn net_outside(o: &Options) -> criu_netdev::links::outside::Outside {
    let mut out = criu_netdev::links::outside::Outside::default();
    for (inside, outside) in &o.veth_pairs {
        out.add_veth_pair(inside, outside);
    }
    for e in &o.external {
        out.add_external(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::parse_inherit_fd;

    #[test]
    fn inherit_fd_takes_fd_number_and_resource() {
        assert_eq!(
            parse_inherit_fd("fd[3]:pipe:[12345]"),
            Ok((3, "pipe:[12345]".to_string()))
        );
        assert_eq!(
            parse_inherit_fd("fd[10]:tmp/log:x"),
            Ok((10, "tmp/log:x".to_string()))
        );
        for bad in ["3:pipe:[1]", "fd[x]:a", "fd[-1]:a", "fd[3]:", "fd[3]a"] {
            assert!(parse_inherit_fd(bad).is_err(), "{bad}");
        }
    }
}
