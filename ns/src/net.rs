//! Network namespace: its devices in `netdev-N.img` (criu_netdev::links, over rtnetlink),
//! the namespace's sysctls in `netns-N.img`, its addresses, routes and rules and its firewall
//! (nftables ruleset, legacy iptables rules) in raw images, the last read before the dump locks
//! the namespace (see criu_netdev::netns). At restore the root is made in a new one (owned by
//! the root's user namespace); from a thread that joined it criu writes the sysctls, makes the
//! devices (outside veth ends in criu's own namespace), loads addresses, routes, rules and the
//! firewall, and makes the tree's sockets in it too (see `Owned::run_in_tree_ns`).

use std::path::Path;

use criu_procfs::NsKind;
use std::os::fd::AsRawFd;
use std::sync::Mutex;

use criu_netdev::links::{self, outside::Outside, Rtnl};
use criu_proto::images::{NetDeviceEntry, NetnsEntry};
use criu_proto::{ImageKind, ImageReader, ImageWriter};

use crate::enter::in_namespaces_of;
use crate::error::{enter, image, NsImageError};

const KIND: &str = "net";

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

/// Why the network namespace of `pid` cannot be dumped, if it cannot: a device of a kind
/// not kept.
pub fn check(pid: i32) -> Result<Option<String>, NsImageError> {
    let found = in_namespaces_of(pid, &[NsKind::Net], criu_netdev::links::dump::check)
        .map_err(enter(KIND))?;
    match found {
        Ok(()) => Ok(None),
        Err(e @ criu_netdev::links::LinkError::Unsupported { .. }) => Ok(Some(e.to_string())),
        Err(e) => Err(NsImageError::Bad {
            kind: KIND,
            what: format!("devices of pid {pid}'s namespace: {e}"),
        }),
    }
}

/// `held`: what the tree's tun files read of their devices.
pub fn dump(
    pid: i32,
    id: u32,
    state: &NetState,
    held: &criu_netdev::links::dump::HeldTuns,
    dir: &Path,
) -> Result<(), NsImageError> {
    let links = in_namespaces_of(pid, &[NsKind::Net], || {
        criu_netdev::links::dump::dump(id, held)
    })
    .map_err(enter(KIND))?
    .map_err(|e| NsImageError::Bad {
        kind: KIND,
        what: format!("devices of pid {pid}'s namespace: {e}"),
    })?;
    let mut w =
        ImageWriter::create(dir, &ImageKind::NETDEV, Some(id.into())).map_err(image(KIND))?;
    for entry in &links {
        w.write(entry).map_err(image(KIND))?;
    }
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

/// Fills the root's fresh network namespace (root `pid` as criu sees it): sysctls, devices,
/// addresses, routes and rules, firewall. The outside veth ends made are added to `made`;
/// if this fails they are removed at once.
pub fn restore(
    pid: i32,
    id: u32,
    dir: &Path,
    weak_sysctls: bool,
    outside: &Outside,
    made: &Mutex<Vec<String>>,
) -> Result<(), NsImageError> {
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
    let sysctls: NetnsEntry = ImageReader::open_if_exists(dir, &ImageKind::NETNS, Some(id.into()))
        .map_err(image(KIND))?
        .map(|mut img| img.read())
        .transpose()
        .map_err(image(KIND))?
        .flatten()
        .unwrap_or_default();
    let (ip, firewall) = read_raw(id, dir);
    let bad = |what: String| NsImageError::Bad { kind: KIND, what };
    // criu's own namespace, where outside ends go, reached from this thread before it joins.
    let host_ns = std::fs::File::open("/proc/thread-self/ns/net")
        .map_err(|e| bad(format!("cannot open criu's network namespace: {e}")))?;
    let host = Rtnl::new().map_err(|e| bad(e.to_string()))?;
    let mut ours = Vec::new();
    let result = in_namespaces_of(pid, &[NsKind::Net], || {
        // Sysctls first: devices made afterwards take the namespace's defaults.
        criu_netdev::netns::sysctl::restore(&sysctls, weak_sysctls)
            .map_err(|e| bad(e.to_string()))?;
        let host = links::restore::Host {
            rtnl: &host,
            ns: host_ns.as_raw_fd(),
        };
        tracing::debug!("net {id}: sysctls written");
        links::restore::restore(
            &devices,
            id,
            outside,
            &host,
            &sysctls,
            weak_sysctls,
            &mut ours,
        )
        .map_err(|e| bad(format!("devices: {e}")))?;
        tracing::debug!("net {id}: {} devices made", devices.len());
        // Addresses and routes name devices, which exist now.
        criu_netdev::netns::iproute::restore(&ip)
            .map_err(|e| bad(format!("addresses and routes: {e}")))?;
        tracing::debug!("net {id}: addresses, routes and rules loaded");
        criu_netdev::netns::firewall::restore(&firewall).map_err(|e| bad(format!("firewall: {e}")))
    })
    .map_err(enter(KIND))
    .and_then(|r| r);
    if result.is_err() {
        links::restore::remove_outside(&host, &ours);
    } else {
        made.lock().unwrap_or_else(|e| e.into_inner()).extend(ours);
    }
    result
}

/// Removes the outside veth ends a restore made (it failed later).
pub fn abort(made: &Mutex<Vec<String>>) {
    let ours = std::mem::take(&mut *made.lock().unwrap_or_else(|e| e.into_inner()));
    if ours.is_empty() {
        return;
    }
    match Rtnl::new() {
        Ok(host) => links::restore::remove_outside(&host, &ours),
        Err(e) => tracing::error!("restore failed, and its veth ends {ours:?} stay: {e}"),
    }
}

/// The tree's network namespaces below its root's (`sub`, by image id), made by the root
/// `pid` (driven through `r`) so that its user namespace owns them, and filled from criu like
/// the root's; the root goes back to its own at the end. Returns every namespace of the tree
/// by id, the root's (`root_id`) first.
#[allow(clippy::too_many_arguments)]
pub fn make_below(
    r: &mut criu_tracee::remote::Remote,
    pid: i32,
    (root_id, sub): (u32, &[u32]),
    dir: &Path,
    weak_sysctls: bool,
    outside: &Outside,
    made: &Mutex<Vec<String>>,
) -> Result<Vec<(u32, std::os::fd::OwnedFd)>, NsImageError> {
    let open = || {
        let path = format!("/proc/{pid}/ns/net");
        std::fs::File::open(&path)
            .map(std::os::fd::OwnedFd::from)
            .map_err(crate::error::io(KIND, format!("cannot open {path}")))
    };
    let own = open()?;
    let mut out = Vec::with_capacity(sub.len() + 1);
    for &id in sub {
        r.call(
            "unshare(CLONE_NEWNET)",
            libc::SYS_unshare,
            &[libc::CLONE_NEWNET as u64],
        )
        .map_err(crate::error::tracee(KIND))?;
        restore(pid, id, dir, weak_sysctls, outside, made)?;
        out.push((id, open()?));
    }
    if !sub.is_empty() {
        let channel = criu_tracee::fd_channel::FdChannel::open(r, pid, 0)
            .map_err(crate::error::tracee(KIND))?;
        let back = channel
            .take(r, own.as_raw_fd())
            .map_err(crate::error::tracee(KIND))?;
        r.call(
            "setns(CLONE_NEWNET)",
            libc::SYS_setns,
            &[back, libc::CLONE_NEWNET as u64],
        )
        .map_err(crate::error::tracee(KIND))?;
        r.close(back).map_err(crate::error::tracee(KIND))?;
        channel.close(r).map_err(crate::error::tracee(KIND))?;
    }
    out.insert(0, (root_id, own));
    Ok(out)
}
