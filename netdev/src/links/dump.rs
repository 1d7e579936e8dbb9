//! Dump half: every link of the calling thread's network namespace as CRIU's
//! `net_device_entry`, read over rtnetlink. Kinds kept: loopback, veth, bridge, macvlan;
//! any other kind fails naming the device and its kind.

use criu_proto::images::{MacvlanLinkEntry, NdType, NetDeviceEntry};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkInfo, LinkLayerType, LinkMessage,
};

use super::rtnl::{name, Rtnl};
use super::LinkError;

/// The links of the calling thread's namespace, whose CRIU id is `ns_id`, each with its
/// per-device sysctls.
pub fn dump(ns_id: u32) -> Result<Vec<NetDeviceEntry>, LinkError> {
    let links = Rtnl::new()?.links()?;
    let mut out = Vec::with_capacity(links.len());
    for msg in &links {
        let mut e = entry(msg, ns_id)?;
        (e.conf4, e.conf6) = crate::netns::sysctl::dump_device(&e.name);
        out.push(e);
    }
    Ok(out)
}

/// Fails naming the first link whose kind is not kept.
pub fn check() -> Result<(), LinkError> {
    for msg in Rtnl::new()?.links()? {
        entry(&msg, 0)?;
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
/// peer's namespace when the peer is in it.
pub fn entry(msg: &LinkMessage, ns_id: u32) -> Result<NetDeviceEntry, LinkError> {
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
                return Err(unsupported(
                    "tun".into(),
                    "tun/tap devices are not dumped yet",
                ))
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
    let (mut peer, mut peer_ns_here) = (index, true);
    for a in &msg.attributes {
        match a {
            LinkAttribute::Mtu(m) => e.mtu = *m,
            LinkAttribute::Address(a) if !loopback => e.address = Some(a.clone()),
            LinkAttribute::Controller(m) => e.master = Some(*m),
            LinkAttribute::Link(l) => peer = *l,
            // The peer is in another namespace: one the tree does not own (only its own one
            // is dumped), so it has no id here (CRIU: "in an external netns").
            LinkAttribute::LinkNetNsId(_) => peer_ns_here = false,
            _ => {}
        }
    }
    e.peer_ifindex = Some(peer);
    e.peer_nsid = peer_ns_here.then_some(ns_id);
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
        let e = entry(&m, 5).unwrap();
        assert_eq!(e.r#type, NdType::Veth as i32);
        assert_eq!((e.ifindex, e.mtu, e.name.as_str()), (7, 1400, "eth0"));
        assert_eq!(e.address.as_deref(), Some(&[2, 0, 0, 0, 0, 1][..]));
        assert_eq!(e.flags & 1, 1);
        assert_eq!(
            (e.peer_ifindex, e.peer_nsid, e.master),
            (Some(12), None, Some(3))
        );
        // Peer in the same namespace: its id.
        let m = link(8, "a", Some(InfoKind::Veth), vec![LinkAttribute::Link(9)]);
        assert_eq!(entry(&m, 5).unwrap().peer_nsid, Some(5));
    }

    #[test]
    fn loopback_has_no_address_and_macvlan_its_mode() {
        let mut m = link(1, "lo", None, vec![]);
        m.header.link_layer_type = LinkLayerType::Loopback;
        let e = entry(&m, 1).unwrap();
        assert_eq!((e.r#type, e.address), (NdType::Loopback as i32, None));
        let mut m = link(4, "mv", Some(InfoKind::MacVlan), vec![]);
        if let Some(LinkAttribute::LinkInfo(i)) = m.attributes.last_mut() {
            i.push(LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Bridge,
            )])));
        }
        let e = entry(&m, 1).unwrap();
        assert_eq!(e.macvlan.unwrap().mode, 4);
    }

    #[test]
    fn unknown_kinds_are_named() {
        let m = link(3, "wg0", Some(InfoKind::Wireguard), vec![]);
        let err = entry(&m, 1).unwrap_err().to_string();
        assert!(err.contains("wg0") && err.contains("wireguard"), "{err}");
        let err = entry(&link(3, "x0", None, vec![]), 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("x0") && err.contains("kind"), "{err}");
        let err = entry(&link(3, "t0", Some(InfoKind::Tun), vec![]), 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("t0") && err.contains("tun"), "{err}");
    }
}
