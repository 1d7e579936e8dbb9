//! Network namespace, until network devices are dumped (netdev crate): a namespace whose only
//! device is `lo` with its usual addresses. Its state is `lo`'s flags and MTU in
//! `netdev-N.img`, the namespace's sysctls in `netns-N.img` and its firewall (nftables ruleset,
//! legacy iptables rules) in raw images, all read before the dump locks the namespace (see
//! criu_netdev::netns). At restore the root is made in a new one (owned by the root's user
//! namespace), criu sets `lo` up, writes the sysctls and loads the firewall from a thread that
//! joined it, and makes the tree's sockets in it too (see `Owned::run_in_tree_ns`).

use std::path::Path;

use criu_procfs::NsKind;
use criu_proto::images::{NdType, NetDeviceEntry, NetnsEntry};
use criu_proto::{ImageKind, ImageReader, ImageWriter};

use crate::enter::in_namespaces_of;
use crate::error::{enter, image, NsImageError};

const KIND: &str = "net";

/// One address of the namespace as getifaddrs lists it: device, address, prefix length (a
/// device with no address shows once without).
type DevAddr = (String, Option<std::net::IpAddr>, Option<u32>);

/// What a namespace of `lo` alone may hold: another device needs the device dump.
fn refusal(devices: &[DevAddr]) -> Option<String> {
    let mut other: Vec<String> = devices
        .iter()
        .filter(|(n, _, _)| n != "lo")
        .map(|(n, _, _)| n.clone())
        .collect();
    other.dedup();
    (!other.is_empty()).then(|| format!("devices other than lo ({})", other.join(", ")))
}

/// Each address of the calling thread's namespace: (device, address, prefix length).
fn devices() -> Result<Vec<DevAddr>, String> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| format!("getifaddrs: {e}"))?;
    Ok(addrs
        .map(|a| {
            let ip = a.address.as_ref().and_then(|s| {
                s.as_sockaddr_in()
                    .map(|v4| std::net::IpAddr::V4(v4.ip()))
                    .or_else(|| s.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip())))
            });
            let prefix = a.netmask.as_ref().and_then(|m| {
                m.as_sockaddr_in()
                    .map(|v4| u32::from(v4.ip()).count_ones())
                    .or_else(|| {
                        m.as_sockaddr_in6()
                            .map(|v6| u128::from(v6.ip()).count_ones())
                    })
            });
            (a.interface_name, ip, ip.and(prefix))
        })
        .collect())
}

/// What a namespace holds besides `lo`, read before the dump locks it (the lock's own rules
/// must not be in the images).
#[derive(Debug, Clone, Default)]
pub struct NetState {
    sysctls: NetnsEntry,
    ip: criu_netdev::netns::iproute::IpState,
    firewall: criu_netdev::netns::firewall::Firewall,
}

/// Reads the sysctls and the firewall of `pid`'s network namespace.
pub fn snapshot(pid: i32) -> Result<NetState, NsImageError> {
    in_namespaces_of(pid, &[NsKind::Net], || {
        let bad = |what: &str, e: criu_netdev::netns::ToolError| NsImageError::Bad {
            kind: KIND,
            what: format!("{what} of pid {pid}'s namespace: {e}"),
        };
        Ok(NetState {
            sysctls: criu_netdev::netns::sysctl::dump(),
            ip: criu_netdev::netns::iproute::dump().map_err(|e| bad("addresses and routes", e))?,
            firewall: criu_netdev::netns::firewall::dump().map_err(|e| bad("firewall", e))?,
        })
    })
    .map_err(enter(KIND))?
}

/// Why the network namespace of `pid` cannot be dumped yet, if it cannot.
pub fn check(pid: i32) -> Result<Option<String>, NsImageError> {
    let found = in_namespaces_of(pid, &[NsKind::Net], devices).map_err(enter(KIND))?;
    let found = found.map_err(|what| NsImageError::Bad { kind: KIND, what })?;
    Ok(refusal(&found))
}

pub fn dump(pid: i32, id: u32, state: &NetState, dir: &Path) -> Result<(), NsImageError> {
    let lo = in_namespaces_of(pid, &[NsKind::Net], || criu_sys::netif::flags_and_mtu("lo"))
        .map_err(enter(KIND))?
        .map_err(|e| NsImageError::Bad {
            kind: KIND,
            what: format!("cannot read lo of pid {pid}: {e}"),
        })?;
    let entry = NetDeviceEntry {
        r#type: NdType::Loopback as i32,
        ifindex: 1,
        mtu: lo.1,
        flags: lo.0,
        name: "lo".into(),
        ..Default::default()
    };
    let mut w =
        ImageWriter::create(dir, &ImageKind::NETDEV, Some(id.into())).map_err(image(KIND))?;
    w.write(&entry).map_err(image(KIND))?;
    w.finish().map_err(image(KIND))?;
    let mut w =
        ImageWriter::create(dir, &ImageKind::NETNS, Some(id.into())).map_err(image(KIND))?;
    w.write(&state.sysctls).map_err(image(KIND))?;
    w.finish().map_err(image(KIND))?;
    let (fw, ip) = (&state.firewall, &state.ip);
    for (kind, bytes) in [
        (&ImageKind::IFADDR, &ip.addr),
        (&ImageKind::ROUTE, &ip.route),
        (&ImageKind::ROUTE6, &ip.route6),
        (&ImageKind::RULE, &ip.rule),
        (&ImageKind::IPTABLES, &fw.iptables),
        (&ImageKind::IP6TABLES, &fw.ip6tables),
        (&ImageKind::NFTABLES, &fw.nftables),
    ] {
        let path = dir.join(kind.file_name(Some(id.into())));
        std::fs::write(&path, bytes).map_err(|e| NsImageError::Bad {
            kind: KIND,
            what: format!("cannot write {}: {e}", path.display()),
        })?;
    }
    Ok(())
}

/// The raw images of namespace `id` (addresses, routes, rules, firewall); a missing one (an
/// older dump) is empty.
fn read_raw(
    id: u32,
    dir: &Path,
) -> (
    criu_netdev::netns::iproute::IpState,
    criu_netdev::netns::firewall::Firewall,
) {
    let read = |kind: &ImageKind| {
        std::fs::read(dir.join(kind.file_name(Some(id.into())))).unwrap_or_default()
    };
    let ip = criu_netdev::netns::iproute::IpState {
        addr: read(&ImageKind::IFADDR),
        route: read(&ImageKind::ROUTE),
        route6: read(&ImageKind::ROUTE6),
        rule: read(&ImageKind::RULE),
    };
    let firewall = criu_netdev::netns::firewall::Firewall {
        iptables: read(&ImageKind::IPTABLES),
        ip6tables: read(&ImageKind::IP6TABLES),
        nftables: read(&ImageKind::NFTABLES),
    };
    (ip, firewall)
}

/// The network namespace `--external net[INODE]:KEY` named: only its key is written.
pub fn dump_external(id: u32, key: &str, dir: &Path) -> Result<(), NsImageError> {
    let mut w =
        ImageWriter::create(dir, &ImageKind::NETNS, Some(id.into())).map_err(image(KIND))?;
    w.write(&NetnsEntry {
        ext_key: Some(key.to_string()),
        ..Default::default()
    })
    .map_err(image(KIND))?;
    w.finish().map_err(image(KIND))?;
    Ok(())
}

/// The key of an external network namespace, if the dump made it one.
pub fn external_key(id: u32, dir: &Path) -> Result<Option<String>, NsImageError> {
    let img = ImageReader::open_if_exists(dir, &ImageKind::NETNS, Some(id.into()))
        .map_err(image(KIND))?;
    let Some(mut img) = img else { return Ok(None) };
    let e: Option<NetnsEntry> = img.read().map_err(image(KIND))?;
    Ok(e.and_then(|e| e.ext_key))
}

/// Gives `lo` of the root's fresh network namespace (root `pid` as criu sees it) the dumped
/// flags and MTU.
pub fn restore(pid: i32, id: u32, dir: &Path, weak_sysctls: bool) -> Result<(), NsImageError> {
    let img = ImageReader::open_if_exists(dir, &ImageKind::NETDEV, Some(id.into()))
        .map_err(image(KIND))?;
    let Some(mut img) = img else {
        return Err(NsImageError::Bad {
            kind: KIND,
            what: format!(
                "netdev-{id}.img is missing (a dump made with --empty-ns net is restored with \
                 --empty-ns net)"
            ),
        });
    };
    let devices: Vec<NetDeviceEntry> = img.read_all().map_err(image(KIND))?;
    if let Some(d) = devices.iter().find(|d| d.r#type != NdType::Loopback as i32) {
        return Err(NsImageError::Bad {
            kind: KIND,
            what: format!("device {} is not restored yet (only lo is)", d.name),
        });
    }
    let sysctls: NetnsEntry = ImageReader::open_if_exists(dir, &ImageKind::NETNS, Some(id.into()))
        .map_err(image(KIND))?
        .map(|mut img| img.read())
        .transpose()
        .map_err(image(KIND))?
        .flatten()
        .unwrap_or_default();
    let (ip, firewall) = read_raw(id, dir);
    let bad = |what: String| NsImageError::Bad { kind: KIND, what };
    in_namespaces_of(pid, &[NsKind::Net], || {
        for d in &devices {
            criu_sys::netif::set_flags_and_mtu(&d.name, d.flags, d.mtu)
                .map_err(|e| bad(format!("cannot set up {}: {e}", d.name)))?;
        }
        criu_netdev::netns::sysctl::restore(&sysctls, weak_sysctls)
            .map_err(|e| bad(e.to_string()))?;
        criu_netdev::netns::iproute::restore(&ip)
            .map_err(|e| bad(format!("addresses and routes: {e}")))?;
        criu_netdev::netns::firewall::restore(&firewall).map_err(|e| bad(format!("firewall: {e}")))
    })
    .map_err(enter(KIND))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(name: &str, ip: Option<&str>, prefix: Option<u32>) -> DevAddr {
        (name.into(), ip.map(|s| s.parse().unwrap()), prefix)
    }

    #[test]
    fn lo_alone_passes_and_anything_else_is_named() {
        let usual = [
            dev("lo", None, None),
            dev("lo", Some("127.0.0.1"), Some(8)),
            dev("lo", Some("::1"), Some(128)),
        ];
        assert_eq!(refusal(&usual), None);
        let veth = [dev("lo", None, None), dev("veth0", None, None)];
        assert!(refusal(&veth).unwrap().contains("veth0"));
        // More addresses on lo are dumped (ip addr save), not refused.
        let extra = [dev("lo", Some("127.0.0.2"), Some(8))];
        assert_eq!(refusal(&extra), None);
    }
}
