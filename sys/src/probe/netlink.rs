//! rtnetlink and nfnetlink probes: network namespace ids, IFLA_NEW_IFINDEX, nf_tables.

use super::namespaces::in_new_namespaces;
use super::nl::{self, Nl, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST};
use super::{missing, sys, ProbeResult};
use nix::errno::Errno;
use std::os::fd::AsRawFd;

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_GETNSID: u16 = 90;
const RTM_NEWNSID: u16 = 88;
const NETNSA_NSID: u16 = 1;
const NETNSA_PID: u16 = 2;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_NEW_IFINDEX: u16 = 49;
const IFINFOMSG_LEN: usize = 16;

/// RTM_GETNSID for our own pid answers with an NETNSA_NSID attribute.
pub fn nsid() -> ProbeResult {
    let mut nl = Nl::open(libc::NETLINK_ROUTE)?;
    let mut req = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
    nl::attr(
        &mut req,
        NETNSA_PID,
        &(std::process::id() as i32).to_ne_bytes(),
    );
    let (msgs, res) = nl.request(RTM_GETNSID, NLM_F_REQUEST | NLM_F_ACK, &req)?;
    res.map_err(sys("RTM_GETNSID"))?;
    let found = msgs
        .iter()
        .filter(|m| m.ty == RTM_NEWNSID && m.payload.len() >= 4)
        .any(|m| nl::attrs(&m.payload[4..]).any(|(t, _)| t == NETNSA_NSID));
    if found {
        Ok(())
    } else {
        Err(missing("NSID isn't supported"))
    }
}

fn ifinfomsg(index: i32) -> Vec<u8> {
    let mut m = vec![0u8; IFINFOMSG_LEN];
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m
}

/// In a fresh pair of network namespaces, makes a veth whose peer lives in the other one and
/// checks that RTM_GETLINK reports IFLA_LINK_NETNSID for it.
pub fn link_nsid() -> ProbeResult {
    in_new_namespaces(libc::CLONE_NEWNET, || {
        let peer_ns = std::fs::File::open("/proc/thread-self/ns/net").map_err(|e| {
            sys("open /proc/thread-self/ns/net")(Errno::from_raw(e.raw_os_error().unwrap_or(0)))
        })?;
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(sys("unshare(CLONE_NEWNET)"))?;
        let mut nl = Nl::open(libc::NETLINK_ROUTE)?;
        let mut req = ifinfomsg(0);
        nl::attr(&mut req, IFLA_IFNAME, b"criu-veth0\0");
        nl::nested(&mut req, IFLA_LINKINFO, |b| {
            nl::attr(b, IFLA_INFO_KIND, b"veth");
            nl::nested(b, IFLA_INFO_DATA, |b| {
                nl::nested(b, VETH_INFO_PEER, |b| {
                    b.extend_from_slice(&ifinfomsg(0));
                    nl::attr(b, IFLA_IFNAME, b"criu-veth1\0");
                    nl::attr(
                        b,
                        IFLA_NET_NS_FD,
                        &(peer_ns.as_raw_fd() as u32).to_ne_bytes(),
                    );
                });
            });
        });
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        let (_, res) = nl.request(RTM_NEWLINK, flags, &req)?;
        res.map_err(sys("Unable to create a veth pair"))?;
        let mut dump = vec![0u8; IFINFOMSG_LEN];
        dump[0] = libc::AF_PACKET as u8;
        let (links, res) = nl.request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, &dump)?;
        res.map_err(sys("RTM_GETLINK dump"))?;
        let has = links
            .iter()
            .filter(|m| m.ty == RTM_NEWLINK && m.payload.len() >= IFINFOMSG_LEN)
            .any(|m| nl::attrs(&m.payload[IFINFOMSG_LEN..]).any(|(t, _)| t == IFLA_LINK_NETNSID));
        if has {
            Ok(())
        } else {
            Err(missing("NSID isn't reported for network links"))
        }
    })
}

/// RTM_SETLINK with a negative IFLA_NEW_IFINDEX: a kernel that knows the attribute rejects it
/// with ERANGE, one that does not ignores it and fails on the unknown name with ENODEV.
pub fn newifindex() -> ProbeResult {
    let mut nl = Nl::open(libc::NETLINK_ROUTE)?;
    let mut req = ifinfomsg(0);
    nl::attr(&mut req, IFLA_NEW_IFINDEX, &(-1i32).to_ne_bytes());
    nl::attr(&mut req, IFLA_IFNAME, b"criu-kdat");
    let (_, res) = nl.request(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, &req)?;
    match res {
        Err(Errno::ERANGE) => Ok(()),
        Err(Errno::ENODEV) => Err(missing("IFLA_NEW_IFINDEX isn't supported")),
        Err(e) => Err(sys("RTM_SETLINK with IFLA_NEW_IFINDEX")(e)),
        Ok(()) => Err(missing(
            "RTM_SETLINK with a bad IFLA_NEW_IFINDEX unexpectedly succeeded",
        )),
    }
}

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_GETGEN: u16 = 16;
const NFT_MSG_NEWGEN: u16 = 15;
const NFPROTO_INET: u8 = 1;
const NFT_SET_CONCAT: u32 = 0x80;

fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

/// struct nfgenmsg: family, version, res_id (big endian).
fn nfgenmsg(family: u8, res_id: u16) -> Vec<u8> {
    let mut m = vec![family, 0];
    m.extend_from_slice(&res_id.to_be_bytes());
    m
}

/// nf_tables answers NFT_MSG_GETGEN (the kernel side of nftables is there).
pub fn nftables() -> ProbeResult {
    let mut nl = Nl::open(libc::NETLINK_NETFILTER)?;
    let (msgs, res) = nl.request(
        nft_type(NFT_MSG_GETGEN),
        NLM_F_REQUEST | NLM_F_ACK,
        &nfgenmsg(0, 0),
    )?;
    match res {
        Ok(()) if msgs.iter().any(|m| m.ty == nft_type(NFT_MSG_NEWGEN)) => Ok(()),
        Ok(()) => Err(missing("nf_tables did not report its generation")),
        Err(e) => Err(missing(format!("the kernel has no nf_tables: {e}"))),
    }
}

/// In a private network namespace, creates an inet table and a set keyed by
/// `ipv4_addr . inet_service` (a concatenation), which the nftables network lock needs.
pub fn nftables_concat_set() -> ProbeResult {
    in_new_namespaces(libc::CLONE_NEWNET, || {
        let mut nl = Nl::open(libc::NETLINK_NETFILTER)?;
        let mut buf = Vec::new();
        nl.push(
            &mut buf,
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            &nfgenmsg(0, NFNL_SUBSYS_NFTABLES),
        );
        let mut table = nfgenmsg(NFPROTO_INET, 0);
        nl::attr(&mut table, 1, b"CRIU\0"); // NFTA_TABLE_NAME
        let table_seq = nl.push(
            &mut buf,
            nft_type(NFT_MSG_NEWTABLE),
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
            &table,
        );
        let mut set = nfgenmsg(NFPROTO_INET, 0);
        nl::attr(&mut set, 1, b"CRIU\0"); // NFTA_SET_TABLE
        nl::attr(&mut set, 2, b"conn\0"); // NFTA_SET_NAME
        nl::attr(&mut set, 3, &NFT_SET_CONCAT.to_be_bytes()); // NFTA_SET_FLAGS
        nl::attr(&mut set, 4, &((7u32 << 6) | 13).to_be_bytes()); // NFTA_SET_KEY_TYPE ipv4_addr . inet_service
        nl::attr(&mut set, 5, &8u32.to_be_bytes()); // NFTA_SET_KEY_LEN
        nl::attr(&mut set, 10, &1u32.to_be_bytes()); // NFTA_SET_ID
        nl::nested(&mut set, 9, |b| {
            // NFTA_SET_DESC
            nl::nested(b, 2, |b| {
                // NFTA_SET_DESC_CONCAT: one NFTA_LIST_ELEM per field, NFTA_SET_FIELD_LEN inside
                for len in [4u32, 2] {
                    nl::nested(b, 1, |b| nl::attr(b, 1, &len.to_be_bytes()));
                }
            });
        });
        let set_seq = nl.push(
            &mut buf,
            nft_type(NFT_MSG_NEWSET),
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
            &set,
        );
        nl.push(
            &mut buf,
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            &nfgenmsg(0, NFNL_SUBSYS_NFTABLES),
        );
        nl.send(&buf)?;
        let (_, res) = nl.collect(table_seq)?;
        res.map_err(|e| missing(format!("Can't create nftables table: {e}")))?;
        let (_, res) = nl.collect(set_seq)?;
        res.map_err(|e| {
            missing(format!(
                "nftables set concatenations are not supported: {e}"
            ))
        })?;
        Ok(())
    })
}
