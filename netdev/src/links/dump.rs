//! Dump half: every link of the calling thread's network namespace as CRIU's
//! `net_device_entry`, read over rtnetlink. Kinds kept: loopback, veth, bridge, macvlan and
//! tun/tap devices (their virtio header size and send buffer read through a file of the tree
//! attached to them, or by attaching to a persistent one); any other kind fails naming the
//! device and its kind.

use criu_proto::images::{MacvlanLinkEntry, NdType, NetDeviceEntry, NetnsId, TunLinkEntry};
use netlink_packet_core::Nla;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, InfoTun, LinkAttribute, LinkInfo, LinkLayerType, LinkMessage,
};

use super::rtnl::{name, Rtnl};
use super::LinkError;

/// The virtio header size and send buffer of tun devices that files of the tree hold, by
/// namespace id and device name, read through those files (a device held by a file cannot be
/// attached to again unless it is multi-queue).
pub type HeldTuns = std::collections::BTreeMap<(u32, String), (i32, i32)>;

/// The links of the calling thread's namespace, whose CRIU id is `ns_id`, each with its
/// per-device sysctls. `held`: what the tree's tun files read of their devices; `others`:
/// the tree's other network namespaces by id, where a veth's peer may be.
pub fn dump(
    ns_id: u32,
    held: &HeldTuns,
    others: &[(u32, std::os::fd::BorrowedFd<'_>)],
) -> Result<Dumped, LinkError> {
    let rtnl = Rtnl::new()?;
    let links = rtnl.links()?;
    // How this namespace names the others (a veth's peer namespace is given so).
    let mut nsids = std::collections::BTreeMap::new();
    for &(id, fd) in others {
        if let Some(nsid) = rtnl.nsid_of(fd)? {
            nsids.insert(nsid, id);
        }
    }
    let ids = nsids
        .iter()
        .map(|(&netnsid_value, &target_ns_id)| NetnsId {
            target_ns_id,
            netnsid_value,
        })
        .collect();
    let mut out = Vec::with_capacity(links.len());
    for msg in &links {
        let mut e = entry(msg, ns_id, &nsids)?;
        if let Some(tun) = &mut e.tun {
            // The flags stay the kernel's link attributes: TUNGETIFF's own show a file
            // without a filter as IFF_NOFILTER, the same bit as IFF_NO_PI.
            (tun.vnethdr, tun.sndbuf) = tun_queue_settings(ns_id, &e.name, tun.flags, held)?;
        }
        (e.conf4, e.conf6) = crate::netns::sysctl::dump_device(&e.name);
        out.push(e);
    }
    Ok(Dumped {
        devices: out,
        nsids: ids,
    })
}

/// A namespace's links, and the ids it gives the tree's other namespaces (`netns_entry`'s
/// `nsids`).
pub struct Dumped {
    pub devices: Vec<NetDeviceEntry>,
    pub nsids: Vec<NetnsId>,
}

/// The virtio header size and send buffer of tun device `name` with `flags` in namespace
/// `ns_id`: from a file of
/// the tree attached to it, else (a persistent device nothing holds) by attaching to it.
fn tun_queue_settings(
    ns_id: u32,
    name: &str,
    flags: u32,
    held: &HeldTuns,
) -> Result<(u32, u32), LinkError> {
    if let Some(&(vnethdr, sndbuf)) = held.get(&(ns_id, name.to_string())) {
        return Ok((vnethdr as u32, sndbuf as u32));
    }
    if flags & 0x0800 == 0 {
        // Not IFF_PERSIST.
        return Err(LinkError::Unsupported {
            name: name.to_string(),
            kind: "tun".into(),
            why: "it is not persistent and no file of the tree holds it (a process outside \
                  the tree does)"
                .into(),
        });
    }
    let s = criu_sys::tun::read(name, flags).map_err(|err| {
        LinkError::Bad(format!(
            "tun device {name}: cannot attach to read its settings: {err}"
        ))
    })?;
    Ok((s.vnethdr as u32, s.sndbuf as u32))
}

/// Fails naming the first link whose kind is not kept.
pub fn check() -> Result<(), LinkError> {
    for msg in Rtnl::new()?.links()? {
        entry(&msg, 0, &Default::default())?;
    }
    Ok(())
}

fn kind(msg: &LinkMessage) -> Option<&InfoKind> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k),
            _ => None,
        }),
        _ => None,
    })
}

/// A tun/tap device's flags (as TUNSETIFF takes them), owner and group from its link
/// message (IFLA_TUN_*); its virtio header size and send buffer are read by attaching.
fn tun(msg: &LinkMessage) -> Option<TunLinkEntry> {
    let data = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::Tun(d)) => Some(d),
            _ => None,
        }),
        _ => None,
    })?;
    let mut e = TunLinkEntry {
        owner: -1,
        group: -1,
        ..Default::default()
    };
    let (mut pi, mut ty) = (true, 0u32);
    for t in data {
        let InfoTun::Other(nla) = t else { continue };
        let mut v = vec![0u8; nla.value_len()];
        nla.emit_value(&mut v);
        let word = || {
            v.get(..4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        let on = v.first().is_some_and(|b| *b != 0);
        match nla.kind() {
            1 => e.owner = word()? as i32,
            2 => e.group = word()? as i32,
            3 => ty = u32::from(*v.first()?),
            4 => pi = on,
            5 if on => e.flags |= 0x4000, // IFF_VNET_HDR
            6 if on => e.flags |= 0x0800, // IFF_PERSIST
            7 if on => e.flags |= 0x0100, // IFF_MULTI_QUEUE
            _ => {}
        }
    }
    if !pi {
        e.flags |= 0x1000; // IFF_NO_PI
    }
    // IFF_TUN 1, IFF_TAP 2.
    (ty == 1 || ty == 2).then(|| {
        e.flags |= ty;
        e
    })
}

fn macvlan(msg: &LinkMessage) -> Option<MacvlanLinkEntry> {
    let data = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::MacVlan(d)) => Some(d),
            _ => None,
        }),
        _ => None,
    })?;
    let mode = data.iter().find_map(|d| match d {
        InfoMacVlan::Mode(m) => Some(u32::from(*m)),
        _ => None,
    })?;
    let flags = data.iter().find_map(|d| match d {
        InfoMacVlan::Flags(f) => Some(u32::from(f.bits())),
        _ => None,
    });
    Some(MacvlanLinkEntry { mode, flags })
}

/// One link as CRIU's entry (without its sysctls). `ns_id`: CRIU's id of this namespace, the
/// peer's namespace when the peer is in it; `nsids`: the ids of the tree's other namespaces
/// by the id this one gives them.
pub fn entry(
    msg: &LinkMessage,
    ns_id: u32,
    nsids: &std::collections::BTreeMap<i32, u32>,
) -> Result<NetDeviceEntry, LinkError> {
    let index = msg.header.index;
    let name = name(msg)
        .ok_or_else(|| LinkError::Bad(format!("link {index} has no name")))?
        .to_string();
    let unsupported = |kind: String, why: &str| LinkError::Unsupported {
        name: name.clone(),
        kind,
        why: why.to_string(),
    };
    let mut e = NetDeviceEntry {
        ifindex: index,
        flags: msg.header.flags.bits(),
        name: name.clone(),
        ..Default::default()
    };
    let loopback = msg.header.link_layer_type == LinkLayerType::Loopback;
    let ty = if loopback {
        NdType::Loopback
    } else {
        match kind(msg) {
            Some(InfoKind::Veth) => NdType::Veth,
            Some(InfoKind::Bridge) => NdType::Bridge,
            Some(InfoKind::MacVlan) => {
                e.macvlan = Some(macvlan(msg).ok_or_else(|| {
                    unsupported(
                        "macvlan".into(),
                        "its mode is missing from the kernel's answer",
                    )
                })?);
                NdType::Macvlan
            }
            Some(InfoKind::Tun) => {
                let t = tun(msg).ok_or_else(|| {
                    unsupported("tun".into(), "its type is missing from the kernel's answer")
                })?;
                e.tun = Some(t);
                NdType::Tun
            }
            Some(k) => return Err(unsupported(k.to_string(), "this kind is not dumped")),
            None => {
                return Err(unsupported(
                    "none".into(),
                    "the kernel names no kind for it",
                ))
            }
        }
    };
    e.r#type = ty as i32;
    let (mut peer, mut peer_ns) = (index, Some(ns_id));
    for a in &msg.attributes {
        match a {
            LinkAttribute::Mtu(m) => e.mtu = *m,
            LinkAttribute::Address(a) if !loopback => e.address = Some(a.clone()),
            LinkAttribute::Controller(m) => e.master = Some(*m),
            LinkAttribute::Link(l) => peer = *l,
            // The peer is in another namespace: another of the tree's, or one outside it,
            // which has no id here (CRIU: "in an external netns").
            LinkAttribute::LinkNetNsId(n) => peer_ns = nsids.get(n).copied(),
            _ => {}
        }
    }
    e.peer_ifindex = Some(peer);
    e.peer_nsid = peer_ns;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::{LinkFlags, MacVlanMode};

    fn link(
        index: u32,
        name: &str,
        kind: Option<InfoKind>,
        extra: Vec<LinkAttribute>,
    ) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.link_layer_type = LinkLayerType::Ether;
        m.header.flags = LinkFlags::Up | LinkFlags::Broadcast;
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m.attributes.push(LinkAttribute::Mtu(1400));
        m.attributes
            .push(LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]));
        if let Some(k) = kind {
            m.attributes
                .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(k)]));
        }
        m.attributes.extend(extra);
        m
    }

    #[test]
    fn veth_with_its_peer_outside() {
        let m = link(
            7,
            "eth0",
            Some(InfoKind::Veth),
            vec![
                LinkAttribute::Link(12),
                LinkAttribute::LinkNetNsId(0),
                LinkAttribute::Controller(3),
            ],
        );
        let e = entry(&m, 5, &Default::default()).unwrap();
        assert_eq!(e.r#type, NdType::Veth as i32);
        assert_eq!((e.ifindex, e.mtu, e.name.as_str()), (7, 1400, "eth0"));
        assert_eq!(e.address.as_deref(), Some(&[2, 0, 0, 0, 0, 1][..]));
        assert_eq!(e.flags & 1, 1);
        assert_eq!(
            (e.peer_ifindex, e.peer_nsid, e.master),
            (Some(12), None, Some(3))
        );
        // In another namespace of the tree (nsid 0 here): that one's id.
        let tree = std::collections::BTreeMap::from([(0, 9)]);
        assert_eq!(entry(&m, 5, &tree).unwrap().peer_nsid, Some(9));
        // Peer in the same namespace: its id.
        let m = link(8, "a", Some(InfoKind::Veth), vec![LinkAttribute::Link(9)]);
        assert_eq!(
            entry(&m, 5, &Default::default()).unwrap().peer_nsid,
            Some(5)
        );
    }

    #[test]
    fn loopback_has_no_address_and_macvlan_its_mode() {
        let mut m = link(1, "lo", None, vec![]);
        m.header.link_layer_type = LinkLayerType::Loopback;
        let e = entry(&m, 1, &Default::default()).unwrap();
        assert_eq!((e.r#type, e.address), (NdType::Loopback as i32, None));
        let mut m = link(4, "mv", Some(InfoKind::MacVlan), vec![]);
        if let Some(LinkAttribute::LinkInfo(i)) = m.attributes.last_mut() {
            i.push(LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Bridge,
            )])));
        }
        let e = entry(&m, 1, &Default::default()).unwrap();
        assert_eq!(e.macvlan.unwrap().mode, 4);
    }

    #[test]
    fn unknown_kinds_are_named() {
        let m = link(3, "wg0", Some(InfoKind::Wireguard), vec![]);
        let err = entry(&m, 1, &Default::default()).unwrap_err().to_string();
        assert!(err.contains("wg0") && err.contains("wireguard"), "{err}");
        let err = entry(&link(3, "x0", None, vec![]), 1, &Default::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("x0") && err.contains("kind"), "{err}");
        let err = entry(
            &link(3, "t0", Some(InfoKind::Tun), vec![]),
            1,
            &Default::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("t0") && err.contains("tun"), "{err}");
    }

    fn tap(persist: u8) -> LinkMessage {
        use netlink_packet_core::DefaultNla;
        let nla = |k, v: Vec<u8>| InfoTun::Other(DefaultNla::new(k, v));
        let data = vec![
            nla(1, 1000u32.to_ne_bytes().to_vec()),
            nla(3, vec![2]),
            nla(4, vec![0]),
            nla(6, vec![persist]),
        ];
        let mut m = link(5, "tap0", None, vec![]);
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Tun),
            LinkInfo::Data(InfoData::Tun(data)),
        ]));
        m
    }

    #[test]
    fn a_tap_held_by_a_file_of_the_tree_is_read_through_it_and_refused_otherwise() {
        let e = entry(&tap(1), 1, &Default::default()).unwrap();
        assert_eq!(e.r#type, NdType::Tun as i32);
        let t = e.tun.unwrap();
        // IFF_TAP | IFF_NO_PI | IFF_PERSIST.
        assert_eq!((t.flags, t.owner, t.group), (0x1802, 1000, -1));
        let t = entry(&tap(0), 1, &Default::default()).unwrap().tun.unwrap();
        assert_eq!(t.flags, 0x1002);
        let held = HeldTuns::from([((1, "tap0".to_string()), (12, 4096))]);
        assert_eq!(
            tun_queue_settings(1, "tap0", t.flags, &held).unwrap(),
            (12, 4096)
        );
        // Held in another namespace: not this one's.
        let err = tun_queue_settings(2, "tap0", t.flags, &held)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tap0") && err.contains("no file of the tree holds it"),
            "{err}"
        );
    }
}
