//! A network namespace's sysctls that CRIU's images have no place for (its lists are
//! positional and CRIU refuses longer ones): our own `net-sysctls-N.img`, by name. Only the
//! names listed here are read and written, so an image cannot name another file.

use criu_proto::images::NetSysctlEntry;

use super::sysctl::{read, write, SysctlError};

/// Per-namespace sysctls under /proc/sys/net that a container or server sets; one the kernel
/// does not have is left out.
pub const MORE: &[&str] = &[
    "core/somaxconn",
    "ipv4/ip_local_port_range",
    "ipv4/ip_local_reserved_ports",
    "ipv4/ip_unprivileged_port_start",
    "ipv4/ip_default_ttl",
    "ipv4/ip_nonlocal_bind",
    "ipv4/ip_no_pmtu_disc",
    "ipv4/icmp_echo_ignore_all",
    "ipv4/icmp_echo_ignore_broadcasts",
    "ipv4/icmp_ratelimit",
    "ipv4/tcp_syncookies",
    "ipv4/tcp_fin_timeout",
    "ipv4/tcp_keepalive_time",
    "ipv4/tcp_keepalive_intvl",
    "ipv4/tcp_keepalive_probes",
    "ipv4/tcp_tw_reuse",
    "ipv4/tcp_timestamps",
    "ipv4/tcp_sack",
    "ipv4/tcp_window_scaling",
    "ipv4/tcp_ecn",
    "ipv4/tcp_rmem",
    "ipv4/tcp_wmem",
    "ipv4/tcp_max_syn_backlog",
    "ipv4/tcp_fastopen",
    "ipv4/fwmark_reflect",
    "ipv6/bindv6only",
    "ipv6/ip_nonlocal_bind",
    "ipv6/fwmark_reflect",
];

/// The values of `MORE` in the calling thread's namespace.
pub fn dump() -> Vec<NetSysctlEntry> {
    MORE.iter()
        .filter_map(|&name| {
            read(name).map(|value| NetSysctlEntry {
                name: name.to_string(),
                value,
            })
        })
        .collect()
}

/// Writes `entries` into the calling thread's namespace (a value it holds already is not
/// written); a name not in `MORE` is refused. `weak`: `--weak-sysctls`.
pub fn restore(entries: &[NetSysctlEntry], weak: bool) -> Result<(), SysctlError> {
    for e in entries {
        if !MORE.contains(&e.name.as_str()) {
            return Err(SysctlError::Unknown(e.name.clone()));
        }
        write(&e.name, &e.value, weak)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_names_are_written() {
        let hostile = NetSysctlEntry {
            name: "../../kernel/core_pattern".into(),
            value: "|/bin/sh".into(),
        };
        let err = restore(&[hostile], true).unwrap_err().to_string();
        assert!(err.contains("core_pattern"), "{err}");
        // This kernel has the common ones.
        let names: Vec<String> = dump().into_iter().map(|e| e.name).collect();
        assert!(names.iter().any(|n| n == "core/somaxconn"), "{names:?}");
        assert!(
            names.iter().any(|n| n == "ipv4/ip_local_port_range"),
            "{names:?}"
        );
    }
}
