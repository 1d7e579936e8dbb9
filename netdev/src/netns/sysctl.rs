//! The sysctls CRIU saves per network namespace: the IPv4 and IPv6 device defaults of the
//! `all` and `default` pseudo-devices (positional lists, in CRIU's order), the unix socket
//! queue length and `net.ipv4.ping_group_range`. A value the kernel does not have is left
//! out, as CRIU does; at restore only values that differ from the fresh namespace's are
//! written, and a write that fails is an error naming the sysctl.

use criu_proto::images::{NetnsEntry, SysctlEntry, SysctlType};

/// net.ipv4.conf.*: CRIU's list, in its order (the images are positional).
pub const DEVCONFS4: &[&str] = &[
    "accept_local",
    "accept_redirects",
    "accept_source_route",
    "arp_accept",
    "arp_announce",
    "arp_filter",
    "arp_ignore",
    "arp_notify",
    "bootp_relay",
    "disable_policy",
    "disable_xfrm",
    "force_igmp_version",
    "forwarding",
    "igmpv2_unsolicited_report_interval",
    "igmpv3_unsolicited_report_interval",
    "log_martians",
    "medium_id",
    "promote_secondaries",
    "proxy_arp",
    "proxy_arp_pvlan",
    "route_localnet",
    "rp_filter",
    "secure_redirects",
    "send_redirects",
    "shared_media",
    "src_valid_mark",
    "tag",
    "ignore_routes_with_linkdown",
    "drop_gratuitous_arp",
    "drop_unicast_in_l2_multicast",
];

/// net.ipv6.conf.*, likewise.
pub const DEVCONFS6: &[&str] = &[
    "accept_dad",
    "accept_ra",
    "accept_ra_defrtr",
    "accept_ra_from_local",
    "accept_ra_min_hop_limit",
    "accept_ra_mtu",
    "accept_ra_pinfo",
    "accept_ra_rt_info_max_plen",
    "accept_ra_rtr_pref",
    "accept_redirects",
    "accept_source_route",
    "autoconf",
    "dad_transmits",
    "disable_ipv6",
    "drop_unicast_in_l2_multicast",
    "drop_unsolicited_na",
    "force_mld_version",
    "force_tllao",
    "forwarding",
    "hop_limit",
    "ignore_routes_with_linkdown",
    "keep_addr_on_down",
    "max_addresses",
    "max_desync_factor",
    "mldv1_unsolicited_report_interval",
    "mldv2_unsolicited_report_interval",
    "mtu",
    "ndisc_notify",
    "optimistic_dad",
    "proxy_ndp",
    "regen_max_retry",
    "router_probe_interval",
    "router_solicitation_delay",
    "router_solicitation_interval",
    "router_solicitations",
    "stable_secret",
    "suppress_frag_ndisc",
    "temp_prefered_lft",
    "temp_valid_lft",
    "use_oif_addrs_only",
    "use_optimistic",
    "use_tempaddr",
];

/// The one IPv6 device value that is a string.
const STRING6: &str = "stable_secret";

#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("sysctl {path}: cannot write {value:?}: {source}")]
    Write {
        path: String,
        value: String,
        source: std::io::Error,
    },
    #[error("sysctl {path}: the image's value {value:?} is not a number")]
    Bad { path: String, value: String },
    #[error("the image names sysctl {0:?}, which criu does not restore")]
    Unknown(String),
}

fn path(name: &str) -> String {
    format!("/proc/sys/net/{name}")
}

/// One value as the kernel shows it (trimmed); None when the file is absent or unreadable
/// (IPv6's stable_secret reads EIO until set).
pub(crate) fn read(name: &str) -> Option<String> {
    let mut text = std::fs::read_to_string(path(name)).ok()?;
    text.truncate(text.trim_end().len());
    Some(text)
}

fn entry(value: Option<String>, string: bool) -> SysctlEntry {
    match (value, string) {
        (Some(v), true) => SysctlEntry {
            r#type: SysctlType::CtlStr as i32,
            sarg: Some(v),
            ..Default::default()
        },
        (v, _) => SysctlEntry {
            r#type: SysctlType::Ctl32 as i32,
            iarg: v.and_then(|v| v.parse().ok()),
            ..Default::default()
        },
    }
}

fn device(family: &str, dev: &str, names: &[&str]) -> Vec<SysctlEntry> {
    names
        .iter()
        .map(|n| {
            entry(
                read(&format!("{family}/conf/{dev}/{n}")),
                family == "ipv6" && *n == STRING6,
            )
        })
        .collect()
}

/// One device's `net.ipv4.conf.DEV.*` and `net.ipv6.conf.DEV.*` (`conf4`, `conf6` of its
/// `net_device_entry`).
pub fn dump_device(dev: &str) -> (Vec<SysctlEntry>, Vec<SysctlEntry>) {
    (
        device("ipv4", dev, DEVCONFS4),
        device("ipv6", dev, DEVCONFS6),
    )
}

/// Writes one device's dumped values where they differ from what it has. `defaults`: the
/// namespace's dumped `default` values (IPv4, IPv6), which a device made after they were
/// written has already: a value equal to its default is not even read (as CRIU).
pub fn restore_device_conf(
    dev: &str,
    conf4: &[SysctlEntry],
    conf6: &[SysctlEntry],
    defaults: Option<(&[SysctlEntry], &[SysctlEntry])>,
    weak: bool,
) -> Result<(), SysctlError> {
    let (def4, def6) = defaults.unwrap_or_default();
    let differ = |conf: &[SysctlEntry], def: &[SysctlEntry]| -> Vec<SysctlEntry> {
        conf.iter()
            .enumerate()
            .map(|(i, e)| match def.get(i) {
                Some(d) if value(d).is_some() && value(d) == value(e) => SysctlEntry::default(),
                _ => e.clone(),
            })
            .collect()
    };
    restore_device("ipv4", dev, DEVCONFS4, &differ(conf4, def4), weak)?;
    restore_device("ipv6", dev, DEVCONFS6, &differ(conf6, def6), weak)
}

/// The namespace's sysctls as `netns_entry` keeps them.
pub fn dump() -> NetnsEntry {
    NetnsEntry {
        def_conf4: device("ipv4", "default", DEVCONFS4),
        all_conf4: device("ipv4", "all", DEVCONFS4),
        def_conf6: device("ipv6", "default", DEVCONFS6),
        all_conf6: device("ipv6", "all", DEVCONFS6),
        unix_conf: vec![entry(read("unix/max_dgram_qlen"), false)],
        ipv4_sysctl: vec![entry(read("ipv4/ping_group_range"), true)],
        ..Default::default()
    }
}

/// Writes `name` = `value` unless it holds that already.
pub(crate) fn write(name: &str, value: &str, weak: bool) -> Result<(), SysctlError> {
    // stable_secret reads EIO until it is set: a file that cannot be read is still written.
    let now = read(name);
    if now.is_none() && !std::path::Path::new(&path(name)).exists() {
        return Ok(());
    }
    // ping_group_range reads back with a tab between its two numbers.
    let same = |a: &str, b: &str| a.split_whitespace().eq(b.split_whitespace());
    if now.is_some_and(|now| same(&now, value)) {
        return Ok(());
    }
    match std::fs::write(path(name), value) {
        Ok(()) => Ok(()),
        Err(e) if weak => {
            tracing::warn!(
                "sysctl {}: cannot write {value:?}: {e} (--weak-sysctls)",
                path(name)
            );
            Ok(())
        }
        Err(source) => Err(SysctlError::Write {
            path: path(name),
            value: value.into(),
            source,
        }),
    }
}

fn value(e: &SysctlEntry) -> Option<String> {
    if e.r#type == SysctlType::CtlStr as i32 {
        e.sarg.clone()
    } else {
        e.iarg.map(|v| v.to_string())
    }
}

/// Writes `dev`'s values, `forwarding` first: writing `all`'s sets `all`'s accept_redirects
/// (IPv4: to the opposite) along with it.
fn restore_device(
    family: &str,
    dev: &str,
    names: &[&str],
    conf: &[SysctlEntry],
    weak: bool,
) -> Result<(), SysctlError> {
    let mut order: Vec<(&&str, &SysctlEntry)> = names.iter().zip(conf).collect();
    order.sort_by_key(|(name, _)| **name != "forwarding");
    for (name, e) in order {
        if let Some(v) = value(e) {
            write(&format!("{family}/conf/{dev}/{name}"), &v, weak)?;
        }
    }
    Ok(())
}

/// Writes the dumped sysctls into the calling thread's (fresh) namespace: the `all` values
/// first, then `default` (writing `all`'s forwarding or disable_ipv6 sets `default`'s too, and
/// every device's: the devices are made afterwards). `weak`: `--weak-sysctls`, a value the
/// kernel refuses is only warned about.
pub fn restore(e: &NetnsEntry, weak: bool) -> Result<(), SysctlError> {
    restore_device("ipv4", "all", DEVCONFS4, &e.all_conf4, weak)?;
    restore_device("ipv4", "default", DEVCONFS4, &e.def_conf4, weak)?;
    restore_device("ipv6", "all", DEVCONFS6, &e.all_conf6, weak)?;
    restore_device("ipv6", "default", DEVCONFS6, &e.def_conf6, weak)?;
    for (name, e) in [
        ("unix/max_dgram_qlen", e.unix_conf.first()),
        ("ipv4/ping_group_range", e.ipv4_sysctl.first()),
    ] {
        if let Some(v) = e.and_then(value) {
            write(name, &v, weak)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_their_kind() {
        let n = entry(Some("1".into()), false);
        assert_eq!((n.r#type, n.iarg), (SysctlType::Ctl32 as i32, Some(1)));
        let s = entry(Some("1\t2".into()), true);
        assert_eq!(value(&s).as_deref(), Some("1\t2"));
        // A value the kernel did not have stays absent.
        assert_eq!(value(&entry(None, false)), None);
    }

    #[test]
    fn this_kernel_has_the_listed_values() {
        let e = dump();
        assert_eq!(e.def_conf4.len(), DEVCONFS4.len());
        let forwarding = DEVCONFS4.iter().position(|n| *n == "forwarding").unwrap();
        assert!(e.all_conf4[forwarding].iarg.is_some());
        assert!(value(&e.ipv4_sysctl[0]).is_some());
    }
}
