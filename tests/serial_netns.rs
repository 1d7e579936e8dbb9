//! What a tree's own network namespace holds besides `lo`: its sysctls, addresses, routes,
//! rules and firewall (iptables rules through iptables-nft, an nftables table) are set in the
//! namespace of a running workload, which is dumped and restored; the restored namespace must
//! show the same values and rules (`sysctl`, `iptables -S`, `nft -s list ruleset`, `ip
//! addr/route/rule`) and the workload must pass its own checks. Runs in the nextest `serial`
//! group.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::process::Command;

use harness::require_root;
use state_task::{Argv, StateTask};

/// Runs `script` with sh in the network namespace of `pid`; its output.
fn in_netns(pid: i32, script: &str) -> String {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "sh", "-c", script])
        .output()
        .expect("run nsenter");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writing all.forwarding sets all.accept_redirects to the opposite and default.forwarding
/// to the same: forwarding is turned from what a fresh namespace has (it copies the host's),
/// and the two values after it set as a restore that wrote forwarding last would lose them.
const SET: &str = "n=$((1 - $(sysctl -n net.ipv4.conf.all.forwarding))) && \
    sysctl -qw net.ipv4.ping_group_range='0 2147483647' \
    net.ipv4.conf.all.forwarding=$n net.ipv4.conf.all.accept_redirects=$n \
    net.ipv4.conf.default.forwarding=$((1 - n)) net.ipv4.conf.default.rp_filter=2 \
    net.ipv6.conf.default.hop_limit=33 net.unix.max_dgram_qlen=77 \
    net.core.somaxconn=1234 net.ipv4.ip_local_port_range='20000 30000' \
    net.ipv4.tcp_syncookies=0 net.ipv4.tcp_keepalive_time=77 && \
    iptables -A INPUT -p tcp --dport 4242 -j DROP && \
    nft add table inet t && \
    nft 'add chain inet t c { type filter hook input priority 0; }' && \
    nft add rule inet t c tcp dport 4343 drop && \
    ip addr add 127.0.0.5/8 dev lo && ip route add 10.9.0.0/16 dev lo && \
    ip rule add from 10.1.0.0/16 table 100";

/// Every net.* sysctl of the namespace, and what it holds.
const SHOW: &str = "sysctl -a 2>/dev/null | grep '^net\\.'; \
    iptables -S; nft -s list ruleset; ip addr show lo | grep inet; ip route show table all; ip rule";

#[test]
fn sysctls_addresses_routes_rules_and_firewall_of_the_trees_namespace_come_back() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = StateTask::workload("uk_state")
        .in_own_netns()
        .argv(Argv::ResultArgs)
        .args(&["/tmp", "pairs"])
        .start(dir.path());
    in_netns(task.pid, SET);
    let before = in_netns(task.pid, SHOW);
    assert!(before.contains("4242") && before.contains("4343") && before.contains("= 77"));
    assert!(before.contains("somaxconn = 1234") && before.contains("= 20000\t30000"));
    assert!(
        before.contains("127.0.0.5/8")
            && before.contains("10.9.0.0/16")
            && before.contains("lookup 100")
    );
    task.dump(&[]);
    task.restore_ok(&[]);
    let after = in_netns(task.pid, SHOW);
    assert_eq!(after, before, "{}", task.log("restore.log"));
    assert_eq!(task.verdict(), "PASS\n");
}

/// Whether a TCP connection from `from`'s network namespace reaches a listener on `addr` in
/// `to`'s.
fn tcp_crosses(from: i32, to: i32, addr: &str) -> bool {
    let listener = harness::on_thread_in_netns(to, || std::net::TcpListener::bind(addr).unwrap());
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let timeout = std::time::Duration::from_secs(5);
    harness::on_thread_in_netns(from, || {
        std::net::TcpStream::connect_timeout(&addr, timeout).is_ok()
    }) && listener.accept().is_ok()
}

/// A tree spanning two network namespaces: a child unshared one of its own (what it holds
/// is set there too, and a veth joins it to the root's), its child joined the root's again,
/// keeping a socket of the child's. Each comes back in its own namespace, with its sockets in
/// theirs (ns_nets checks from inside), the child's namespace holds what it held, and the
/// veth still carries packets across.
#[test]
fn a_tree_spanning_network_namespaces_comes_back_in_each() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = StateTask::workload("ns_nets")
        .in_own_netns()
        .argv(Argv::ResultArgs)
        .start(dir.path());
    let tree = harness::descendants(task.pid);
    assert_eq!(tree.len(), 3, "{tree:?}");
    let (child, grandchild) = (tree[1], tree[2]);
    let net = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_ne!(net(child), net(task.pid));
    assert_eq!(net(grandchild), net(task.pid));
    in_netns(
        child,
        "sysctl -qw net.ipv4.conf.all.forwarding=1 && ip addr add 127.0.0.9/8 dev lo && \
         ip route add 10.5.0.0/16 dev lo && nft add table inet sub_only",
    );
    // A veth joining the two namespaces, an address at each end (IPv6 off: no link-local
    // addresses appearing while the state is compared).
    let no_v6 = "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1";
    in_netns(task.pid, no_v6);
    in_netns(child, no_v6);
    // The root's namespace names the child's 7 (the kernel would pick 0): kept as dumped.
    let named = format!("crtsub{child}");
    let nsid = format!(
        "ip netns attach {named} {child} && ip netns set {named} 7; r=$?; ip netns del {named}; \
         exit $r"
    );
    in_netns(task.pid, &nsid);
    in_netns(
        task.pid,
        &format!(
            "ip link add vsub0 type veth peer name vsub1 netns {child} && \
             ip addr add 10.77.0.1/24 dev vsub0 && ip link set vsub0 up"
        ),
    );
    in_netns(
        child,
        "ip addr add 10.77.0.2/24 dev vsub1 && ip link set vsub1 up",
    );
    let carrier = || !in_netns(child, "ip -o link show vsub1").contains("NO-CARRIER");
    assert!(harness::wait_until(
        std::time::Duration::from_secs(5),
        carrier
    ));
    let show = "sysctl net.ipv4.conf.all.forwarding; ip addr show lo | grep inet; \
                ip -o link show type veth | sed 's/@.*: </: </'; ip -4 -o addr show type veth; \
                ip route show table all; nft -s list ruleset";
    let (root_before, child_before) = (in_netns(task.pid, show), in_netns(child, show));
    assert!(child_before.contains("127.0.0.9/8") && child_before.contains("sub_only"));
    assert!(!root_before.contains("sub_only"));
    task.dump(&[]);
    task.restore_ok(&[]);
    assert_ne!(net(child), net(task.pid), "{}", task.log("restore.log"));
    assert_eq!(net(grandchild), net(task.pid));
    // The carrier comes once both ends are set up.
    harness::wait_until(std::time::Duration::from_secs(5), carrier);
    assert_eq!(in_netns(task.pid, show), root_before);
    assert_eq!(in_netns(child, show), child_before);
    assert!(tcp_crosses(task.pid, child, "10.77.0.2:7777"));
    assert_eq!(task.verdict(), "PASS\n", "{}", task.log("restore.log"));
}
