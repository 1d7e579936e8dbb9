//! Self-checking workload of a tree spanning network namespaces: `ns_nets RESULT_FILE`, run
//! in a network namespace of its own with `lo` up (namespace 0).
//!
//! The root binds the abstract datagram name "ns_nets-0". Its child A unshares a new network
//! namespace (1), sets `lo` up there, binds "ns_nets-1" and a UDP socket on 127.0.0.1:7001,
//! then forks B, which joins namespace 0 again and keeps A's socket "ns_nets-1" (A closes
//! its copy). Writes "READY" and waits for SIGUSR1, then every task checks, from where it
//! is: which names it can reach (a name lives in the namespace of its socket, not of its
//! holder), that A and B are in the namespaces they were, and that A's UDP socket still
//! gets datagrams sent to 127.0.0.1:7001 in namespace 1. The root writes "PASS" or
//! "FAIL: why" for all three.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;

use criu_test_workloads::verdict::{catch_usr1, ensure, ready_then_wait, Check};
use nix::sched::CloneFlags;

fn abstract_name(n: u32) -> std::os::unix::net::SocketAddr {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(format!("ns_nets-{n}")).unwrap()
}

fn bind(n: u32) -> UnixDatagram {
    UnixDatagram::bind_addr(&abstract_name(n)).expect("bind an abstract name")
}

/// Whether a datagram socket made here reaches name `n`.
fn reaches(n: u32) -> bool {
    let s = UnixDatagram::unbound().expect("socket");
    s.connect_addr(&abstract_name(n)).is_ok()
}

fn net_of(pid: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Names reachable from here, among 0 and 1, must be exactly `want`.
fn check_names(who: &str, want: &[u32]) -> Check {
    let got: Vec<u32> = [0, 1].into_iter().filter(|&n| reaches(n)).collect();
    ensure(got == want, || {
        format!("{who} reaches names {got:?}, expected {want:?}")
    })
}

fn lo_up() {
    let ok = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip link set lo up");
}

fn usr1() -> nix::sys::signal::SigSet {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGUSR1);
    set
}

/// SIGUSR1 (blocked since before the forks, so that none is lost).
fn wait_usr1() {
    usr1().wait().unwrap();
}

/// Tells the root this task is set up.
fn ready(fd: &OwnedFd) {
    nix::unistd::write(fd, b"r").unwrap();
}

/// Tells `child` to check itself and reads its verdict from `from`: an error unless it
/// passed.
fn verdict_of(child: nix::unistd::Pid, from: OwnedFd, who: &str) -> Check {
    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGUSR1);
    let mut said = String::new();
    std::fs::File::from(from).read_to_string(&mut said).unwrap();
    let _ = nix::sys::wait::waitpid(child, None);
    ensure(said == "PASS", || format!("{who}: {said}"))
}

/// Runs `check` once SIGUSR1 comes and writes its verdict into `out`.
fn child_verdict(out: OwnedFd, check: impl FnOnce() -> Check) -> ! {
    wait_usr1();
    let text = match check() {
        Ok(()) => "PASS".to_string(),
        Err(why) => why,
    };
    let mut f = std::fs::File::from(out);
    let _ = f.write_all(text.as_bytes());
    std::process::exit(0);
}

fn main() {
    // A dump root leads its session.
    let _ = nix::unistd::setsid();
    let result = std::env::args().nth(1).expect("usage: ns_nets RESULT_FILE");
    let root_pid = std::process::id().to_string();
    let _name0 = bind(0);
    let (a_read, a_write) = nix::unistd::pipe().unwrap();
    let (set_up, set_up_write) = nix::unistd::pipe().unwrap();
    usr1().thread_block().unwrap();
    // SAFETY: the child only makes syscalls and runs its own code before exiting.
    let a = match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Parent { child } => child,
        nix::unistd::ForkResult::Child => {
            drop((a_read, set_up));
            let ns0 = std::fs::File::open(format!("/proc/{root_pid}/ns/net")).unwrap();
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare");
            lo_up();
            let name1 = bind(1);
            let udp = std::net::UdpSocket::bind("127.0.0.1:7001").unwrap();
            let (b_read, b_write) = nix::unistd::pipe().unwrap();
            // SAFETY: as above.
            match unsafe { nix::unistd::fork() }.unwrap() {
                nix::unistd::ForkResult::Child => {
                    drop((udp, b_read));
                    nix::sched::setns(&ns0, CloneFlags::CLONE_NEWNET).expect("setns");
                    ready(&set_up_write);
                    drop(set_up_write);
                    child_verdict(b_write, move || {
                        let _keep = name1;
                        ensure(net_of("self") == net_of(&root_pid), || {
                            "B is not in the root's network namespace".into()
                        })?;
                        check_names("B", &[0])
                    });
                }
                nix::unistd::ForkResult::Parent { child } => {
                    drop((name1, b_write));
                    ready(&set_up_write);
                    drop(set_up_write);
                    let b_pid = child.as_raw();
                    child_verdict(a_write, move || {
                        // While B still holds "ns_nets-1".
                        ensure(net_of("self") != net_of(&root_pid), || {
                            "A is in the root's network namespace".into()
                        })?;
                        check_names("A", &[1])?;
                        verdict_of(child, b_read, &format!("B (pid {b_pid})"))?;
                        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                        sender
                            .send_to(b"ping", "127.0.0.1:7001")
                            .map_err(|e| e.to_string())?;
                        udp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                            .unwrap();
                        let mut buf = [0u8; 8];
                        let n = udp
                            .recv(&mut buf)
                            .map_err(|e| format!("A's UDP socket: {e}"))?;
                        ensure(&buf[..n] == b"ping", || "A's UDP socket got garbage".into())
                    });
                }
            }
        }
    };
    drop((a_write, set_up_write));
    let mut both = [0u8; 2];
    std::fs::File::from(set_up).read_exact(&mut both).unwrap();
    catch_usr1();
    usr1().thread_unblock().unwrap();
    ready_then_wait(&result);
    let verdict = (|| {
        verdict_of(a, a_read, "A")?;
        check_names("the root", &[0])
    })();
    let text = match verdict {
        Ok(()) => "PASS\n".to_string(),
        Err(why) => format!("FAIL: {why}\n"),
    };
    std::fs::write(&result, text).expect("write result");
}
