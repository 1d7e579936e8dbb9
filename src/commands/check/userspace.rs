//! Checks that are about this system's userspace or this build rather than a kernel call:
//! iptables-legacy binaries, AppArmor stacking, compat tasks, external net namespaces.

use criu_sys::probe::{self, ProbeError, ProbeResult};
use std::path::{Path, PathBuf};

fn missing(msg: impl Into<String>) -> ProbeError {
    ProbeError::Missing(msg.into())
}

/// Whether this criu can restore a tree into an external network namespace: dump with
/// `--external net[INO]:KEY` leaving the namespace out, restore with `--inherit-fd fd[N]:KEY`
/// putting the tree into the namespace fd N opens. In CRIU the check asks nothing of the
/// kernel (setns into a net namespace is always there); it tells clients that criu can do
/// this. This criu does not dump or restore network namespaces yet, so it cannot.
pub fn external_net_ns() -> ProbeResult {
    Err(missing(
        "this criu cannot restore a tree into an external network namespace \
         (--external net[...] with --inherit-fd): network namespaces are not restored yet",
    ))
}

/// This criu does not checkpoint 32-bit (compat) tasks, whatever the kernel can do.
pub fn compat_cr() -> ProbeResult {
    probe::memory::can_map_compat_vdso()
        .map_err(|e| missing(format!("compat_cr is not supported: {e}")))?;
    Err(missing(
        "this criu is built without compat (32-bit) task support - can't C/R compatible tasks",
    ))
}

/// The tun check of `--extra`: a system without /dev/net/tun is fine (no tun to dump).
pub fn tun_if_present() -> ProbeResult {
    match probe::sockets::tun() {
        Err(ProbeError::Sys {
            errno: nix::errno::Errno::ENOENT,
            ..
        }) => Ok(()),
        other => other,
    }
}

/// Finds `name` in $PATH (or the usual sbin dirs).
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for d in [
        "/usr/local/sbin",
        "/usr/sbin",
        "/sbin",
        "/usr/local/bin",
        "/usr/bin",
        "/bin",
    ] {
        dirs.push(PathBuf::from(d));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `BIN -V` runs and does not name the nf_tables backend.
fn is_legacy_iptables(bin: &Path) -> bool {
    match std::process::Command::new(bin)
        .arg("-V")
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => {
            !String::from_utf8_lossy(&out.stdout).contains("nf_tables")
        }
        _ => false,
    }
}

/// The iptables-save flavour that uses the legacy (x_tables) kernel API, if installed.
pub fn legacy_iptables_save(ipv6: bool) -> Option<PathBuf> {
    let names = if ipv6 {
        ["ip6tables-save", "ip6tables-legacy-save"]
    } else {
        ["iptables-save", "iptables-legacy-save"]
    };
    names
        .iter()
        .filter_map(|n| find_in_path(n))
        .find(|p| is_legacy_iptables(p))
}

/// iptables (and ip6tables where IPv6 is on) with the legacy backend are installed.
pub fn has_ipt_legacy() -> ProbeResult {
    let ipt = legacy_iptables_save(false).ok_or_else(|| {
        missing("Couldn't find iptables version which is using iptables legacy API")
    })?;
    tracing::info!("iptables cmd: {}", ipt.display());
    if !probe::sockets::ipv6_enabled() {
        return Ok(());
    }
    let ip6t = legacy_iptables_save(true).ok_or_else(|| {
        missing("Couldn't find ip6tables version which is using iptables legacy API")
    })?;
    tracing::info!("ip6tables cmd: {}", ip6t.display());
    Ok(())
}

const APPARMOR_FS: &str = "/sys/kernel/security/apparmor";

/// AppArmor is the active LSM (its securityfs directory exists).
pub fn apparmor_active() -> bool {
    Path::new(APPARMOR_FS).exists()
}

/// AppArmor namespaces can be stacked (domain/stack says yes, version at least 1.2).
pub fn apparmor_stacking() -> ProbeResult {
    let read = |f: &str| std::fs::read_to_string(format!("{APPARMOR_FS}/features/domain/{f}")).ok();
    let stack = read("stack").ok_or_else(|| missing("AppArmor stacking is not available"))?;
    if stack.split_whitespace().next() != Some("yes") {
        return Err(missing(format!(
            "aa stack featured disabled: {}",
            stack.trim()
        )));
    }
    let version = read("version").ok_or_else(|| missing("AppArmor domain version is unknown"))?;
    let mut parts = version
        .trim()
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if major >= 1 && minor >= 2 {
        Ok(())
    } else {
        Err(missing(format!(
            "AppArmor domain version {major}.{minor} can't stack namespaces"
        )))
    }
}
