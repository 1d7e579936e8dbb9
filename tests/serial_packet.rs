//! Packet and netlink sockets through `criu dump` and `criu restore`: a self-checking workload
//! (tests/workloads/src/bin/pk_state.rs) holds packet sockets bound to `lo` with options,
//! memberships, a ring and a fanout group, and netlink sockets bound, joined to groups,
//! unbound and connected; after the restore it checks them all from inside and uses them.
//! Runs in the nextest `serial` group: the packet sockets make the host's `lo` promiscuous.

#[path = "workloads/src/checked.rs"]
mod checked;
#[path = "workloads/src/harness.rs"]
mod harness;

use std::ffi::OsString;

use checked::SelfChecking;
use harness::{bin, require_root};

/// Starts pk_state with `args`; `own_net`: in a network namespace of its own (with `lo` up),
/// entered by `unshare`, which then execs the workload in the same process.
fn start(own_net: bool, args: &[&str]) -> SelfChecking {
    let program = bin("pk_state").into();
    let argv: Vec<OsString> = if own_net {
        let launcher = [
            "unshare",
            "-n",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ];
        launcher
            .iter()
            .map(OsString::from)
            .chain([program])
            .collect()
    } else {
        vec![program]
    };
    SelfChecking::start(&argv, args)
}

#[test]
fn packet_and_netlink_sockets_come_back() {
    require_root();
    let mut task = start(false, &[]);
    task.dump_ok(&[]);
    task.restore_ok(&[]);
    assert_eq!(task.verdict(true), "PASS\n", "{}", task.log("restore.log"));
}

#[test]
fn packet_and_netlink_sockets_of_a_network_namespace_come_back() {
    require_root();
    let mut task = start(true, &[]);
    task.dump_ok(&[]);
    task.restore_ok(&[]);
    assert_eq!(task.verdict(true), "PASS\n", "{}", task.log("restore.log"));
}

#[test]
fn an_option_the_images_cannot_hold_fails_the_dump_and_the_tree_runs_on() {
    require_root();
    let mut task = start(false, &["bypass"]);
    let out = task.dump(&[]);
    assert_ne!(out.status.code(), Some(0));
    let log = task.log("dump.log");
    let want = format!("pid {}: fd ", task.pid);
    assert!(
        log.contains(&want) && log.contains("packet socket") && log.contains("PACKET_QDISC_BYPASS"),
        "{log}"
    );
    // Untouched: it still passes its own checks.
    assert_eq!(task.verdict(true), "PASS\n");
}
