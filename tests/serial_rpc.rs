//! CRIU's RPC through our own client (prost): `criu swrk FD` started the way runc and pycriu
//! start it (one end of a SOCK_SEQPACKET pair inherited as FD), and `criu service` on a unix
//! socket. A real tree (tests/workloads/src/bin/uk_state.rs) is dumped and restored through
//! requests, with the action scripts coming back as NOTIFY messages in CRIU's order. Runs in
//! the nextest `serial` group.

#[path = "workloads/src/harness.rs"]
mod harness;
#[path = "workloads/src/state_task.rs"]
mod state_task;

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use criu_proto::rpc::{CriuOpts, CriuReq, CriuReqType, CriuResp};
use harness::{require_root, wait_until};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use prost::Message;
use state_task::{Argv, StateTask};

/// One client connection and, for swrk, the criu serving it.
struct Client {
    sock: OwnedFd,
    criu: Option<Child>,
    /// NOTIFY scripts seen, in order.
    notified: Vec<String>,
    /// fds that came with answers (SCM_RIGHTS), in order.
    received: std::cell::RefCell<Vec<OwnedFd>>,
}

impl Client {
    /// Starts `criu swrk N` with its end of a socket pair as fd N, as runc does.
    fn swrk() -> Client {
        let (ours, theirs) = socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        // The child inherits its end: close-on-exec comes off that one only.
        let flags = nix::fcntl::FdFlag::empty();
        nix::fcntl::fcntl(&theirs, nix::fcntl::FcntlArg::F_SETFD(flags)).unwrap();
        let criu = Command::new(env!("CARGO_BIN_EXE_criu"))
            .args(["swrk", &theirs.as_raw_fd().to_string()])
            .stdin(Stdio::null())
            .spawn()
            .expect("start criu swrk");
        drop(theirs);
        Client {
            sock: ours,
            criu: Some(criu),
            notified: Vec::new(),
            received: Default::default(),
        }
    }

    fn send_raw(&self, bytes: &[u8]) {
        socket::send(self.sock.as_raw_fd(), bytes, MsgFlags::empty()).unwrap();
    }

    fn recv(&self) -> CriuResp {
        let mut buf = vec![0u8; 1 << 20];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let msg = socket::recvmsg::<()>(
            self.sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .unwrap();
        let n = msg.bytes;
        for c in msg.cmsgs().unwrap() {
            if let socket::ControlMessageOwned::ScmRights(fds) = c {
                let owned = fds
                    .into_iter()
                    .map(|fd| criu_sys::fd::own_inherited(fd).unwrap());
                self.received.borrow_mut().extend(owned);
            }
        }
        CriuResp::decode(&buf[..n]).expect("a criu_resp")
    }

    /// Sends `req` and returns the final answer, answering every NOTIFY with success.
    fn ask(&mut self, req: CriuReq) -> CriuResp {
        self.send_raw(&req.encode_to_vec());
        loop {
            let resp = self.recv();
            if resp.r#type != CriuReqType::Notify as i32 {
                return resp;
            }
            let notify = resp.notify.unwrap_or_default();
            self.notified.push(notify.script.unwrap_or_default());
            let ok = CriuReq {
                r#type: CriuReqType::Notify as i32,
                notify_success: Some(true),
                ..Default::default()
            };
            self.send_raw(&ok.encode_to_vec());
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(mut c) = self.criu.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The workload every dump here checkpoints: unix socket pairs that check their queues.
fn uk_state(dir: &std::path::Path) -> StateTask {
    StateTask::workload("uk_state")
        .argv(Argv::ResultArgs)
        .args(&["/tmp", "pairs"])
        .start(dir)
}

fn req(kind: CriuReqType, opts: Option<CriuOpts>) -> CriuReq {
    CriuReq {
        r#type: kind as i32,
        opts,
        ..Default::default()
    }
}

#[test]
fn version_features_and_check_are_answered() {
    require_root();
    let mut c = Client::swrk();
    let v = c.ask(CriuReq {
        keep_open: Some(true),
        ..req(CriuReqType::Version, None)
    });
    assert!(v.success);
    let v = v.version.expect("version");
    // go-criu computes 40200 from these and refuses older ones.
    assert_eq!((v.major_number, v.minor_number), (4, 2));
    let f = c.ask(CriuReq {
        keep_open: Some(true),
        ..req(CriuReqType::FeatureCheck, None)
    });
    assert!(f.success && f.features.is_some());
    let dir = tempfile::tempdir().unwrap();
    let images = std::fs::File::open(dir.path()).unwrap();
    let opts = CriuOpts {
        images_dir_fd: images.as_raw_fd(),
        ..Default::default()
    };
    let check = c.ask(CriuReq {
        keep_open: Some(true),
        ..req(CriuReqType::Check, Some(opts.clone()))
    });
    assert!(check.success, "{:?}", check.cr_errmsg);
    assert_eq!(check.r#type, CriuReqType::Check as i32);
    // CPUINFO_DUMP writes cpuinfo.img into the client's images dir; CPUINFO_CHECK reads it
    // back on the same machine.
    let dumped = c.ask(CriuReq {
        keep_open: Some(true),
        ..req(CriuReqType::CpuinfoDump, Some(opts.clone()))
    });
    assert!(dumped.success, "{:?}", dumped.cr_errmsg);
    assert!(dir.path().join("cpuinfo.img").exists());
    let checked = c.ask(req(CriuReqType::CpuinfoCheck, Some(opts)));
    assert!(checked.success, "{:?}", checked.cr_errmsg);
    assert_eq!(checked.r#type, CriuReqType::CpuinfoCheck as i32);
}

/// SINGLE_PRE_DUMP: one pre-dump round on its own session; the tree runs on untraced and its
/// memory is in the images.
#[test]
fn a_single_pre_dump_leaves_the_tree_running() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let task = uk_state(dir.path());
    let tree = harness::descendants(task.pid);
    std::fs::create_dir(dir.path().join("pre")).unwrap();
    let images = std::fs::File::open(dir.path().join("pre")).unwrap();
    let opts = CriuOpts {
        images_dir_fd: images.as_raw_fd(),
        pid: Some(task.pid),
        log_file: Some("pre.log".into()),
        log_level: Some(4),
        ..Default::default()
    };
    let r = Client::swrk().ask(req(CriuReqType::SinglePreDump, Some(opts)));
    let log = std::fs::read_to_string(dir.path().join("pre/pre.log")).unwrap_or_default();
    assert!(r.success, "{:?}\n{log}", r.cr_errmsg);
    assert_eq!(r.r#type, CriuReqType::SinglePreDump as i32);
    assert!(
        dir.path()
            .join(format!("pre/pagemap-{}.img", task.pid))
            .exists(),
        "{log}"
    );
    for &pid in &tree {
        assert_eq!(harness::tracer(pid, pid), 0, "pid {pid} is still traced");
        assert!(harness::free_running(pid), "pid {pid} is not running");
    }
}

#[test]
fn a_tree_is_dumped_and_restored_with_notifications_in_criu_order() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = uk_state(dir.path());
    std::fs::create_dir(dir.path().join("images")).unwrap();
    let images = std::fs::File::open(dir.path().join("images")).unwrap();
    let opts = CriuOpts {
        images_dir_fd: images.as_raw_fd(),
        pid: Some(task.pid),
        log_file: Some("rpc-dump.log".into()),
        log_level: Some(4),
        notify_scripts: Some(true),
        ..Default::default()
    };
    let tree = harness::descendants(task.pid);
    let mut c = Client::swrk();
    let dumped = c.ask(req(CriuReqType::Dump, Some(opts.clone())));
    assert!(
        dumped.success,
        "{:?}\n{}",
        dumped.cr_errmsg,
        task.log("rpc-dump.log")
    );
    assert_eq!(c.notified, ["pre-dump", "post-dump"]);
    task.reap_dumped(&tree);
    let mut c = Client::swrk();
    let opts = CriuOpts {
        pid: None,
        log_file: Some("rpc-restore.log".into()),
        ..opts
    };
    let restored = c.ask(req(CriuReqType::Restore, Some(opts)));
    assert!(
        restored.success,
        "{:?}\n{}",
        restored.cr_errmsg,
        task.log("rpc-restore.log")
    );
    assert_eq!(restored.restore.map(|r| r.pid), Some(task.pid));
    assert_eq!(
        c.notified,
        ["pre-restore", "post-restore", "pre-resume", "post-resume"]
    );
    assert_eq!(task.verdict(), "PASS\n");
}

/// As runc and go-criu drive an iterative dump: PRE_DUMP rounds on one session, each naming
/// the round before as its parent, then the final DUMP on the same session. Every round is
/// given the same pidfd store (as zdtm's `--pidfd-store`): a round whose store holds nothing
/// from the one before is refused.
#[test]
fn pre_dumps_then_the_final_dump_go_over_one_session() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = uk_state(dir.path());
    let tree = harness::descendants(task.pid);
    let mut c = Client::swrk();
    let mut dirs = Vec::new();
    let store = std::os::unix::net::UnixDatagram::unbound().unwrap();
    let round_opts = |images: &std::fs::File, round: i32| CriuOpts {
        images_dir_fd: images.as_raw_fd(),
        pid: Some(task.pid),
        log_file: Some("rpc.log".into()),
        log_level: Some(4),
        parent_img: (round > 1).then(|| format!("../{}", round - 1)),
        track_mem: Some(true),
        pidfd_store_sk: Some(store.as_raw_fd()),
        ..Default::default()
    };
    for (round, kind) in [
        (1, CriuReqType::PreDump),
        (2, CriuReqType::PreDump),
        (3, CriuReqType::Dump),
    ] {
        let path = dir.path().join(format!("images/{round}"));
        std::fs::create_dir_all(&path).unwrap();
        let images = std::fs::File::open(&path).unwrap();
        if round == 2 {
            // Another socket than the series' own: nothing in it.
            let fresh = std::os::unix::net::UnixDatagram::unbound().unwrap();
            let opts = CriuOpts {
                pidfd_store_sk: Some(fresh.as_raw_fd()),
                ..round_opts(&images, round)
            };
            let r = Client::swrk().ask(req(kind, Some(opts)));
            assert!(!r.success, "a dump with an empty pidfd store");
            let e = r.cr_errmsg.unwrap_or_default();
            assert!(e.contains("no pidfds found in the pidfd store"), "{e}");
        }
        let r = c.ask(req(kind, Some(round_opts(&images, round))));
        let log = std::fs::read_to_string(path.join("rpc.log")).unwrap_or_default();
        assert!(r.success, "round {round}: {:?}\n{log}", r.cr_errmsg);
        assert!(!log.contains("pid reuse"), "round {round}:\n{log}");
        assert_eq!(r.r#type, kind as i32, "round {round}");
        if kind == CriuReqType::PreDump {
            for &pid in &tree {
                assert_eq!(
                    harness::tracer(pid, pid),
                    0,
                    "pid {pid} traced after round {round}"
                );
            }
        }
        dirs.push((path, images));
    }
    let link = std::fs::read_link(dirs[2].0.join("parent")).expect("the final dump's parent link");
    assert_eq!(link, std::path::Path::new("../2"));
    task.reap_dumped(&tree);
    let mut c = Client::swrk();
    let opts = CriuOpts {
        images_dir_fd: dirs[2].1.as_raw_fd(),
        log_file: Some("rpc-restore.log".into()),
        log_level: Some(4),
        ..Default::default()
    };
    let restored = c.ask(req(CriuReqType::Restore, Some(opts)));
    let log = std::fs::read_to_string(dirs[2].0.join("rpc-restore.log")).unwrap_or_default();
    assert!(restored.success, "{:?}\n{log}", restored.cr_errmsg);
    assert_eq!(task.verdict(), "PASS\n");
}

/// PAGE_SERVER starts a page server that runs on after the answer, which names its pid and
/// port; a dump sends it the pages, and it exits once the dump is done.
#[test]
fn a_page_server_request_starts_one_that_takes_a_dump() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut task = uk_state(dir.path());
    let tree = harness::descendants(task.pid);
    let served = dir.path().join("served");
    std::fs::create_dir(&served).unwrap();
    let served_fd = std::fs::File::open(&served).unwrap();
    let opts = CriuOpts {
        images_dir_fd: served_fd.as_raw_fd(),
        log_file: Some("page-server.log".into()),
        log_level: Some(4),
        ps: Some(criu_proto::rpc::CriuPageServerInfo {
            address: Some("127.0.0.1".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut c = Client::swrk();
    let r = c.ask(req(CriuReqType::PageServer, Some(opts)));
    let log = || std::fs::read_to_string(served.join("page-server.log")).unwrap_or_default();
    assert!(r.success, "{:?}\n{}", r.cr_errmsg, log());
    let ps = r.ps.expect("the answer names the page server");
    let (pid, port) = (ps.pid.unwrap(), ps.port.unwrap());
    assert!(pid > 0 && port > 0, "{ps:?}");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_criu"))
        .args([
            "dump",
            "--no-default-config",
            "-t",
            &task.pid.to_string(),
            "-D",
        ])
        .arg(&images)
        .args([
            "-o",
            "dump.log",
            "--page-server",
            "--address",
            "127.0.0.1",
            "--port",
        ])
        .arg(port.to_string())
        .output()
        .unwrap();
    let dump_log = std::fs::read_to_string(images.join("dump.log")).unwrap_or_default();
    assert!(out.status.success(), "{dump_log}\n{}", log());
    assert!(
        served.join(format!("pagemap-{}.img", task.pid)).exists(),
        "the page server wrote no pagemap for {}:\n{}",
        task.pid,
        log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || !std::path::Path::new(&format!(
            "/proc/{pid}/exe"
        ))
        .exists()),
        "the page server {pid} runs on after the dump"
    );
    task.reap_dumped(&tree);
}

/// PAGE_SERVER_CHLD starts a page server as a child of the session's criu: WAIT_PID over
/// the same session gets its exit status (1: a client came and went without a dump).
#[test]
fn a_page_server_child_is_waited_for_over_the_session() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let served = std::fs::File::open(dir.path()).unwrap();
    let opts = CriuOpts {
        images_dir_fd: served.as_raw_fd(),
        log_file: Some("page-server.log".into()),
        ps: Some(criu_proto::rpc::CriuPageServerInfo {
            address: Some("127.0.0.1".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut c = Client::swrk();
    let r = c.ask(CriuReq {
        keep_open: Some(true),
        ..req(CriuReqType::PageServerChld, Some(opts))
    });
    assert!(r.success, "{:?}", r.cr_errmsg);
    let ps = r.ps.expect("the answer names the page server");
    let (pid, port) = (ps.pid.unwrap(), ps.port.unwrap());
    assert!(pid > 0 && port > 0, "{ps:?}");
    drop(std::net::TcpStream::connect(("127.0.0.1", port as u16)).unwrap());
    let r = c.ask(CriuReq {
        pid: Some(pid as u32),
        ..req(CriuReqType::WaitPid, None)
    });
    assert!(r.success, "{:?}", r.cr_errmsg);
    assert_eq!(r.status, Some(1 << 8), "exit status of the page server");
}

/// Writes `word` to the terminal's master and waits until the shell on its slave answers.
fn talks(master: &OwnedFd, word: &str) -> bool {
    let line = format!("{word}\n");
    nix::unistd::write(master, line.as_bytes()).unwrap();
    let want = format!("got {word}");
    let mut seen = String::new();
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < end && !seen.contains(&want) {
        let mut poll = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(master),
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut poll, nix::poll::PollTimeout::from(100u16)).unwrap_or(0) > 0 {
            let mut buf = [0u8; 256];
            let n = nix::unistd::read(master, &mut buf).unwrap_or(0);
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    seen.contains(&want)
}

/// tty_nr of `/proc/PID/stat`: the controlling terminal.
fn tty_nr(pid: i32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace().nth(5).unwrap_or("").to_string()
}

/// A tree on a terminal whose master the client holds (a runtime's console), dumped and
/// restored with `orphan_pts_master`: criu makes a new master for the slave, hands it over
/// with the `orphan-pts-master` NOTIFY, and the shell talks through it, the slave still its
/// controlling terminal.
#[test]
fn a_terminal_whose_master_is_the_clients_comes_back_with_a_new_master() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let pty = nix::pty::openpty(None, None).unwrap();
    // The shell must not inherit the master: it is the client's alone.
    let cloexec = nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC);
    nix::fcntl::fcntl(&pty.master, cloexec).unwrap();
    let slave = |_| Stdio::from(pty.slave.try_clone().unwrap());
    let mut shell = Command::new("setsid")
        .args(["-c", "sh", "-c", "while read l; do echo \"got $l\"; done"])
        .stdin(slave(0))
        .stdout(slave(1))
        .stderr(slave(2))
        .spawn()
        .unwrap();
    let pid = shell.id() as i32;
    drop(pty.slave);
    assert!(talks(&pty.master, "one"), "the shell never answered");
    let ctty = tty_nr(pid);
    let images = std::fs::File::open(dir.path()).unwrap();
    let opts = CriuOpts {
        images_dir_fd: images.as_raw_fd(),
        pid: Some(pid),
        log_file: Some("dump.log".into()),
        log_level: Some(4),
        orphan_pts_master: Some(true),
        ..Default::default()
    };
    let log = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    let r = Client::swrk().ask(req(CriuReqType::Dump, Some(opts.clone())));
    assert!(r.success, "{:?}\n{}", r.cr_errmsg, log("dump.log"));
    let _ = shell.wait();
    // The old pair goes with its master: the new one gets the same index.
    drop(pty.master);
    let mut c = Client::swrk();
    let r = c.ask(req(
        CriuReqType::Restore,
        Some(CriuOpts {
            pid: None,
            log_file: Some("restore.log".into()),
            notify_scripts: Some(true),
            ..opts
        }),
    ));
    assert!(r.success, "{:?}\n{}", r.cr_errmsg, log("restore.log"));
    let root = r.restore.map_or(0, |r| r.pid);
    let master = c.received.borrow_mut().pop();
    let talked = master.as_ref().is_some_and(|m| talks(m, "two"));
    let restored_ctty = tty_nr(root);
    harness::kill_tree(root);
    let said = || {
        format!(
            "{:?}\n{}\n{}",
            c.notified,
            log("dump.log"),
            log("restore.log")
        )
    };
    assert!(
        c.notified.iter().any(|n| n == "orphan-pts-master"),
        "{}",
        said()
    );
    assert!(master.is_some(), "no master came with the NOTIFY");
    assert!(
        talked,
        "the restored shell does not answer through the new master"
    );
    assert_eq!(restored_ctty, ctty, "its controlling terminal");
}

#[test]
fn a_client_that_hangs_up_at_post_dump_leaves_the_tree_running() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let task = uk_state(dir.path());
    std::fs::create_dir(dir.path().join("images")).unwrap();
    let images = std::fs::File::open(dir.path().join("images")).unwrap();
    let opts = CriuOpts {
        images_dir_fd: images.as_raw_fd(),
        pid: Some(task.pid),
        log_file: Some("rpc-dump.log".into()),
        log_level: Some(4),
        notify_scripts: Some(true),
        ..Default::default()
    };
    let mut c = Client::swrk();
    c.send_raw(&req(CriuReqType::Dump, Some(opts)).encode_to_vec());
    // Answer pre-dump; at post-dump the tree is frozen and dumped: hang up there.
    loop {
        let notify = c
            .recv()
            .notify
            .unwrap_or_default()
            .script
            .unwrap_or_default();
        if notify == "post-dump" {
            break;
        }
        let ok = CriuReq {
            r#type: CriuReqType::Notify as i32,
            notify_success: Some(true),
            ..Default::default()
        };
        c.send_raw(&ok.encode_to_vec());
    }
    let mut criu = c.criu.take().unwrap();
    drop(c);
    let status = criu.wait().unwrap();
    assert!(
        !status.success(),
        "criu reported a dump whose client hung up"
    );
    for pid in harness::descendants(task.pid) {
        assert!(
            wait_until(Duration::from_secs(5), || harness::tracer(pid, pid) == 0),
            "pid {pid} is still traced:\n{}",
            task.log("rpc-dump.log")
        );
    }
    assert_eq!(task.verdict(), "PASS\n", "{}", task.log("rpc-dump.log"));
}

#[test]
fn bad_and_unsupported_requests_get_error_answers() {
    require_root();
    let c = Client::swrk();
    c.send_raw(&[0xff, 0xff, 0xff, 0x01]);
    let r = c.recv();
    assert!(!r.success && r.cr_errmsg.is_some(), "{r:?}");
    // An option restore does not honour is refused by name, as on the command line.
    let dir = tempfile::tempdir().unwrap();
    let images = std::fs::File::open(dir.path()).unwrap();
    let opts = CriuOpts {
        images_dir_fd: images.as_raw_fd(),
        lazy_pages: Some(true),
        ..Default::default()
    };
    let mut c = Client::swrk();
    let r = c.ask(req(CriuReqType::Restore, Some(opts)));
    assert!(!r.success);
    assert!(r.cr_errmsg.unwrap_or_default().contains("--lazy-pages"));
}

#[test]
fn the_service_serves_each_client() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("criu.sock");
    // Killed when the test ends, however it ends.
    let _service = Service(
        Command::new(env!("CARGO_BIN_EXE_criu"))
            .args(["service", "--address"])
            .arg(&path)
            .args(["-o", "service.log", "-v4"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .spawn()
            .expect("start criu service"),
    );
    let connect = || {
        let sock = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        let addr = socket::UnixAddr::new(&path).unwrap();
        socket::connect(sock.as_raw_fd(), &addr).ok().map(|()| sock)
    };
    // The socket's name exists from bind(2); it takes connections from listen(2) on.
    let listening = wait_until(Duration::from_secs(10), || connect().is_some());
    assert!(
        listening,
        "criu service never listened on {}",
        path.display()
    );
    for _ in 0..2 {
        let sock = connect().expect("connect to criu service");
        let mut c = Client {
            sock,
            criu: None,
            notified: Vec::new(),
            received: Default::default(),
        };
        let v = c.ask(req(CriuReqType::Version, None));
        assert!(v.success && v.version.is_some());
    }
}

/// A `criu service`, killed and reaped when dropped.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
