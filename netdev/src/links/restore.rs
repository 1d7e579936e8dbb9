//! Restore half: the dumped links made again in the calling thread's (fresh) network
//! namespace over rtnetlink, each with its index, name, MTU, MAC address, flags and master,
//! masters before their ports. A veth's outside end is made in criu's namespace under the name
//! `--veth-pair`/`--external veth[..]` gives (and enslaved to the bridge named there); a veth
//! whose both ends are inside is made once, as a pair; a persistent tun/tap device through
//! `/dev/net/tun` with its settings; a macvlan is made on the parent
//! `--external macvlan[..]` names in criu's namespace and moved in as it is created; a
//! device `--external netdev[IN]:OUT` names is criu's OUT, moved in as IN with the dumped
//! index.

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, RawFd};

use criu_proto::images::{NdType, NetDeviceEntry, NetnsEntry};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    MacVlanFlags,
};

use super::outside::Outside;
use super::rtnl::Rtnl;
use super::LinkError;

/// What the restore needs from criu's own namespace: a connection made there and a
/// descriptor of it (the namespace the outside ends go to).
pub struct Host<'a> {
    pub rtnl: &'a Rtnl,
    pub ns: RawFd,
}

/// The tree's network namespaces in the order they are filled, for veths whose ends are in
/// two of them: the pair is made by the namespace filled first, its far end put in the other.
#[derive(Default)]
pub struct TreeNets<'a> {
    /// Every namespace of the tree: id, descriptor and devices.
    pub all: Vec<(u32, std::os::fd::BorrowedFd<'a>, &'a [NetDeviceEntry])>,
    /// The one being filled, by position in `all`.
    pub me: usize,
}

impl TreeNets<'_> {
    /// The position of namespace `id` in the fill order.
    fn position(&self, id: u32) -> Option<usize> {
        self.all.iter().position(|(n, _, _)| *n == id)
    }

    /// The descriptor of namespace `id`.
    fn fd_of(&self, id: u32) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.position(id).map(|i| self.all[i].1)
    }

    /// The far end of veth `d` of namespace `ns_id` when it is in one filled later, with
    /// that namespace's descriptor.
    fn far_end(&self, d: &NetDeviceEntry, ns_id: u32) -> Option<(RawFd, &NetDeviceEntry)> {
        let peer_ns = d.peer_nsid.filter(|&n| n != ns_id)?;
        let (_, fd, devs) = self
            .all
            .get(self.position(peer_ns).filter(|&i| i > self.me)?)?;
        let end = devs.iter().find(|p| Some(p.ifindex) == d.peer_ifindex)?;
        Some((fd.as_raw_fd(), end))
    }

    /// Whether veth `d` of namespace `ns_id` was made with its far end, from a namespace
    /// filled before.
    fn made_before(&self, d: &NetDeviceEntry, ns_id: u32) -> bool {
        let filled_before = |n| self.position(n).is_some_and(|i| i < self.me);
        d.r#type == NdType::Veth as i32
            && d.peer_nsid.is_some_and(|n| n != ns_id && filled_before(n))
    }
}

/// The message that makes or sets `d` as dumped: index, name, MTU, address, flags.
fn base(d: &NetDeviceEntry) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = d.ifindex;
    m.header.flags = LinkFlags::from_bits_retain(d.flags);
    m.attributes.push(LinkAttribute::IfName(d.name.clone()));
    m.attributes.push(LinkAttribute::Mtu(d.mtu));
    if let Some(a) = &d.address {
        m.attributes.push(LinkAttribute::Address(a.clone()));
    }
    m
}

fn kind_name(ty: i32) -> String {
    NdType::try_from(ty)
        .map(|t| t.as_str_name().to_lowercase())
        .unwrap_or_else(|_| format!("type {ty}"))
}

/// Makes every link of `devs` (the dump of namespace `ns_id`, whose sysctls `defaults` are
/// written already) in the calling thread's namespace. Each outside end made is added to
/// `made` as it is made; the caller removes them if anything fails (see [`remove_outside`]).
#[allow(clippy::too_many_arguments)]
pub fn restore(
    devs: &[NetDeviceEntry],
    ns_id: u32,
    outside: &Outside,
    host: &Host,
    tree: &TreeNets,
    defaults: &NetnsEntry,
    weak_sysctls: bool,
    made: &mut Vec<String>,
) -> Result<(), LinkError> {
    let inside = Rtnl::new()?;
    // The ids this namespace gives the others, before a veth between them makes one up.
    for n in &defaults.nsids {
        if let Some(fd) = tree.fd_of(n.target_ns_id) {
            inside.set_nsid(fd, n.netnsid_value)?;
        }
    }
    // lo comes with the namespace.
    let mut created: BTreeSet<u32> = BTreeSet::from([1]);
    // Veth ends made with their peer (here or from another namespace), still to be set up.
    let mut paired: BTreeSet<u32> = devs
        .iter()
        .filter(|d| tree.made_before(d, ns_id))
        .map(|d| d.ifindex)
        .collect();
    let mut pending: Vec<&NetDeviceEntry> = devs.iter().collect();
    while !pending.is_empty() {
        let before = pending.len();
        let mut later = Vec::new();
        for d in pending {
            if d.master.is_some_and(|m| !created.contains(&m)) {
                later.push(d);
                continue;
            }
            if paired.remove(&d.ifindex) {
                inside.set(format!("cannot set up {}", d.name), base(d))?;
            } else if !created.contains(&d.ifindex) || d.r#type == NdType::Loopback as i32 {
                let ctx = Ctx {
                    ns_id,
                    outside,
                    host,
                    tree,
                    inside: &inside,
                };
                make(d, devs, &ctx, made, &mut paired)?;
            }
            created.insert(d.ifindex);
            if let Some(master) = d.master {
                let mut m = LinkMessage::default();
                m.header.index = d.ifindex;
                m.attributes.push(LinkAttribute::Controller(master));
                inside.set(format!("cannot enslave {} to link {master}", d.name), m)?;
            }
            // lo was there before the namespace's defaults were written.
            let defaults = (d.r#type != NdType::Loopback as i32)
                .then_some((&defaults.def_conf4[..], &defaults.def_conf6[..]));
            crate::netns::sysctl::restore_device_conf(
                &d.name,
                &d.conf4,
                &d.conf6,
                defaults,
                weak_sysctls,
            )
            .map_err(|e| LinkError::Bad(format!("device {}: {e}", d.name)))?;
        }
        if later.len() == before {
            let names: Vec<_> = later.iter().map(|d| d.name.as_str()).collect();
            return Err(LinkError::Bad(format!(
                "the masters of {} are not in the image",
                names.join(", ")
            )));
        }
        pending = later;
    }
    for (inner, (out, bridge)) in &outside.veth {
        if let Some(bridge) = bridge.as_deref().filter(|_| made.contains(out)) {
            enslave_outside(host.rtnl, inner, out, bridge)?;
        }
    }
    Ok(())
}

/// Where links are made: this namespace's id and connection, what is outside it.
struct Ctx<'a> {
    ns_id: u32,
    outside: &'a Outside,
    host: &'a Host<'a>,
    tree: &'a TreeNets<'a>,
    inside: &'a Rtnl,
}

/// Makes (or for lo, sets) one link.
fn make(
    d: &NetDeviceEntry,
    devs: &[NetDeviceEntry],
    ctx: &Ctx,
    made: &mut Vec<String>,
    paired: &mut BTreeSet<u32>,
) -> Result<(), LinkError> {
    let Ctx {
        ns_id,
        outside,
        host,
        tree,
        inside,
    } = *ctx;
    let name = &d.name;
    let mut m = base(d);
    let info = |kind: InfoKind, data: Option<InfoData>| {
        let mut i = vec![LinkInfo::Kind(kind)];
        i.extend(data.map(LinkInfo::Data));
        LinkAttribute::LinkInfo(i)
    };
    match NdType::try_from(d.r#type) {
        Ok(NdType::Loopback) => inside.set(format!("cannot set up {name}"), m),
        Ok(NdType::Tun) => {
            let t = d.tun.as_ref().ok_or_else(|| {
                LinkError::Bad(format!("tun device {name}: the image has no tun entry"))
            })?;
            let settings = criu_sys::tun::TunSettings {
                flags: t.flags,
                owner: t.owner,
                group: t.group,
                vnethdr: t.vnethdr as i32,
                sndbuf: t.sndbuf as i32,
            };
            criu_sys::tun::create(name, d.ifindex, &settings).map_err(|(what, e)| {
                LinkError::Bad(format!("cannot make tun device {name}: {what}: {e}"))
            })?;
            inside.set(format!("cannot set up {name}"), m)
        }
        Ok(NdType::Bridge) => {
            m.attributes.push(info(InfoKind::Bridge, None));
            inside.add(format!("cannot make bridge {name}"), m)
        }
        _ if outside.netdev.contains_key(name) => {
            let out = &outside.netdev[name];
            let index = host.rtnl.index_of(out)?.ok_or_else(|| {
                LinkError::Bad(format!(
                    "device {name}: criu's network namespace has no device {out} to move in"
                ))
            })?;
            let here = this_namespace()?;
            // Moved and renamed first; index, MTU, address and flags set once inside.
            let mut mv = LinkMessage::default();
            mv.header.index = index;
            mv.attributes.push(LinkAttribute::IfName(name.clone()));
            mv.attributes.push(LinkAttribute::NetNsFd(here.as_raw_fd()));
            mv.attributes
                .push(LinkAttribute::NewIfIndex(d.ifindex as i32));
            host.rtnl
                .set(format!("cannot move {out} in as {name}"), mv)?;
            inside.set(format!("cannot set up {name}"), m)
        }
        Ok(NdType::Veth) => {
            let mut peer = LinkMessage::default();
            let out = outside.veth.get(name);
            let inner_peer = devs.iter().find(|p| {
                d.peer_nsid == Some(ns_id)
                    && Some(p.ifindex) == d.peer_ifindex
                    && p.ifindex != d.ifindex
            });
            let what = if let Some((out, _)) = out {
                peer.attributes.push(LinkAttribute::IfName(out.clone()));
                peer.attributes.push(LinkAttribute::NetNsFd(host.ns));
                format!("cannot make veth {name} with its outside end {out}")
            } else if let Some((fd, p)) = tree.far_end(d, ns_id) {
                // Its far end in another of the tree's namespaces, set up when that one is
                // filled.
                peer = base(p);
                peer.header.flags = LinkFlags::empty();
                peer.attributes.push(LinkAttribute::NetNsFd(fd));
                format!(
                    "cannot make veth {name} with {} in another namespace",
                    p.name
                )
            } else if let Some(p) = inner_peer {
                // Set up once made: a veth end opened before its pair is whole fails
                // (ENOTCONN).
                peer = base(p);
                peer.header.flags = LinkFlags::empty();
                paired.insert(p.ifindex);
                format!("cannot make veth pair {name}, {}", p.name)
            } else {
                return Err(LinkError::Bad(format!(
                    "veth {name}: its peer is outside the namespace: name the outside end with \
                     --veth-pair {name}=OUT[@BRIDGE] or --external veth[{name}]:OUT[@BRIDGE]"
                )));
            };
            m.attributes.push(info(
                InfoKind::Veth,
                Some(InfoData::Veth(InfoVeth::Peer(peer))),
            ));
            inside.add(what, m)?;
            if let Some((out, _)) = out {
                made.push(out.clone());
            }
            Ok(())
        }
        Ok(NdType::Macvlan) => {
            let parent = outside.macvlan.get(name).ok_or_else(|| {
                LinkError::Bad(format!(
                    "macvlan {name}: its parent is not given: --external macvlan[{name}]:DEVICE"
                ))
            })?;
            let index = host.rtnl.index_of(parent)?.ok_or_else(|| {
                LinkError::Bad(format!(
                    "macvlan {name}: criu's network namespace has no device {parent}"
                ))
            })?;
            let mv = d.macvlan.as_ref().ok_or_else(|| {
                LinkError::Bad(format!("macvlan {name}: the image has no macvlan entry"))
            })?;
            let mut data = vec![InfoMacVlan::Mode(mv.mode.into())];
            if let Some(f) = mv.flags {
                data.push(InfoMacVlan::Flags(MacVlanFlags::from_bits_retain(f as u16)));
            }
            let here = this_namespace()?;
            m.attributes.push(LinkAttribute::Link(index));
            m.attributes.push(LinkAttribute::NetNsFd(here.as_raw_fd()));
            m.attributes
                .push(info(InfoKind::MacVlan, Some(InfoData::MacVlan(data))));
            host.rtnl
                .add(format!("cannot make macvlan {name} on {parent}"), m)
        }
        _ => Err(LinkError::Unsupported {
            name: name.clone(),
            kind: kind_name(d.r#type),
            why: "this kind is not restored".into(),
        }),
    }
}

/// The calling thread's network namespace (the restored one).
fn this_namespace() -> Result<std::fs::File, LinkError> {
    std::fs::File::open("/proc/thread-self/ns/net").map_err(|source| LinkError::Io {
        what: "cannot open the restored network namespace".into(),
        source,
    })
}

/// Enslaves outside end `out` (of veth `inner`) to `bridge` in criu's namespace and sets it
/// up, as `brctl addif` and `ip link set up` would.
fn enslave_outside(host: &Rtnl, inner: &str, out: &str, bridge: &str) -> Result<(), LinkError> {
    let missing = |what: &str| {
        LinkError::Bad(format!(
            "veth {inner}: {what} is not in criu's network namespace"
        ))
    };
    let index = host.index_of(out)?.ok_or_else(|| missing(out))?;
    let master = host
        .index_of(bridge)?
        .ok_or_else(|| missing(&format!("bridge {bridge}")))?;
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    m.attributes.push(LinkAttribute::Controller(master));
    host.set(format!("cannot put {out} on bridge {bridge}"), m)
}

/// Removes the outside ends a failed restore made (one already gone is no error); says what
/// it could not remove.
pub fn remove_outside(host: &Rtnl, made: &[String]) {
    for out in made {
        if let Err(e) = host.delete(out) {
            tracing::error!("restore failed, and its veth end {out} stays: {e}");
        }
    }
}
