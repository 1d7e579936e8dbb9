//! The network lock on real traffic (needs root, iptables and nft). Each test runs in a thread
//! that made a network namespace of its own, so no rule ever reaches the host's tables, and
//! everything it added goes with the namespace when the thread ends, failed or not.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use criu_netdev::lock::{
    lock_connections, lock_netns, unlock_connections, unlock_netns, Conn, LockError, Method,
    SOCCR_MARK,
};
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage};

const RUN_ID: &str = "test-1";
/// Long enough for a packet on lo to have arrived many times over.
const QUIET: Duration = Duration::from_millis(300);
/// Retransmission backs off (200 ms, then doubling): held data arrives within a few seconds.
const ARRIVAL: Duration = Duration::from_secs(10);

/// Every tool the tests run; a missing one fails the test rather than skips it (CI installs
/// iproute2, iptables and nftables).
const TOOLS: &[&str] = &[
    "ip",
    "iptables",
    "ip6tables",
    "iptables-restore",
    "ip6tables-restore",
    "nft",
];

fn need() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the network lock tests need root (they make network namespaces)"
    );
    for tool in TOOLS {
        if let Err(e) = Command::new(tool).arg("--version").output() {
            panic!("the network lock tests need {tool}, which cannot run here: {e}");
        }
    }
}

/// Runs `body` in a new thread with a network namespace of its own, `lo` up.
fn in_own_netns<T: Send>(body: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare(CLONE_NEWNET)");
            let host = std::fs::read_link("/proc/self/ns/net").unwrap();
            let ours = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
            assert_ne!(
                host, ours,
                "the test thread is still in the host's namespace"
            );
            // Children run in the namespace of the thread that spawns them.
            run("ip", &["link", "set", "lo", "up"]);
            body()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every line of the namespace's rules that belongs to a lock.
fn leftovers() -> Vec<String> {
    let mut all = run("iptables", &["-w", "-S"]);
    all += &run("ip6tables", &["-w", "-S"]);
    all += &run("nft", &["list", "ruleset"]);
    all.lines()
        .filter(|l| l.contains("CRIU") || l.to_lowercase().contains("c114"))
        .map(str::to_string)
        .collect()
}

/// Lines of `tool -S` with the mark: the per-connection rules.
fn marked_rules(tool: &str) -> usize {
    run(tool, &["-w", "-S"])
        .lines()
        .filter(|l| l.contains("! --mark 0xc114") && l.ends_with("-j DROP"))
        .count()
}

fn pair(listener: &TcpListener, target: SocketAddr) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect_timeout(&target, Duration::from_secs(2)).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (client, server)
}

fn conn(client: &TcpStream) -> Conn {
    Conn {
        local: client.local_addr().unwrap(),
        remote: client.peer_addr().unwrap(),
    }
}

fn expect(mut stream: &TcpStream, data: &[u8]) {
    stream.set_read_timeout(Some(ARRIVAL)).unwrap();
    let mut buf = vec![0; data.len()];
    stream
        .read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("{:?} never arrived: {e}", String::from_utf8_lossy(data)));
    assert_eq!(buf, data);
}

/// Nothing arrives for a while, and the connection is neither closed nor reset.
fn assert_quiet(mut stream: &TcpStream) {
    stream.set_read_timeout(Some(QUIET)).unwrap();
    let mut buf = [0; 64];
    match stream.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Ok(0) => panic!("the locked connection was closed"),
        Ok(n) => panic!(
            "{:?} got through the lock",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => panic!("the locked connection failed: {e}"),
    }
}

fn set_mark(stream: &TcpStream) {
    socket::setsockopt(stream, sockopt::Mark, &SOCCR_MARK).unwrap();
}

fn exchange(client: &TcpStream, server: &TcpStream, word: &str) {
    (&*client).write_all(word.as_bytes()).unwrap();
    expect(server, word.as_bytes());
    (&*server).write_all(word.as_bytes()).unwrap();
    expect(client, word.as_bytes());
}

/// One connection locked, its data held and delivered after the unlock; others go on.
fn connection_lock(method: Method, listen: &str, connect_to: &str) {
    need();
    in_own_netns(|| {
        let listener = TcpListener::bind(listen).unwrap();
        let target = SocketAddr::new(
            connect_to.parse().unwrap(),
            listener.local_addr().unwrap().port(),
        );
        let (c1, s1) = pair(&listener, target);
        exchange(&c1, &s1, "before");

        lock_connections(method, RUN_ID, &[conn(&c1)]).unwrap();
        if method == Method::Iptables {
            let tool = if conn(&c1).local.ip().to_canonical().is_ipv6() {
                "ip6tables"
            } else {
                "iptables"
            };
            assert_eq!(marked_rules(tool), 2, "one rule per direction");
        }
        (&c1).write_all(b"held out").unwrap();
        (&s1).write_all(b"held in").unwrap();
        assert_quiet(&s1);
        assert_quiet(&c1);

        // Another connection to the same listener is not held...
        let (c2, s2) = pair(&listener, target);
        exchange(&c2, &s2, "free");
        // ...until a later call locks it too.
        lock_connections(method, RUN_ID, &[conn(&c2)]).unwrap();
        (&c2).write_all(b"held 2").unwrap();
        assert_quiet(&s2);
        // Marked, as TCP repair's sockets are, it passes: the held data goes with the next
        // retransmission, which takes the socket's new mark.
        set_mark(&c2);
        set_mark(&s2);
        expect(&s2, b"held 2");
        exchange(&c2, &s2, "marked");

        let start = Instant::now();
        unlock_connections(method, RUN_ID, &[conn(&c1), conn(&c2)]).unwrap();
        expect(&s1, b"held out");
        expect(&c1, b"held in");
        eprintln!(
            "{method:?} {connect_to}: held data arrived {:?} after the unlock",
            start.elapsed()
        );
        exchange(&c1, &s1, "after");
        let left = leftovers();
        assert!(left.is_empty(), "left after the unlock: {left:#?}");
    });
}

#[test]
fn iptables_locks_an_ipv4_connection() {
    connection_lock(Method::Iptables, "127.0.0.1:0", "127.0.0.1");
}

#[test]
fn iptables_locks_an_ipv6_connection() {
    connection_lock(Method::Iptables, "[::1]:0", "::1");
}

#[test]
fn iptables_locks_a_mapped_ipv4_connection() {
    connection_lock(Method::Iptables, "[::]:0", "::ffff:127.0.0.1");
}

#[test]
fn nftables_locks_an_ipv4_connection() {
    connection_lock(Method::Nftables, "127.0.0.1:0", "127.0.0.1");
}

#[test]
fn nftables_locks_an_ipv6_connection() {
    connection_lock(Method::Nftables, "[::1]:0", "::1");
}

#[test]
fn nftables_locks_a_mapped_ipv4_connection() {
    connection_lock(Method::Nftables, "[::]:0", "::ffff:127.0.0.1");
}

#[test]
fn nftables_unlock_without_lock_names_the_table() {
    need();
    in_own_netns(|| {
        let err = unlock_connections(Method::Nftables, RUN_ID, &[]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("network lock: nft delete table inet CRIU-test-1: exited with 1: ")
                && text.contains("No such file or directory"),
            "{text}"
        );
    });
}

/// A socket of TCP repair's mark, bound or connected to `addr`.
fn marked(addr: SocketAddr, listen: bool) -> OwnedFd {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    socket::setsockopt(&fd, sockopt::Mark, &SOCCR_MARK).unwrap();
    let sa = SockaddrStorage::from(addr);
    if listen {
        socket::bind(fd.as_raw_fd(), &sa).unwrap();
        socket::listen(&fd, socket::Backlog::new(8).unwrap()).unwrap();
    } else {
        // connect(2) gives up after SO_SNDTIMEO.
        let tmo = nix::sys::time::TimeVal::new(2, 0);
        socket::setsockopt(&fd, sockopt::SendTimeout, &tmo).unwrap();
        socket::connect(fd.as_raw_fd(), &sa).expect("marked connect under the lock");
    }
    fd
}

fn assert_connect_times_out(target: SocketAddr) {
    match TcpStream::connect_timeout(&target, Duration::from_millis(500)) {
        Err(e) if e.kind() == ErrorKind::TimedOut => {}
        Err(e) => panic!("connect to {target} under the lock: {e}, not a timeout"),
        Ok(_) => panic!("connect to {target} went through the lock"),
    }
}

fn netns_lock(method: Method) {
    need();
    in_own_netns(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        // Nothing listens there: refused, but not under the lock.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (c, s) = pair(&listener, target);
        exchange(&c, &s, "before");
        let marked_listener = TcpListener::from(marked("127.0.0.1:0".parse().unwrap(), true));
        let marked_target = marked_listener.local_addr().unwrap();

        lock_netns(method, RUN_ID).unwrap();
        // Locking again (a restore into a namespace locked at dump) adds nothing.
        match (method, lock_netns(method, RUN_ID)) {
            (Method::Nftables, Err(LockError::Locked(table))) => {
                assert_eq!(table, "inet CRIU-test-1")
            }
            (Method::Iptables, Ok(())) => {
                let listing = run("iptables", &["-w", "-S"]);
                let jumps: Vec<_> = listing.lines().filter(|l| l.ends_with("-j CRIU")).collect();
                assert_eq!(jumps, ["-A INPUT -j CRIU", "-A OUTPUT -j CRIU"]);
            }
            (_, other) => panic!("second lock: {other:?}"),
        }

        assert_connect_times_out(target);
        assert_connect_times_out(closed);
        (&c).write_all(b"held").unwrap();
        assert_quiet(&s);

        // TCP repair's sockets talk on: both ends marked, as a listener's mark goes to the
        // connections it accepts (tcp_fwmark_accept is off).
        let mc = TcpStream::from(marked(marked_target, false));
        let (ms, _) = marked_listener.accept().unwrap();
        exchange(&mc, &ms, "marked");

        let start = Instant::now();
        unlock_netns(method, RUN_ID).unwrap();
        expect(&s, b"held");
        eprintln!(
            "{method:?} namespace: held data arrived {:?} after the unlock",
            start.elapsed()
        );
        let (c2, s2) = pair(&listener, target);
        exchange(&c2, &s2, "after");
        match TcpStream::connect_timeout(&closed, Duration::from_secs(2)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
            other => panic!("connect to a closed port after the unlock: {other:?}"),
        }
        let left = leftovers();
        assert!(left.is_empty(), "left after the unlock: {left:#?}");
        // Unlocking an unlocked namespace (one joined at restore that the dump may have left
        // locked) does nothing and is no error.
        unlock_netns(method, RUN_ID).unwrap();
        assert!(leftovers().is_empty());
    });
}

#[test]
fn iptables_locks_the_namespace() {
    netns_lock(Method::Iptables);
}

#[test]
fn nftables_locks_the_namespace() {
    netns_lock(Method::Nftables);
}

/// An IPv6 OUTPUT chain iptables cannot add to (a priority it does not make), made with nft:
/// the ip6tables steps fail after the IPv4 ones, and INPUT's before OUTPUT's, succeeded.
fn break_ip6_output() {
    run("nft", &["add", "table", "ip6", "filter"]);
    run(
        "nft",
        &["add chain ip6 filter OUTPUT { type filter hook output priority 10; }"],
    );
}

#[test]
fn iptables_failed_connection_lock_takes_its_rules_back() {
    need();
    in_own_netns(|| {
        break_ip6_output();
        let conns = [
            Conn {
                local: "10.0.0.1:80".parse().unwrap(),
                remote: "10.0.0.2:4000".parse().unwrap(),
            },
            Conn {
                local: "[2001:db8::1]:80".parse().unwrap(),
                remote: "[2001:db8::2]:4000".parse().unwrap(),
            },
        ];
        let err = lock_connections(Method::Iptables, RUN_ID, &conns).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, LockError::Failed { .. })
                && text.starts_with(
                    "network lock: ip6tables-restore -w --noflush (input: *filter; -I INPUT \
                     --protocol tcp -m mark ! --mark 0xC114 --source 2001:db8::2 --sport 4000 \
                     --destination 2001:db8::1 --dport 80 -j DROP; -I OUTPUT"
                ),
            "{text}"
        );
        let ruleset = run("nft", &["list", "ruleset"]);
        assert!(!ruleset.contains("c114"), "rules left behind:\n{ruleset}");
    });
}

#[test]
fn iptables_failed_namespace_lock_takes_its_rules_back() {
    need();
    in_own_netns(|| {
        break_ip6_output();
        let err = lock_netns(Method::Iptables, RUN_ID).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("network lock: ip6tables-restore -w --noflush (input: *filter; "),
            "{text}"
        );
        assert!(text.contains("exited with"), "{text}");
        let ruleset = run("nft", &["list", "ruleset"]);
        assert!(
            !ruleset.contains("c114") && !ruleset.contains("CRIU"),
            "rules left behind:\n{ruleset}"
        );
    });
}

#[test]
fn iptables_unlock_takes_out_every_jump() {
    need();
    in_own_netns(|| {
        // What criu leaves where the dump and then the restore locked the same namespace:
        // the chain once, the jumps twice.
        let criu_s = "*filter\n:CRIU - [0:0]\n-I INPUT -j CRIU\n-I OUTPUT -j CRIU\n\
                      -A CRIU -m mark --mark 0xC114 -j ACCEPT\n-A CRIU -j DROP\nCOMMIT\n";
        for _ in 0..2 {
            for tool in ["iptables-restore", "ip6tables-restore"] {
                let mut child = Command::new(tool)
                    .args(["-w", "--noflush"])
                    .stdin(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(criu_s.as_bytes())
                    .unwrap();
                assert!(child.wait().unwrap().success(), "{tool}");
            }
        }
        let jumps = run("ip6tables", &["-w", "-S"]).matches("-j CRIU").count();
        assert_eq!(jumps, 4);
        unlock_netns(Method::Iptables, RUN_ID).unwrap();
        let left = leftovers();
        assert!(left.is_empty(), "left after the unlock: {left:#?}");
    });
}
