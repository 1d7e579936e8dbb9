//! Network namespace: its devices in `netdev-N.img` (criu_netdev::links, over rtnetlink),
//! the namespace's sysctls in `netns-N.img`, its addresses, routes and rules and its firewall
//! (nftables ruleset, legacy iptables rules) in raw images, the last read before the dump locks
//! the namespace (see criu_netdev::netns). The same for each namespace below the tree's own
//! that a task is in (a veth's peer there is named by that namespace's id). At restore the
//! root is made in a new one (owned by the root's user namespace) and makes the ones below;
//! from a thread that joined each criu writes the sysctls, makes the devices (outside veth ends
//! in criu's own namespace, a veth between two of the tree's from the one filled first), loads
//! addresses, routes, rules and the firewall; the tree's sockets are made in theirs (see
//! `Owned::run_in_tree_ns` and criu_files::netns).

use std::path::Path;

use criu_procfs::NsKind;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
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
    /// Sysctls beyond CRIU's lists (our own image).
    more_sysctls: Vec<criu_proto::images::NetSysctlEntry>,
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
            more_sysctls: criu_netdev::netns::more_sysctls::dump(),
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

/// `held`: what the tree's tun files read of their devices; `others`: the tree's other
/// network namespaces by id.
pub fn dump(
    pid: i32,
    id: u32,
    state: &NetState,
    (held, others): (
        &criu_netdev::links::dump::HeldTuns,
        &[(u32, std::os::fd::BorrowedFd<'_>)],
    ),
    dir: &Path,
) -> Result<(), NsImageError> {
    let links = in_namespaces_of(pid, &[NsKind::Net], || {
        criu_netdev::links::dump::dump(id, held, others)
    })
    .map_err(enter(KIND))?
    .map_err(|e| NsImageError::Bad {
        kind: KIND,
        what: format!("devices of pid {pid}'s namespace: {e}"),
    })?;
    let mut w =
        ImageWriter::create(dir, &ImageKind::NETDEV, Some(id.into())).map_err(image(KIND))?;
    for entry in &links.devices {
        w.write(entry).map_err(image(KIND))?;
    }
    w.finish().map_err(image(KIND))?;
    let mut w =
        ImageWriter::create(dir, &ImageKind::NETNS, Some(id.into())).map_err(image(KIND))?;
    let netns = NetnsEntry {
        nsids: links.nsids,
        ..state.sysctls.clone()
    };
    w.write(&netns).map_err(image(KIND))?;
    w.finish().map_err(image(KIND))?;
    let mut w =
        ImageWriter::create(dir, &ImageKind::NET_SYSCTLS, Some(id.into())).map_err(image(KIND))?;
    for e in &state.more_sysctls {
        w.write(e).map_err(image(KIND))?;
    }
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

/// What filling one network namespace needs besides its images.
pub struct FillOptions<'a> {
    pub weak_sysctls: bool,
    pub outside: &'a Outside,
    /// Outside veth ends made so far; those made here are added.
    pub made: &'a Mutex<Vec<String>>,
}

/// One namespace's images: devices and sysctls (netdev-N.img, netns-N.img).
fn read_devices(id: u32, dir: &Path) -> Result<(Vec<NetDeviceEntry>, NetnsEntry), NsImageError> {
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
    Ok((devices, sysctls))
}

/// Fills the fresh network namespace `ns`, image id `id`: sysctls, devices, addresses,
/// routes and rules, firewall. `tree`: the tree's other namespaces (veths between two). The
/// outside veth ends made are added to `opts.made`; if this fails they are removed at once.
fn fill(
    ns: BorrowedFd<'_>,
    (id, devices, sysctls): (u32, &[NetDeviceEntry], &NetnsEntry),
    dir: &Path,
    tree: &links::restore::TreeNets,
    opts: &FillOptions,
) -> Result<(), NsImageError> {
    let (ip, firewall) = read_raw(id, dir);
    // Our own image; a dump by CRIU has none.
    let more_sysctls: Vec<criu_proto::images::NetSysctlEntry> =
        ImageReader::open_if_exists(dir, &ImageKind::NET_SYSCTLS, Some(id.into()))
            .map_err(image(KIND))?
            .map(|mut img| img.read_all())
            .transpose()
            .map_err(image(KIND))?
            .unwrap_or_default();
    let bad = |what: String| NsImageError::Bad { kind: KIND, what };
    // criu's own namespace, where outside ends go, reached from this thread before it joins.
    let host_ns = std::fs::File::open("/proc/thread-self/ns/net")
        .map_err(|e| bad(format!("cannot open criu's network namespace: {e}")))?;
    let host = Rtnl::new().map_err(|e| bad(e.to_string()))?;
    let mut ours = Vec::new();
    let result = crate::enter::in_netns(ns, || {
        // Sysctls first: devices made afterwards take the namespace's defaults.
        criu_netdev::netns::sysctl::restore(sysctls, opts.weak_sysctls)
            .map_err(|e| bad(e.to_string()))?;
        criu_netdev::netns::more_sysctls::restore(&more_sysctls, opts.weak_sysctls)
            .map_err(|e| bad(e.to_string()))?;
        let host = links::restore::Host {
            rtnl: &host,
            ns: host_ns.as_raw_fd(),
        };
        tracing::debug!("net {id}: sysctls written");
        let weak = opts.weak_sysctls;
        links::restore::restore(
            devices,
            id,
            opts.outside,
            &host,
            tree,
            sysctls,
            weak,
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
        opts.made
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(ours);
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

/// The root's fresh network namespace (image id `root_id`) and the tree's namespaces below
/// it (`sub`, by image id), made by the root `pid` (driven through `r`) so that its user
/// namespace owns them; the root goes back to its own. Returns every namespace of the tree by
/// id, the root's first, for [`fill_all`].
pub fn make_all(
    r: &mut criu_tracee::remote::Remote,
    pid: i32,
    (root_id, sub): (u32, &[u32]),
) -> Result<Vec<(u32, OwnedFd)>, NsImageError> {
    let open = || {
        let path = format!("/proc/{pid}/ns/net");
        std::fs::File::open(&path)
            .map(OwnedFd::from)
            .map_err(crate::error::io(KIND, format!("cannot open {path}")))
    };
    let tracee = crate::error::tracee(KIND);
    let mut all = vec![(root_id, open()?)];
    for &id in sub {
        r.call(
            "unshare(CLONE_NEWNET)",
            libc::SYS_unshare,
            &[libc::CLONE_NEWNET as u64],
        )
        .map_err(&tracee)?;
        all.push((id, open()?));
    }
    if !sub.is_empty() {
        let channel = criu_tracee::fd_channel::FdChannel::open(r, pid, 0).map_err(&tracee)?;
        let back = channel.take(r, all[0].1.as_raw_fd()).map_err(&tracee)?;
        r.call(
            "setns(CLONE_NEWNET)",
            libc::SYS_setns,
            &[back, libc::CLONE_NEWNET as u64],
        )
        .map_err(&tracee)?;
        r.close(back).map_err(&tracee)?;
        channel.close(r).map_err(&tracee)?;
    }
    Ok(all)
}

/// Fills every namespace `make_all` made, all of them existing first (a veth may join two).
pub fn fill_all(
    all: &[(u32, OwnedFd)],
    dir: &Path,
    opts: &FillOptions,
) -> Result<(), NsImageError> {
    let images = all
        .iter()
        .map(|(id, _)| read_devices(*id, dir))
        .collect::<Result<Vec<_>, _>>()?;
    let tree = all
        .iter()
        .zip(&images)
        .map(|((id, fd), (devs, _))| (*id, fd.as_fd(), &devs[..]))
        .collect::<Vec<_>>();
    for (me, ((id, ns), (devices, sysctls))) in all.iter().zip(&images).enumerate() {
        let tree = links::restore::TreeNets {
            all: tree.clone(),
            me,
        };
        fill(ns.as_fd(), (*id, devices, sysctls), dir, &tree, opts)?;
    }
    Ok(())
}
