//! Network devices of a tree's own network namespace: a workload's namespace gets a veth pair
//! to the host (its outside end on a host bridge), a second veth pair whose both ends are
//! inside, one of them on a bridge inside, addresses and routes; it is dumped and restored
//! with `--veth-pair IN=OUT@BRIDGE`. Inside, `ip -o link` (index, name, MTU, MAC, flags,
//! master), `ip -4 addr` and `ip -4 route` must read the same, and TCP must cross the veth
//! both ways. A persistent tap device comes back with its index, MTU, MAC and tun settings
//! (`ip -d link`); tun files (attached to nothing, to a tun device, to both queues of a
//! multi-queue tap, one detached) come back attached, and a packet still comes out of them
//! (tests/workloads/src/bin/tn_tun.rs checks from inside). Also: a device of a kind not kept
//! fails the dump naming it, and a restore that fails after it made an outside end removes
//! it. A connection from the namespace to a host service across the veth survives
//! `--tcp-established`. Every test removes the host devices it made. Runs in the nextest
//! `serial` group.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use harness::{require_root, wait_until};
use state_task::{Argv, StateTask};

/// What `show` reads once it reads `want` (links settle a moment after a restore), or after
/// 5 s.
fn settled(want: &str, show: impl Fn() -> String) -> String {
    let mut now = String::new();
    wait_until(Duration::from_secs(5), || {
        now = show();
        now == want
    });
    now
}

/// Runs `script` with sh in the network namespace of `pid` (the host's if None); its output.
fn sh(pid: Option<i32>, script: &str) -> String {
    let mut cmd = Command::new("nsenter");
    if let Some(pid) = pid {
        cmd.args(["-t", &pid.to_string(), "-n"]);
    }
    let out = cmd
        .args(["sh", "-c", script])
        .output()
        .expect("run nsenter");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether the host has a link called `name`.
fn host_has(name: &str) -> bool {
    std::path::Path::new(&format!("/sys/class/net/{name}")).exists()
}

/// Host devices a test made, removed when it ends (pass or fail).
struct HostLinks(Vec<String>);

impl Drop for HostLinks {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("ip").args(["link", "del", name]).status();
        }
    }
}

/// The workload in a network namespace of its own, `lo` up, IPv6 off (no address
/// autoconfiguration races in the comparisons).
fn start(dir: &std::path::Path) -> StateTask {
    let task = StateTask::workload("uk_state")
        .in_own_netns()
        .argv(Argv::ResultArgs)
        .args(&["/tmp", "pairs"])
        .start(dir);
    sh(
        Some(task.pid),
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
    );
    task
}

/// What must come back, the peer's index in the host (`@ifN`, a new device) left out.
fn show(pid: i32) -> String {
    let text = sh(
        Some(pid),
        "ip -o link; ip -o -4 addr; ip -4 route show table all",
    );
    let mut out = String::new();
    for word in text.split(' ') {
        let word = match word.find("@if") {
            Some(at) => &word[..at],
            None => word,
        };
        out.push_str(word);
        out.push(' ');
    }
    out
}

/// One byte each way over a TCP connection from `from` to `to` (None: the host's namespace).
fn tcp_works(listen_ns: Option<i32>, addr: &str, connect_ns: Option<i32>) -> bool {
    let listener = match listen_ns {
        Some(pid) => harness::on_thread_in_netns(pid, || TcpListener::bind(addr)),
        None => TcpListener::bind(addr),
    }
    .unwrap();
    let port = listener.local_addr().unwrap();
    let connect = move || -> std::io::Result<u8> {
        let mut s = TcpStream::connect_timeout(&port, Duration::from_secs(5))?;
        s.write_all(b"x")?;
        let mut b = [0u8];
        s.read_exact(&mut b)?;
        Ok(b[0])
    };
    std::thread::scope(|s| {
        let client = s.spawn(|| match connect_ns {
            Some(pid) => harness::on_thread_in_netns(pid, connect),
            None => connect(),
        });
        let (mut c, _) = listener.accept().unwrap();
        let mut b = [0u8];
        c.read_exact(&mut b).unwrap();
        c.write_all(b"y").unwrap();
        client.join().unwrap().ok() == Some(b'y')
    })
}

#[test]
fn veths_bridges_addresses_and_routes_come_back_and_carry_tcp() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let n = std::process::id() % 10000;
    let (host_end, host_br) = (format!("cvh{n}"), format!("cvb{n}"));
    let _cleanup = HostLinks(vec![host_end.clone(), host_br.clone()]);
    let mut task = start(dir.path());
    let pid = task.pid;
    let net = format!("10.{}.{}", 100 + n % 100, n / 100);
    sh(
        None,
        &format!(
            "ip link add {host_br} type bridge && ip addr add {net}.1/24 dev {host_br} && \
             ip link set {host_br} up && \
             ip link add {host_end} type veth peer name eth0 netns {pid} && \
             ip link set {host_end} master {host_br} up"
        ),
    );
    sh(
        Some(pid),
        &format!(
            "ip link set eth0 address 02:00:00:00:{:02x}:01 mtu 1400 up && \
             ip addr add {net}.2/24 dev eth0 && ip route add 10.99.0.0/16 via {net}.1 && \
             ip link add in0 type veth peer name in1 && ip link add br0 type bridge && \
             ip link set in1 master br0 && ip link set in0 mtu 1300 && \
             ip link set in0 up && ip link set in1 up && ip link set br0 up && \
             ip addr add 192.168.77.1/24 dev br0 && ip addr add 192.168.78.1/24 dev in0",
            n % 256
        ),
    );
    assert!(tcp_works(Some(pid), &format!("{net}.2:0"), None));
    let before = show(pid);
    assert!(
        before.contains("eth0") && before.contains("mtu 1400") && before.contains("master br0"),
        "{before}"
    );
    task.dump(&[]);
    // The pair's inside end went with the namespace, and its outside end with it.
    assert!(wait_until(Duration::from_secs(10), || !host_has(&host_end)));
    task.restore_ok(&["--veth-pair", &format!("eth0={host_end}@{host_br}")]);
    assert!(host_has(&host_end));
    // Carrier and bridge ports settle a moment after the links are up.
    assert_eq!(
        settled(&before, || show(pid)),
        before,
        "{}",
        task.log("restore.log")
    );
    assert!(tcp_works(Some(pid), &format!("{net}.2:0"), None));
    assert!(tcp_works(None, &format!("{net}.1:0"), Some(pid)));
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn a_device_of_a_kind_not_kept_fails_the_dump_naming_it() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let task = start(dir.path());
    sh(
        Some(task.pid),
        "ip link add vxlan7 type vxlan id 7 dstport 4789",
    );
    let out = task.try_dump(&[]);
    assert_ne!(out.status.code(), Some(0));
    let said = task.said(&out, "dump.log");
    assert!(
        said.contains("vxlan7") && said.contains("kind vxlan"),
        "{said}"
    );
    // The tree runs on.
    assert!(task.alive());
}

#[test]
fn a_failed_restore_leaves_no_outside_end_behind() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let n = std::process::id() % 10000;
    let host_end = format!("cvf{n}");
    let _cleanup = HostLinks(vec![host_end.clone()]);
    let mut task = start(dir.path());
    sh(
        None,
        &format!(
            "ip link add {host_end} type veth peer name eth0 netns {}",
            task.pid
        ),
    );
    task.dump(&[]);
    assert!(wait_until(Duration::from_secs(10), || !host_has(&host_end)));
    // No outside end named: refused, naming the device and the option.
    let out = task.restore(&[]);
    assert_ne!(out.status.code(), Some(0));
    let said = task.said(&out, "restore.log");
    assert!(
        said.contains("eth0") && said.contains("--veth-pair"),
        "{said}"
    );
    // The outside end is made, then the bridge it should go on is missing.
    let out = task.restore(&["--veth-pair", &format!("eth0={host_end}@nosuchbr{n}")]);
    assert_ne!(out.status.code(), Some(0));
    let said = task.said(&out, "restore.log");
    assert!(said.contains(&format!("nosuchbr{n}")), "{said}");
    assert!(!host_has(&host_end), "{said}");
    // The devices are all made, then a later step fails (an action script after the
    // namespaces are filled): the outside end goes too.
    let script = dir.path().join("fail-after-ns.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$CRTOOLS_SCRIPT_ACTION\" = post-setup-namespaces ] && exit 1\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = task.restore(&[
        "--veth-pair",
        &format!("eth0={host_end}"),
        "--action-script",
        script.to_str().unwrap(),
    ]);
    assert_ne!(out.status.code(), Some(0));
    let said = task.said(&out, "restore.log");
    assert!(said.contains("post-setup-namespaces"), "{said}");
    assert!(!host_has(&host_end), "{said}");
}

#[test]
fn a_persistent_tap_comes_back_with_its_settings() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = start(dir.path());
    let pid = task.pid;
    sh(
        Some(pid),
        "ip link add vxpad type veth peer name vxpad1 && ip link del vxpad && \
         ip tuntap add dev tap7 mode tap user 1000 group 100 vnet_hdr multi_queue && \
         ip link set tap7 mtu 1280 address 02:00:00:00:07:07 up && \
         ip addr add 192.168.97.1/24 dev tap7",
    );
    let tun = |pid| {
        let d = sh(Some(pid), "ip -d link show tap7");
        d[d.find("tun type").expect("ip -d shows tun settings")..]
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let (before, tun_before) = (show(pid), tun(pid));
    assert!(
        tun_before.contains("tap") && tun_before.contains("persist on"),
        "{tun_before}"
    );
    task.dump(&[]);
    task.restore_ok(&[]);
    // The carrier goes off when criu lets go of the new device; the link state follows a
    // moment later.
    assert_eq!(
        settled(&before, || show(pid)),
        before,
        "{}",
        task.log("restore.log")
    );
    assert_eq!(tun(pid), tun_before);
    assert_eq!(task.verdict(), "PASS\n");
}

#[test]
fn tun_files_come_back_attached_to_their_devices() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = StateTask::workload("tn_tun")
        .in_own_netns()
        .argv(Argv::ResultArgs)
        .start(dir.path());
    let pid = task.pid;
    sh(
        Some(pid),
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 && \
         ip addr add 10.9.9.1/24 dev tunq0 && ip link set tunq0 up && ip link set tapq1 up",
    );
    let details = |pid| {
        let d = sh(
            Some(pid),
            "ip -d -o link show tunq0; ip -d -o link show tapq1",
        );
        d.lines()
            .map(|l| l[l.find("tun type").expect("ip -d shows tun settings")..].to_string())
            .collect::<Vec<_>>()
    };
    // A new tun device's operational state is UNKNOWN until its carrier first goes off, as it
    // does when the restore lets go of the device it made and the task's file attaches:
    // UP then. Both mean the same to the device's users; CRIU's restore does the same.
    let show = |pid| show(pid).replace(" state UNKNOWN ", " state UP ");
    let (before, tun_before) = (show(pid), details(pid));
    assert!(
        tun_before[0].contains("persist off") && tun_before[1].contains("multi_queue"),
        "{tun_before:?}"
    );
    task.dump(&[]);
    task.restore_ok(&[]);
    assert_eq!(
        settled(&before, || show(pid)),
        before,
        "{}",
        task.log("restore.log")
    );
    assert_eq!(details(pid), tun_before);
    assert_eq!(task.verdict(), "PASS\n", "{}", task.log("restore.log"));
}

/// A named network namespace (`ip netns add`), removed when dropped.
struct NamedNetns(&'static str);

impl Drop for NamedNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", self.0]).status();
    }
}

/// A container's connection to a service of the host, across its veth to a host bridge:
/// kept through `--tcp-established`, the peer on the host never notices, and its bytes sent
/// while the tree was gone arrive after the restore.
#[test]
fn a_connection_across_the_veth_to_the_host_survives() {
    require_root();
    let _links = HostLinks(vec!["crtbr0".into(), "crto0".into()]);
    let _ = Command::new("ip")
        .args(["netns", "del", "crt_tcp"])
        .status();
    let _ns = NamedNetns("crt_tcp");
    sh(
        None,
        "ip netns add crt_tcp && ip link add crtbr0 type bridge && \
         ip addr add 10.88.0.1/24 dev crtbr0 && ip link set crtbr0 up && \
         ip link add crto0 type veth peer name crti0 netns crt_tcp && \
         ip link set crto0 master crtbr0 up && \
         ip -n crt_tcp link set lo up && ip -n crt_tcp addr add 10.88.0.2/24 dev crti0 && \
         ip -n crt_tcp link set crti0 up",
    );
    let listener = std::net::TcpListener::bind("10.88.0.1:0").unwrap();
    let peer_addr = listener.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut task = StateTask::workload("in_state")
        .launcher(&["nsenter", "--net=/run/netns/crt_tcp"])
        .argv(Argv::ResultArgs)
        .args(&["outside", &peer_addr])
        .start(dir.path());
    let (mut peer, _) = listener.accept().unwrap();
    let mut hello = [0u8; 7];
    peer.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"to-peer");
    task.dump(&["--tcp-established"]);
    // The namespace goes with its last holder, and the host end of its veth with it.
    let _ = Command::new("ip")
        .args(["netns", "del", "crt_tcp"])
        .status();
    assert!(wait_until(Duration::from_secs(10), || !host_has("crto0")));
    peer.write_all(b"from-peer").unwrap();
    task.restore_ok(&["--tcp-established", "--veth-pair", "crti0=crto0@crtbr0"]);
    assert_eq!(task.verdict(), "PASS\n", "{}", task.log("restore.log"));
    peer.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = [0u8; 6];
    peer.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"answer");
}
